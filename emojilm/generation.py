"""Decoding: one forward step, and the decoding loops built on it.

The ladder, as in gpt-fast's generate.py (prefill, decode_one_token, generate):

- `step.prefill`: run prompts through the loops, filling the KV cache;
- `step.step`: the one forward step that plain, exit-loop, adaptive and speculative
  decoding (emojilm.speculative) and the trace's branches all stand on;
- `continue_steps` / `decode_steps`: sample, step, repeat, for a batch of rows;
- `stream`: one request's ids turned into text, a complete character at a time.

Each batch row has an *exit loop*: the loop whose read-out picks its next byte.
A row with exit loop k behaves exactly like the model run with k loops, because
loop k never depends on the loops after it; so one batch can answer "what would
the model say with 1, 2, ... n loops" while sharing a single prefill of the prompt.

Nothing here sees an EmojiLM: `lm` turns a text into prompt ids and a checked
`Request`, and passes (model, ids, request) down.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from emojilm.kvcache import BranchCache, KVCache
from emojilm.model import LoopedTransformer
from emojilm.request import Request
from emojilm.sampling import SamplingParams, sample
from emojilm.speculative import DraftStats, speculative_tokens
from emojilm.step import prefill, step
from emojilm.tokenizer import ByteTokenizer


@torch.inference_mode()
def continue_steps(
    model: LoopedTransformer,
    hidden: torch.Tensor,
    exit_loops: Sequence[int],
    cache: KVCache | BranchCache,
    start: int,
    params: SamplingParams,
    max_new_tokens: int,
    generators: list[torch.Generator],
    stop_id: int | None = None,
    threshold: float = 0.0,
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Sample, step, repeat: yield (ids [R], each row's loops) for up to max_new_tokens steps.

    hidden [R, dim] is each row's state just before position (or branch step)
    `start` after its exit loop, and the cache holds every row's keys/values
    before it. The caller decides when to stop (e.g. at EOS); with a stop_id,
    the steps end once every row has yielded it, and a row that has stops
    running its loops (what it yields after is meaningless).
    """
    exits, loops, logits = list(exit_loops), list(exit_loops), None
    going = [True] * len(exits)
    for n in range(max_new_tokens):
        ids = sample(model.readout(hidden) if logits is None else logits, params, generators)
        yield ids, loops
        if n + 1 == max_new_tokens:
            return
        if stop_id is not None:
            going = [g and i != stop_id for g, i in zip(going, ids.tolist(), strict=True)]
            if not any(going):
                return
            # A row that has ended runs the first loop only: the others' last loop bounds the step.
            exits = [k if g else 1 for k, g in zip(exits, going, strict=True)]
        out = step(model, ids[:, None], cache, start + n, exits, thresholds=[threshold] * len(exits))
        hidden, loops, logits = out.hidden[:, -1], out.loops, out.logits


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
    exit loop exit_loops[j]. Stopping as continue_steps.
    """
    n_prompts, length = prompts.shape
    n_exits = len(exit_loops)
    n_loops = model.check_loops(max(exit_loops))
    check_room(model, length, max_new_tokens)
    if generators is None:
        generators = [params.generator() for _ in range(n_prompts * n_exits)]
    # Prefill each prompt once, then give every exit loop its own copy of the cache.
    cache = model.new_cache(n_loops, n_prompts, length + max_new_tokens)
    last = torch.stack([h[:, -1] for h in prefill(model, prompts, n_loops, cache)])  # [loops, P, dim]
    exits = list(exit_loops) * n_prompts
    rows = torch.arange(len(exits), device=prompts.device)
    hidden = last.repeat_interleave(n_exits, dim=1)[torch.tensor(exits, device=prompts.device) - 1, rows]
    steps = continue_steps(model, hidden, exits, cache.repeat_rows(n_exits), length, params, max_new_tokens,
                           generators, stop_id)  # fmt: skip
    for ids, _ in steps:
        yield ids


def check_room(model: LoopedTransformer, length: int, max_new_tokens: int) -> None:
    """ValueError unless a prompt of `length` ids and max_new_tokens more fit the model's context."""
    if length + max_new_tokens > model.args.max_seqlen:
        raise ValueError(f"{length} prompt + {max_new_tokens} new tokens exceed max_seqlen={model.args.max_seqlen}")


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
    model: LoopedTransformer,
    tokenizer: ByteTokenizer,
    prompts: torch.Tensor,
    loops: Sequence[int],
    params: SamplingParams,
    max_new_tokens: int,
) -> list[list[str]]:
    """Decoded answers [prompt][loop count]: each prompt continued with each loop count, in one batch."""
    eos = tokenizer.eos_id
    ids = until_eos(decode_steps(model, prompts, loops, params, max_new_tokens, stop_id=eos), eos)
    n = len(loops)
    return [[tokenizer.decode(row) for row in ids[p * n : (p + 1) * n]] for p in range(len(prompts))]


@dataclass(frozen=True)
class Handoff:
    """What a finished translation hands to its trace, so that the trace can check it replays this answer."""

    request: Request  # as decoded: loop count and seed filled in
    cache: KVCache | None  # keys/values of the prompt and every answer id but the last, at every loop
    drafted: bool  # decoded self-speculatively: a sampled answer's draws then follow the acceptance rule
    seed_drawn: bool = False  # the request left the seed out and lm.stream drew it

    @classmethod
    def of(cls, request: Request, cache: KVCache, drafted: bool, seed_drawn: bool = False) -> Handoff:
        """The handoff of an answer decoded into `cache`; with adaptive loops the cache is not handed on
        (its skipped loops hold copies, not what those loops compute)."""
        kept = None if request.adaptive_threshold > 0 else cache
        return cls(request, kept, drafted, seed_drawn)

    @property
    def replay_problem(self) -> str:
        """Why the trace cannot replay this answer's draws ("" when it can): plain sampling's draws
        are one uniform number per byte (sampling.step_uniform), speculative sampling's are not."""
        if self.drafted and not self.request.sampling.greedy:
            return (
                f"it was sampled with self-speculative drafting (draft_loops={self.request.draft_loops}), "
                "whose random draws follow the acceptance rule, not one draw per byte"
            )
        return ""


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
    # The request it answers and the cache the trace takes instead of a prefill (Handoff.of; the
    # trace takes the cache: emojilm.trace.reusable and run_trace).
    handoff: Handoff | None = field(default=None, repr=False, compare=False)

    def snapshot(self) -> Generation:
        """A copy that later decoding steps do not change (what stream yields)."""
        return dataclasses.replace(self, token_ids=list(self.token_ids), loops_per_char=list(self.loops_per_char))

    @property
    def kv_cache(self) -> KVCache | None:
        return self.handoff.cache if self.handoff else None

    @property
    def tokens_per_s(self) -> float:
        return len(self.token_ids) / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def mean_loops(self) -> float:
        return sum(self.loops_per_char) / len(self.loops_per_char) if self.loops_per_char else float(self.n_loops)


def stream(
    model: LoopedTransformer,
    tokenizer: ByteTokenizer,
    ids: list[int],
    request: Request,
    truncated: bool = False,
    seed_drawn: bool = False,
) -> Iterator[Generation]:
    """Decode a checked request (Request.for_model) after prompt ids, yielding the growing Generation at
    every complete character. Each item is a snapshot; the last has done=True and holds the whole
    answer (without EOS in text). draft_loops > 0 decodes self-speculatively (emojilm.speculative)."""
    n_loops, max_new_tokens, params = request.n_loops, request.max_new_tokens, request.sampling
    check_room(model, len(ids), max_new_tokens)
    cache = model.new_cache(n_loops, 1, len(ids) + max_new_tokens)
    handoff = Handoff.of(request, cache, bool(request.draft_loops), seed_drawn)
    result = Generation("", [], [], n_loops, ids, truncated, handoff=handoff)
    prompt = torch.tensor([ids], device=model.tok_embeddings.weight.device)
    if request.draft_loops:
        result.draft_stats = DraftStats()
        tokens = speculative_tokens(model, prompt, n_loops, request.draft_loops, params, max_new_tokens,
                                    params.generator(), result.draft_stats, cache=cache,
                                    stop_id=tokenizer.eos_id)  # fmt: skip
        return stream_text(tokenizer, result, ((token, n_loops) for token in tokens))
    return stream_text(tokenizer, result, _one_row(model, prompt, request, cache))


@torch.inference_mode()
def _one_row(model: LoopedTransformer, prompt: torch.Tensor, request: Request, cache: KVCache):
    """Yield (id, loops it used) one at a time, up to max_new_tokens; the caller stops at EOS."""
    n_loops, params = request.n_loops, request.sampling
    hidden = prefill(model, prompt, n_loops, cache)[-1][:, -1]
    steps = continue_steps(model, hidden, [n_loops], cache, prompt.shape[1], params, request.max_new_tokens,
                           [params.generator()], threshold=request.adaptive_threshold)  # fmt: skip
    for ids, loops in steps:
        yield int(ids[0]), loops[0]


def stream_text(
    tokenizer: ByteTokenizer, result: Generation, tokens: Iterator[tuple[int, int]]
) -> Iterator[Generation]:
    """Turn (id, loops) pairs into text, yielding a snapshot at every complete character."""
    decoder = tokenizer.stream()
    pending_loops = 0  # max loops over the bytes of the character being completed
    started = time.perf_counter()
    for token_id, loops in tokens:
        if not result.token_ids:  # the first id comes right after the prefill
            result.prefill_s = time.perf_counter() - started
            started = time.perf_counter()
        result.token_ids.append(token_id)
        pending_loops = max(pending_loops, loops)
        if token_id == tokenizer.eos_id:
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
