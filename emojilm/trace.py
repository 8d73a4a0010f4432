"""The refinement trace: how each loop's answer compares with the final one.

For one request we translate once, then:

1. run the answer through the model once more with every loop read out
   (teacher forcing), giving each loop's probability of every answer byte; the
   translation's KV cache already holds the prompt, so only the answer is run;
2. for each answer character, branch from its position: every loop's top
   first bytes, each completed greedily by that loop, give the loop's own top
   characters and their probabilities (`Alternatives`: rows of the batching
   engine for all characters, each at its own position, reading the
   teacher-forced KV cache in place; branches with the same bytes share a row);
3. the answer with 1, 2, ... n loops: teacher forcing shows which loops surely
   repeat the answer; the others are decoded from the first byte where any of
   them may part from it, each as a row of the batching engine's (a copy of the
   teacher-forced cache's first loops: emojilm.engine.Row.branch), so that under
   load they step beside other visitors' answers, with the bytes they give alone.

`run_trace` does all three; `begin_trace` the torch work of 1 and the rows of
2 and 3, which an engine decodes (`Engine.decode`) before `PendingTrace.finish`
builds the tables.

Characters are what a reader sees as one emoji (tokenizer.cluster_spans).
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd
import torch

from emojilm.engine import DONE, Feed, Row, decode_rows
from emojilm.generation import Generation
from emojilm.kvcache import BranchCache
from emojilm.model import LoopedTransformer
from emojilm.request import Request
from emojilm.sampling import SamplingParams, filtered_probs, step_uniform
from emojilm.step import Step, prefill
from emojilm.tokenizer import ByteTokenizer, char_spans, cluster_spans

END = "⏹"  # how the end of the answer (EOS) is shown among alternatives


@dataclass
class Trace:
    output: str
    generation: Generation
    by_loop: pd.DataFrame  # one row per (loop, output character)
    per_loop_outputs: pd.DataFrame  # one row per loop count k: what the model answers with k loops
    summary: pd.DataFrame  # one row per loop: means over the characters
    note: str = ""  # why the answer traced is not the one given to trace (reusable), or other caveats
    by_layer: pd.DataFrame | None = None  # with per_layer: one row per (loop, layer, output character)


def utf8_length(lead: int) -> int:
    """Bytes in the character a lead byte starts (1 for ASCII, specials and stray bytes)."""
    if 0xC0 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF8:
        return 4
    return 1


def _show(ids: list[int]) -> str:
    if ids and ids[0] >= 256:
        return END
    # A branch completed greedily may pick EOS mid-character: show what it wrote before that.
    end = next((n for n, i in enumerate(ids) if i >= 256), len(ids))
    return bytes(ids[:end]).decode("utf-8", "replace")


def reusable(answer: Generation | None, request: Request) -> tuple[Generation | None, str]:
    """(the translation to trace, or None to decode one; a note for the trace when it cannot be the one given).

    `answer` is what `lm.translate` returned for `request` (checked by Request.for_model).
    It must answer this same request (a seed the translation drew itself may be left
    out); an answer whose draws the trace cannot replay is not traced, and the note
    says why, rather than a trace whose full-loop answer silently differs from it.
    The trace takes the handoff either way: its cache is the trace's to overwrite.
    """
    if answer is None or not answer.done or answer.handoff is None:
        return None, ""
    handoff = answer.handoff
    given = handoff.request
    seed_free = request.sampling.greedy or (request.seed is None and handoff.seed_drawn)
    free = {"draft_loops"} | ({"seed"} if seed_free else set())
    names = [f.name for f in fields(Request) if f.name not in free]
    differ = [name for name in names if getattr(request, name) != getattr(given, name)]
    if differ:
        raise ValueError(f"reuse= is the answer to another request (it differs in {', '.join(differ)})")
    if problem := handoff.replay_problem:
        answer.handoff = replace(handoff, cache=None)
        return None, f"The answer above was not traced: {problem}. Traced: the same request decoded without drafting."
    return answer, ""


def run_trace(
    model, tokenizer: ByteTokenizer, generation: Generation, alternatives: int = 5, note: str = "", per_layer=False
) -> Trace:
    """Trace a finished translation (made by generation.stream; its handoff says how) loop by loop
    (per_layer: and block by block, Trace.by_layer)."""
    pending = begin_trace(model, tokenizer, generation, alternatives, note, per_layer)
    return pending.finish(decode_rows(pending.to_decode))


@dataclass
class PendingTrace:
    """A trace whose rows are still to decode: its per-loop answers (`rows`, loops todo[i] + 1, from
    answer byte `same` on) and its alternatives' branches. finish() takes each row's ids (decode_rows or
    Engine.decode of `to_decode`, on the thread that runs torch) and builds the tables."""

    model: LoopedTransformer
    tokenizer: ByteTokenizer
    generation: Generation
    columns: dict  # by_loop's columns known from teacher forcing, before the alternatives
    chars: list[tuple[str, int, int]]
    every: torch.Tensor | None  # with per_layer: every block's teacher-forced states, for the layer lens
    note: str
    todo: list[int]
    same: int
    rows: list[Row]
    alternatives: Alternatives

    @property
    def to_decode(self) -> list:
        return [*self.rows, self.alternatives]

    def finish(self, decoded: list[list[int]]) -> Trace:
        generation, n_loops = self.generation, self.generation.handoff.request.n_loops
        alts = self.alternatives.result
        cells = [alts[c][k] for c in range(len(self.chars)) for k in range(n_loops)]  # characters, then loops
        columns = self.columns | {
            "top_char": [cell[0][0] for cell in cells],
            "p_top": [cell[0][1] for cell in cells],
            "top5": [" · ".join(f"{ch} {p:.2f}" for ch, p in cell) for cell in cells],
        }
        by_loop = pd.DataFrame(columns, columns=BY_LOOP_COLUMNS)
        answer = generation.token_ids
        by_layer = None if self.every is None else layer_lens(self.model, self.every, answer, self.chars, by_loop)
        outputs = [answer] * n_loops
        for k, tail in zip(self.todo, decoded[: len(self.rows)], strict=True):
            outputs[k] = answer[: self.same] + tail
        per_loop = pd.DataFrame({"loops": range(1, n_loops + 1), "output": [self.tokenizer.decode(o) for o in outputs]})
        per_loop["same_as_final"] = per_loop["output"] == generation.text
        summary = summarize(by_loop, per_loop, n_loops)
        return Trace(generation.text, generation, by_loop, per_loop, summary, self.note, by_layer)


@torch.inference_mode()
def begin_trace(
    model, tokenizer: ByteTokenizer, generation: Generation, alternatives: int = 5, note: str = "", per_layer=False
) -> PendingTrace:
    """run_trace's torch work before its rows decode: the teacher-forced pass, and the rows."""
    request = generation.handoff.request
    n_loops, max_new_tokens = request.n_loops, request.max_new_tokens
    device = model.tok_embeddings.weight.device
    prompt, answer = generation.prompt_ids, generation.token_ids
    chars = cluster_spans(char_spans(answer))
    text_offsets = [0]  # where each character starts in generation.text (for its loops used)
    for char, _, _ in chars:
        text_offsets.append(text_offsets[-1] + len(char))

    # 1. Teacher forcing: every loop's state at every answer position. The translation's
    #    cache holds the prompt at every loop, so then only the answer positions are run.
    cache = generation.kv_cache
    generation.handoff = replace(generation.handoff, cache=None)  # taken: the passes below write into it
    first = len(prompt) - 1  # the position whose output is answer byte 0
    if cache is None or cache.n_loops != n_loops or cache.max_len < len(prompt) + max_new_tokens:
        cache, first = model.new_cache(n_loops, 1, len(prompt) + max_new_tokens), 0
    tokens = torch.tensor([(prompt + answer)[first:]], device=device)  # the last state: a char flushed at the end
    every = prefill(model, tokens, n_loops, cache, start=first, each_layer=per_layer)
    every = torch.stack([h[0, len(prompt) - 1 - first :] for h in every])  # [states, A + 1, dim]: predicts answer[i]
    states = every[model.args.n_layers - 1 :: model.args.n_layers] if per_layer else every  # [loops, A + 1, dim]
    logits = model.readout(states).float()
    logp = logits.log_softmax(-1)
    answer_t = torch.tensor(answer, device=device)
    byte_logp = logp[:, :-1].gather(-1, answer_t[None, :, None].expand(n_loops, -1, 1))[..., 0]
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)  # [loops, A + 1]
    kl_to_final = (probs[-1:] * (logp[-1:] - logp)).sum(-1)

    # 2. The alternatives: rows that branch from each character's start.
    starts = [start for _, start, _ in chars]
    branches = Alternatives(model, cache, logp[:, starts], [len(prompt) + start for start in starts], alternatives)
    # Per (loop, character): sums over the character's bytes, as one product with which bytes each holds.
    holds = torch.zeros(len(chars), len(answer), device=device)
    for c, (_, start, end) in enumerate(chars):
        holds[c, start:end] = 1.0
    per_char = {
        name: (values[:, : len(answer)] @ holds.T).double().cpu()
        for name, values in (("logp", byte_logp), ("entropy", entropy), ("kl_to_final", kl_to_final))
    }
    loops_used = [max(generation.loops_per_char[text_offsets[c] : text_offsets[c + 1]]) for c in range(len(chars))]
    columns = {
        "loop": [k + 1 for _ in chars for k in range(n_loops)],
        "position": [c for c in range(len(chars)) for _ in range(n_loops)],
        "char": [char for char, _, _ in chars for _ in range(n_loops)],
        "p_final_char": per_char["logp"].exp().T.flatten().numpy(),
        "entropy": per_char["entropy"].T.flatten().numpy(),
        "kl_to_final": per_char["kl_to_final"].T.flatten().numpy(),
        "loops_used": [used for used in loops_used for _ in range(n_loops)],
    }
    # 3. The per-loop answers: rows too.
    todo, same, rows = per_loop_rows(model, tokenizer, cache, states, logits, generation)
    return PendingTrace(model, tokenizer, generation, columns, chars, every if per_layer else None, note, todo, same,
                        rows, branches)  # fmt: skip


BY_LAYER_COLUMNS = ["loop", "layer", "position", "char", "p_final_char", "top_char", "p_top", "entropy"]


@torch.inference_mode()
def layer_lens(model, every: torch.Tensor, answer: list[int], chars, by_loop: pd.DataFrame) -> pd.DataFrame:
    """by_layer: each block application's read-out (every [loops * layers, A + 1, dim], teacher-forced),
    one row per (loop, layer, character).

    p_final_char and entropy are by_loop's measures. top_char and p_top: at a loop's last layer,
    by_loop's (each loop's top character, completed by branching); inside a loop, read on the
    answer's path without branching (the likeliest byte at each of the character's positions,
    while it agrees with the answer), which keeps the lens within a fraction of the trace's cost.
    """
    n_layers = model.args.n_layers
    n_loops = len(every) // n_layers
    logp = model.readout(every).float().log_softmax(-1)[:, : len(answer)]  # [states, A, V]
    ids = torch.tensor(answer, device=logp.device)
    byte_logp = logp.gather(-1, ids[None, :, None].expand(len(logp), -1, 1))[..., 0]
    entropy = -(logp.exp() * logp).sum(-1)
    best_logp, best = logp.max(-1)
    best_logp, best = best_logp.tolist(), best.tolist()
    rows = []
    for s in range(len(logp)):
        loop, layer = s // n_layers + 1, s % n_layers + 1
        for c, (char, start, end) in enumerate(chars):
            if layer == n_layers:  # the loop's finished state: by_loop's row, as it is
                cell = by_loop.iloc[c * n_loops + loop - 1]  # by_loop's rows: characters, then loops
                rows.append((loop, layer, c, char, *cell[["p_final_char", "top_char", "p_top", "entropy"]]))
                continue
            path, lp = [], 0.0
            for pos in range(start, end):
                path.append(best[s][pos])
                lp += best_logp[s][pos]
                if path[-1] != answer[pos]:
                    break
            p_char = math.exp(float(byte_logp[s, start:end].sum()))
            rows.append((loop, layer, c, char, p_char, _show(path), math.exp(lp), float(entropy[s, start:end].sum())))
    return pd.DataFrame(rows, columns=BY_LAYER_COLUMNS)


BY_LOOP_COLUMNS = [
    "loop", "position", "char", "p_final_char", "top_char", "p_top", "entropy", "kl_to_final", "top5", "loops_used",
]  # fmt: skip


class Alternatives:
    """Each loop's top characters where each answer character starts, as rows of the engine's batch.

    Branch on each loop's `top` most likely first bytes (logp [loops, C, V] at
    the C positions) and complete each branch greedily with that same loop; a
    character's probability is the product of its bytes' probabilities. The
    branches step as rows beside other requests (emojilm.engine: one step per
    byte a branch still lacks, at most three), each at its character's position,
    reading the teacher-forced cache (the trunk) only before it. Branches of one
    character with the same bytes so far (often: loops agree) share one row, run
    up to the latest loop among them. `result`, once finished: [character][loop]:
    (char, p) best first.
    """

    def __init__(self, model, cache, logp: torch.Tensor, positions: list[int], top: int) -> None:
        self.model, self.trunk, self.positions, self.top = model, cache, positions, top
        self.n_loops, self.n_chars = logp.shape[:2]
        first_logp, first_ids = logp.topk(top, dim=-1)  # [loops, C, top]
        # Branch r is character r // (n_loops * top)'s, for loop (r // top) % n_loops + 1.
        self.branches = [[b] for b in first_ids.transpose(0, 1).flatten().tolist()]
        self.branch_logp = first_logp.transpose(0, 1).flatten().tolist()
        self.char_of = [r // (self.n_loops * top) for r in range(len(self.branches))]
        self.loop_of = [(r // top) % self.n_loops + 1 for r in range(len(self.branches))]
        # How long each branch grows (at the end of the context it stays unfinished).
        room = [model.args.max_seqlen - positions[c] + 1 for c in self.char_of]
        self.length = [min(utf8_length(b[0]), limit) for b, limit in zip(self.branches, room, strict=True)]
        self.need = max(self.length, default=1) - 1  # steps to run
        self.steps, self.fork, self.index = 0, None, {}
        self.out: queue.Queue = queue.Queue()  # the engine's channel: an error, or DONE once finished
        self.cancelled = threading.Event()
        self.result: list[list[list[tuple[str, float]]]] | None = None  # set once finished
        if self.need:
            self._plan()
        else:
            self._finish()

    prefilled = True  # it steps from the trunk at once

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def width(self) -> int:
        return len(self.index)

    @property
    def last_loop(self) -> int:
        return max(self.exits)

    @property
    def cache_bytes(self) -> int:
        return 2 * self.fork.k.nbytes if self.fork is not None else 0

    def _plan(self) -> None:
        """This step's rows: one per (character, bytes so far) among the branches still growing, each
        carrying on from the row that fed its previous byte."""
        self.open = [r for r, b in enumerate(self.branches) if len(b) < self.length[r]]
        last_loop: dict[tuple[int, ...], int] = {}
        for r in self.open:
            key = (self.char_of[r], *self.branches[r])
            last_loop[key] = max(last_loop.get(key, 0), self.loop_of[r])
        keys = list(last_loop)
        device = self.trunk.k.device
        if self.fork is None:  # each row continues the teacher-forced sequence from its character's position
            at = torch.tensor([self.positions[key[0]] for key in keys], device=device)
            self.fork = BranchCache.grow(self.trunk, at, self.need)
        else:
            self.fork = self.fork.select_rows([self.index[key[:-1]] for key in keys])
        self.index = {key: i for i, key in enumerate(keys)}
        self.ids, self.exits = [key[-1] for key in keys], [last_loop[key] for key in keys]

    def feed(self) -> Feed:
        return Feed(self.fork, self.steps, self.ids, self.exits, [0.0] * len(self.ids))

    def stepped(self, out: Step, first: int) -> None:
        """Read each growing branch's next byte out of its row's state at its own loop (rows from `first`)."""
        rows = [first + self.index[(self.char_of[r], *self.branches[r])] for r in self.open]
        hidden = torch.stack([out.states[self.loop_of[r] - 1][row, -1] for r, row in zip(self.open, rows, strict=True)])
        best_logp, best = self.model.readout(hidden).float().log_softmax(-1).max(-1)
        for r, lp, b in zip(self.open, best_logp.tolist(), best.tolist(), strict=True):
            self.branches[r].append(b)
            self.branch_logp[r] += lp
        self.steps += 1
        if self.steps < self.need:
            self._plan()
        else:
            self._finish()

    def _finish(self) -> None:
        self.result = []
        for c in range(self.n_chars):
            per_loop = []
            for k in range(self.n_loops):
                first = (c * self.n_loops + k) * self.top
                block = range(first, first + self.top)
                ranked = sorted(((self.branches[r], self.branch_logp[r]) for r in block), key=lambda bp: -bp[1])
                per_loop.append([(_show(b), math.exp(lp)) for b, lp in ranked])
            self.result.append(per_loop)
        self.fork = None
        self.out.put(DONE)


# Logit gap within which a decoding step could choose otherwise than teacher forcing
# (the same positions computed one at a time round differently); bf16/fp16 weights: 0.25.
SURE_MARGIN = {torch.float32: 1e-3}


def following_steps(logits: torch.Tensor, answer: list[int], params: SamplingParams, dtype: torch.dtype) -> list[int]:
    """Per loop, how many leading answer ids decoding with that loop would surely choose.

    logits [loops, A, V] are the teacher-forced read-outs (position i predicts
    answer[i]). Greedy: the answer id leads by more than the rounding margin.
    Sampling: replay the seeded generator's uniform draw of each step (one per
    step, sampling.step_uniform) and require it to fall clearly inside the answer
    id's slice of the CDF. Under a top-k/top-p cut nothing is sure (the cut itself
    could move); those loops are decoded from the start.
    """
    margin = SURE_MARGIN.get(dtype, 0.25)
    ids = torch.tensor(answer, device=logits.device)[None, :, None].expand(logits.shape[0], -1, 1)
    if params.greedy:
        top = logits.topk(2, dim=-1)
        sure = (top.indices[..., 0] == ids[..., 0]) & (top.values[..., 0] - top.values[..., 1] > margin)
    elif params.top_p == 1.0 and params.top_k == 0:
        generator = params.generator()
        uniform = torch.cat([step_uniform(generator) for _ in answer])
        probs = filtered_probs(logits, params).double().cpu()
        cdf = probs.cumsum(-1)
        target = uniform * cdf[..., -1]  # [loops, A]: what sample() searches for
        high = cdf.gather(-1, ids.cpu())[..., 0]
        low = high - probs.gather(-1, ids.cpu())[..., 0]
        slack = 2 * margin / params.temperature  # how far rounding can move the CDF
        sure = (target - low > slack) & (high - target > slack)
    else:
        sure = torch.zeros(ids.shape[:2], dtype=torch.bool)
    return sure.long().cumprod(-1).sum(-1).tolist()


def per_loop_rows(model, tokenizer: ByteTokenizer, cache, states: torch.Tensor, logits: torch.Tensor,
                  generation: Generation) -> tuple[list[int], int, list[Row]]:  # fmt: skip
    """What the model answers with k loops, k = 1..n, as rows to decode: (the loops decoded, 0-based;
    the answer bytes they all repeat; their rows).

    Teacher forcing already shows how far each loop surely repeats the answer
    (`following_steps`): a loop that repeats all of it answers the same, and the
    others carry on from the first answer byte where any of them may part from it
    (states [loops, A, dim] and the cache of the teacher-forced pass).
    """
    prompt, answer, n_loops = generation.prompt_ids, generation.token_ids, len(states)
    request = generation.handoff.request
    params, max_new_tokens = request.sampling, request.max_new_tokens
    follows = following_steps(logits[:, : len(answer)], answer, params, model.tok_embeddings.weight.dtype)
    if answer[-1] != tokenizer.eos_id and len(answer) < max_new_tokens:
        follows = [min(f, len(answer) - 1) for f in follows]  # cut short: a loop could go on
    # With all its loops (and no adaptive exits) the answer is the translation itself: decoding it
    # again could only differ by rounding, at a close call.
    decoded = range(n_loops - 1 if request.adaptive_threshold == 0 else n_loops)
    todo = [k for k in reversed(decoded) if follows[k] < len(answer)]
    same = min((follows[k] for k in todo), default=0)  # answer bytes every decoded loop repeats
    rows = []
    for k in todo:
        generator = params.generator()
        for _ in range(same):  # the draws of those bytes (sampling.step_uniform)
            step_uniform(generator)
        branch = replace(request, n_loops=k + 1, max_new_tokens=max_new_tokens - same, adaptive_threshold=0.0,
                         draft_loops=0)  # fmt: skip
        rows.append(Row.branch(model, branch, prompt + answer[:same], cache, states[k, same], generator,
                               tokenizer.eos_id))  # fmt: skip
    return todo, same, rows


def summarize(by_loop: pd.DataFrame, per_loop: pd.DataFrame, n_loops: int) -> pd.DataFrame:
    """Per loop: mean probability of the final answer's characters, entropy, KL to final.

    Sums per loop by bincount, in whatever order the rows come: a pandas groupby
    costs milliseconds, a sizable part of the trace of a short answer.
    """
    loop = by_loop["loop"].to_numpy(dtype=np.int64)
    chars = np.bincount(loop, minlength=n_loops + 1)[1:]

    def mean(column: str) -> np.ndarray:  # NaN for a loop without characters (an empty answer)
        total = np.bincount(loop, weights=by_loop[column].to_numpy(dtype=np.float64), minlength=n_loops + 1)[1:]
        return np.divide(total, chars, out=np.full(n_loops, np.nan), where=chars > 0)

    exits = by_loop["loops_used"].to_numpy(dtype=np.int64)[loop == 1]  # one row per character
    return pd.DataFrame(
        {
            "loop": range(1, n_loops + 1),
            "mean_p_final": mean("p_final_char"),
            "mean_entropy": mean("entropy"),
            "mean_kl": mean("kl_to_final"),
            "answer": per_loop["output"].to_numpy(),
            "same_as_final": per_loop["same_as_final"].to_numpy(),
            "chars_exiting_here": np.bincount(exits, minlength=n_loops + 1)[1:],
        }
    )
