"""Autoregressive decoding with the per-(loop, layer) KV cache.

`decode_steps` is the one decoding loop everything uses. Each batch row has an
*exit loop*: the loop whose read-out picks its next byte. A row with exit loop
k behaves exactly like the model run with k loops, because loop k never
depends on the loops after it; so one batch can answer "what would the model
say with 1, 2, ... n loops" while sharing a single prefill of the prompt.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from emojilm.kvcache import BranchCache, KVCache
from emojilm.model import LoopedTransformer
from emojilm.sampling import SamplingParams, sample
from emojilm.speculative import DraftStats, speculative_tokens

MIN_PROMPT = 16  # context bytes always left for the prompt, whatever max_new_tokens asks
MAX_THRESHOLD = 10.0  # adaptive-loop KL threshold (nats); larger would exit after one loop always


@torch.inference_mode()
def decode_steps(
    model: LoopedTransformer,
    prompts: torch.Tensor,
    exit_loops: Sequence[int],
    params: SamplingParams,
    max_new_tokens: int,
    generators: list[torch.Generator] | None = None,
    stop_id: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next ids [P * len(exit_loops)] at each step, up to max_new_tokens steps.

    prompts is [P, T] (equal lengths); row p * L + j continues prompt p with
    exit loop exit_loops[j]. The caller decides when to stop (e.g. at EOS);
    with a stop_id, the steps end once every row has yielded it, and a row
    that has stops running its loops (what it yields after is meaningless).
    """
    n_prompts, length = prompts.shape
    n_exits = len(exit_loops)
    n_loops = model.check_loops(max(exit_loops))
    if length + max_new_tokens > model.args.max_seqlen:
        raise ValueError(f"{length} prompt + {max_new_tokens} new tokens exceed max_seqlen={model.args.max_seqlen}")
    if generators is None:
        generators = [params.generator() for _ in range(n_prompts * n_exits)]
    exit_index = torch.tensor([k - 1 for k in exit_loops], device=prompts.device).repeat(n_prompts)

    # Prefill each prompt once, then give every exit loop its own copy of the cache.
    cache = model.new_cache(n_loops, n_prompts, length + max_new_tokens)
    states = list(model.loop_states(prompts, n_loops, cache=cache))
    last = torch.stack([h[:, -1] for h in states])  # [loops, P, dim]
    cache = cache.repeat_rows(n_exits)
    rows = torch.arange(n_prompts * n_exits, device=prompts.device)
    hidden = last.repeat_interleave(n_exits, dim=1)[exit_index, rows]
    yield from continue_steps(model, hidden, exit_index, cache, length, params, max_new_tokens, generators, stop_id)


def continue_steps(
    model: LoopedTransformer,
    hidden: torch.Tensor,
    exit_index: torch.Tensor,
    cache: KVCache | BranchCache,
    start: int,
    params: SamplingParams,
    max_new_tokens: int,
    generators: list[torch.Generator],
    stop_id: int | None = None,
) -> Iterator[torch.Tensor]:
    """decode_steps after its prefill: hidden [R, dim] is each row's state just before position
    (or branch step) `start` after its exit loop, and the cache holds every row's keys/values before it."""
    going = torch.ones_like(exit_index, dtype=torch.bool)
    for step in range(max_new_tokens):
        ids = sample(model.readout(hidden), params, generators)
        yield ids
        if step + 1 == max_new_tokens:
            return
        if stop_id is not None:
            going &= ids != stop_id
            if not going.any():
                return
            # A row that has ended runs the first loop only: the others' last loop bounds the step.
            exit_index = torch.where(going, exit_index, 0)
        hidden = exit_states(model, ids, exit_index, cache, start + step)


def exit_states(
    model: LoopedTransformer, ids: torch.Tensor, exit_index: torch.Tensor, cache: KVCache | BranchCache, start: int
) -> torch.Tensor:
    """Feed one id per row at position (or branch step) `start`; states [R, dim], row r after loop exit_index[r] + 1."""
    exits = exit_index.tolist()
    states = states_by_loop(model, ids, [k + 1 for k in exits], cache, start)
    return torch.stack([states[k][r] for r, k in enumerate(exits)])


def states_by_loop(
    model: LoopedTransformer, ids: torch.Tensor, last_loops: list[int], cache: KVCache | BranchCache, start: int
) -> list[torch.Tensor]:
    """Feed one id per row at position (or branch step) `start`, row r needing loops 1..last_loops[r] only.

    Returns each loop's states [rows, dim], loop j run on the rows up to the last
    one that needs it: rows ordered by last loop, latest first, compute no loop
    they do not need (with 8 loops, rows exiting at 1..8 do 36 row-loops, not 64).
    """
    n_loops = max(last_loops)
    rows_at = [1 + max(r for r, last in enumerate(last_loops) if last > loop) for loop in range(n_loops)]
    states, h, loop = [], None, 0
    while loop < n_loops:  # one pass per run of loops over the same rows
        rows, end = rows_at[loop], loop + rows_at[loop:].count(rows_at[loop])
        state = None if h is None else h[:rows]
        for h in model.loop_states(ids[:rows, None], end, cache=cache.first_rows(rows), start=start,
                                   first_loop=loop, state=state):  # fmt: skip
            states.append(h[:, -1])
        loop = end
    return states


def until_eos(steps: Iterator[torch.Tensor], eos_id: int) -> list[list[int]]:
    """Collect the ids of each row up to and including its first EOS."""
    outputs: list[list[int]] | None = None
    done = None
    for ids in steps:
        ids_list = ids.tolist()
        if outputs is None:
            outputs, done = [[] for _ in ids_list], [False] * len(ids_list)
        for row, token in enumerate(ids_list):
            if not done[row]:
                outputs[row].append(token)
                done[row] = token == eos_id
        if all(done):
            break
    return outputs or []


def answers_by_loops(
    lm, prompts: torch.Tensor, loops: Sequence[int], params: SamplingParams, max_new_tokens: int
) -> list[list[str]]:
    """Decoded answers [prompt][loop count]: each prompt continued with each loop count, in one batch."""
    eos = lm.tokenizer.eos_id
    ids = until_eos(decode_steps(lm.model, prompts, loops, params, max_new_tokens, stop_id=eos), eos)
    n = len(loops)
    return [[lm.tokenizer.decode(row) for row in ids[p * n : (p + 1) * n]] for p in range(len(prompts))]


@dataclass
class Generation:
    """A translation, complete or (while streaming) in progress."""

    text: str
    token_ids: list[int]
    loops_per_char: list[int]  # loops each output character used (all n_loops unless adaptive)
    n_loops: int
    prompt_ids: list[int]
    truncated: bool  # the input was cut to fit the context window
    prefill_s: float = 0.0
    decode_s: float = 0.0
    done: bool = False
    draft_stats: DraftStats | None = None  # set when decoded self-speculatively
    # Keys/values of the prompt and every answer id but the last, at every loop (None
    # with adaptive loops, which skip some): the trace takes it instead of a prefill.
    kv_cache: KVCache | None = field(default=None, repr=False, compare=False)

    def snapshot(self) -> Generation:
        """A copy that later decoding steps do not change (what stream yields)."""
        return dataclasses.replace(self, token_ids=list(self.token_ids), loops_per_char=list(self.loops_per_char))

    @property
    def tokens_per_s(self) -> float:
        return len(self.token_ids) / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def mean_loops(self) -> float:
        return sum(self.loops_per_char) / len(self.loops_per_char) if self.loops_per_char else float(self.n_loops)


def check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def prompt_for(lm, text: str, max_new_tokens: int) -> tuple[list[int], int, bool]:
    """Prompt ids, the output budget and whether the text was cut to fit the context window.

    max_new_tokens may take all the context but MIN_PROMPT ids; the text is cut
    (at a character boundary) so that the prompt leaves room for the answer.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    context = lm.model.args.max_seqlen
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1, context - MIN_PROMPT)
    ids = lm.prompt_ids(text)
    if len(ids) + max_new_tokens <= context:
        return ids, max_new_tokens, False
    return longest_start_that_fits(lm, text, context - max_new_tokens), max_new_tokens, True


def longest_start_that_fits(lm, text: str, budget: int) -> list[int]:
    """Prompt ids of the longest start text[:n] whose prompt has at most `budget` ids (text itself has more).

    Cleaning the text and the template change lengths, so candidates are measured
    as prompts. A galloping search keeps the cost proportional to what is kept,
    however long the text.
    """

    def fits(n: int) -> bool:
        return len(lm.prompt_ids(text[:n])) <= budget

    if not fits(0):
        raise ValueError(
            f"the prompt template leaves no room for text with max_new_tokens={lm.model.args.max_seqlen - budget}"
        )
    good, bad = 0, 1  # fits(good); fits(bad) unknown until tested
    while bad < len(text) and fits(bad):
        good, bad = bad, 2 * bad
    bad = min(bad, len(text))
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return lm.prompt_ids(text[:good])


@torch.inference_mode()
def adaptive_step(model: LoopedTransformer, token: torch.Tensor, cache: KVCache, start: int,
                  n_loops: int, threshold: float) -> tuple[torch.Tensor, int]:  # fmt: skip
    """Run one token loop by loop, stopping once two successive read-outs agree.

    Agreement: KL(p_t || p_{t-1}) < threshold nats. A threshold of 0 never stops
    early, so it reproduces the fixed-loop model exactly. Returns (logits, loops).
    """
    previous = None
    for loop, h in enumerate(model.loop_states(token, n_loops, cache=cache, start=start), start=1):
        logits = model.readout(h[:, -1])
        logp = logits.float().log_softmax(-1)
        if previous is not None and loop < n_loops:
            kl = (logp.exp() * (logp - previous)).sum(-1).max()
            if kl < threshold:
                cache.copy_to_later_loops(loop - 1, start, start + 1)
                return logits, loop
        previous = logp
    return logits, n_loops


def stream(
    lm,
    text: str,
    params: SamplingParams,
    n_loops: int | None = None,
    max_new_tokens: int = 64,
    adaptive_threshold: float = 0.0,
    draft_loops: int = 0,
) -> Iterator[Generation]:
    """Translate text, yielding the growing Generation at every complete character.

    Each item is a snapshot; the last has done=True and holds the whole answer
    (without EOS in text). draft_loops > 0 decodes self-speculatively (see
    emojilm.speculative). Arguments are checked here, before the first item.
    """
    n_loops = lm.model.check_loops(n_loops)
    threshold_ok = isinstance(adaptive_threshold, (int, float)) and not isinstance(adaptive_threshold, bool)
    if not (threshold_ok and 0.0 <= adaptive_threshold <= MAX_THRESHOLD):
        raise ValueError(f"adaptive_threshold must be a number from 0 to {MAX_THRESHOLD}, got {adaptive_threshold!r}")
    check_int("draft_loops", draft_loops, 0, n_loops - 1)
    if draft_loops and adaptive_threshold > 0:
        raise ValueError("adaptive loops and speculative drafting cannot be combined; choose one")
    ids, max_new_tokens, truncated = prompt_for(lm, text, max_new_tokens)
    result = Generation("", [], [], n_loops, ids, truncated)
    cache = lm.model.new_cache(n_loops, 1, len(ids) + max_new_tokens)
    if adaptive_threshold == 0:
        result.kv_cache = cache
    if draft_loops:
        result.draft_stats = DraftStats()
        prompt = torch.tensor([ids], device=lm.device)
        tokens = speculative_tokens(lm.model, prompt, n_loops, draft_loops, params, max_new_tokens,
                                    params.generator(), result.draft_stats, cache=cache,
                                    stop_id=lm.tokenizer.eos_id)  # fmt: skip
        return _decode(lm, result, ((token, n_loops) for token in tokens))
    return _decode(lm, result, _plain_tokens(lm, ids, params, n_loops, max_new_tokens, adaptive_threshold, cache))


@torch.inference_mode()
def _plain_tokens(lm, ids: list[int], params: SamplingParams, n_loops: int, max_new_tokens: int,
                  adaptive_threshold: float, cache: KVCache) -> Iterator[tuple[int, int]]:  # fmt: skip
    """Yield (id, loops it used) one at a time, up to max_new_tokens; the caller stops at EOS."""
    model, generator = lm.model, [params.generator()]
    logits = model(torch.tensor([ids], device=lm.device), n_loops, cache=cache)[:, -1]
    loops = n_loops
    for step in range(max_new_tokens):
        token = sample(logits, params, generator)
        yield int(token), loops
        if step + 1 < max_new_tokens:
            position = len(ids) + step
            if adaptive_threshold > 0:
                logits, loops = adaptive_step(model, token[:, None], cache, position, n_loops, adaptive_threshold)
            else:
                logits = model(token[:, None], n_loops, cache=cache, start=position)[:, -1]


def _decode(lm, result: Generation, tokens: Iterator[tuple[int, int]]) -> Iterator[Generation]:
    """Turn (id, loops) pairs into text, yielding a snapshot at every complete character."""
    decoder = lm.tokenizer.stream()
    pending_loops = 0  # max loops over the bytes of the character being completed
    started = time.perf_counter()
    for token_id, loops in tokens:
        if not result.token_ids:  # the first id comes right after the prefill
            result.prefill_s = time.perf_counter() - started
            started = time.perf_counter()
        result.token_ids.append(token_id)
        pending_loops = max(pending_loops, loops)
        if token_id == lm.tokenizer.eos_id:
            break
        if piece := decoder.push(token_id):
            result.text += piece
            result.loops_per_char += [pending_loops] * len(piece)
            pending_loops = 0
            result.decode_s = time.perf_counter() - started
            yield result.snapshot()
    if tail := decoder.flush():
        result.text += tail
        result.loops_per_char += [pending_loops] * len(tail)
    result.decode_s = time.perf_counter() - started
    result.done = True
    yield result
