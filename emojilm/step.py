"""The one forward step every decoder stands on, and the prefill before it.

`step` feeds the next id (or a few) of every batch row and runs the loops that
row needs: up to its *exit loop* (the loop whose read-out picks its next byte),
carrying on from a draft's state, or, with adaptive loops, until two successive
read-outs agree. Plain, exit-loop and adaptive decoding (emojilm.generation),
self-speculative drafting and verifying (emojilm.speculative), the trace's
branches and the batching engine (emojilm.engine, through step_every_row) all call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from emojilm.kvcache import BranchCache, KVCache
from emojilm.model import LoopedTransformer


@dataclass
class Step:
    """What one forward step computed."""

    states: list[torch.Tensor]  # after each loop run, [rows that needed it, G, dim] (rows latest-exiting first)
    hidden: torch.Tensor  # [R, G, dim]: each row's state after its exit loop
    loops: list[int]  # each row's exit loop (with adaptive loops, where it stopped)
    logits: torch.Tensor | None = None  # [R, V] read out from `hidden` at the last position, where already done


def prefill(
    model: LoopedTransformer, tokens: torch.Tensor, n_loops: int, cache, start: int = 0, each_layer: bool = False
) -> list[torch.Tensor]:
    """Run tokens [B, T] at positions start.. through loops 1..n_loops, filling the cache; each loop's states
    (each_layer: every block's, n_layers per loop, as model.loop_states)."""
    return list(model.loop_states(tokens, n_loops, cache=cache, start=start, each_layer=each_layer))


def step(
    model: LoopedTransformer,
    ids: torch.Tensor,
    cache: KVCache | BranchCache,
    start: int,
    exit_loops: Sequence[int],
    *,
    first_loop: int = 0,
    state: torch.Tensor | None = None,
    thresholds: Sequence[float] = (),
) -> Step:
    """Feed ids [R, G] at position (or branch step) `start` and run loops first_loop+1..exit_loops[r] for row r.

    Rows compute no loop past their own exit: loop j runs on the rows up to the
    last one that needs it, so rows ordered latest exit first do the least work
    (with 8 loops, rows exiting at 1..8 do 36 row-loops, not 64). `state`
    [R, G, dim] carries on rows that stopped after `first_loop` loops (a draft).
    thresholds (adaptive loops, a KL in nats per row, 0: off): see step_every_row.
    """
    if any(t > 0 for t in thresholds):
        return step_every_row(model, ids, cache, start, exit_loops, thresholds)
    last = max(exit_loops)
    if min(exit_loops) == last:  # one pass over every row (a plain decode step, a draft, a verification)
        states = list(model.loop_states(ids, last, cache=cache, start=start, first_loop=first_loop, state=state))
        return Step(states, states[-1], list(exit_loops))
    rows_at = leading_rows(exit_loops, range(1, len(exit_loops) + 1))
    states = [h for _, h in loop_runs(model, ids, cache, start, rows_at, first_loop, state)]
    hidden = torch.stack([states[k - 1 - first_loop][r] for r, k in enumerate(exit_loops)])
    return Step(states, hidden, list(exit_loops))


def step_every_row(
    model: LoopedTransformer,
    ids: torch.Tensor,
    cache,
    start: int,
    exit_loops: Sequence[int],
    thresholds: Sequence[float],
    rows_at: Sequence[int] = (),
) -> Step:
    """step() with every row running every loop together (one position per row, from the first loop)
    until each has exited: at its exit loop, or with a threshold > 0 (adaptive loops) at the first loop
    whose read-out is within that many nats (KL) of the loop before it; its skipped loops' keys/values
    then copy that loop's. Read-outs run row by row, so a row's exit depends on its own numbers only,
    whatever rows run beside it (emojilm.engine). rows_at[j]: how many leading rows run loop j + 1
    (the cache's first_rows; default all), so that rows ordered latest exit first skip the loops
    past theirs."""
    rows = ids.shape[0]
    rows_at = list(rows_at) or [rows] * max(exit_loops)
    exits: list[int | None] = [None] * rows
    hidden, logits, previous, states = [None] * rows, [None] * rows, [None] * rows, []
    for loop, h in loop_runs(model, ids, cache, start, rows_at):
        states.append(h)
        for r in range(len(h)):
            if exits[r] is not None:
                continue
            read, agree = None, False
            if r < len(thresholds) and thresholds[r] > 0:
                read = model.readout(h[r : r + 1, -1])
                logp = read.float().log_softmax(-1)
                if previous[r] is not None and loop < exit_loops[r]:
                    agree = float((logp.exp() * (logp - previous[r])).sum(-1)) < thresholds[r]
                previous[r] = logp
            if agree or loop == exit_loops[r]:
                exits[r], hidden[r], logits[r] = loop, h[r], read
        if all(k is not None for k in exits):
            break
    for r, k in enumerate(exits):
        if k < exit_loops[r]:
            cache.copy_to_later_loops(k - 1, start, start + 1, row=r)
    read_all = all(x is not None for x in logits)
    return Step(states, torch.stack(hidden), exits, torch.cat(logits) if read_all else None)


def leading_rows(last_loops: Sequence[int], ends: Sequence[int]) -> list[int]:
    """How many leading rows run each loop: for loop j + 1, up to the end of the last group of rows that
    reaches it (group i ends at row ends[i] and runs to loop last_loops[i]). With groups ordered latest
    exit first, exactly the rows that reach it."""
    return [max(end for end, k in zip(ends, last_loops, strict=True) if k > loop) for loop in range(max(last_loops))]


def loop_runs(model: LoopedTransformer, ids: torch.Tensor, cache, start: int, rows_at: Sequence[int],
              first_loop: int = 0, state: torch.Tensor | None = None):  # fmt: skip
    """Yield (loop, state) for loops first_loop+1..len(rows_at), loop j + 1 run on the first rows_at[j]
    rows (the cache's first_rows): one loop_states pass per run of loops over the same rows, each
    carrying on from the state the run before it reached (`state`: the rows' state after first_loop)."""
    h, loop, rows = state, first_loop, ids.shape[0]
    while loop < len(rows_at):
        n, end = rows_at[loop], loop + rows_at[loop:].count(rows_at[loop])
        part = cache if n == rows else cache.first_rows(n)
        run = model.loop_states(ids[:n], end, cache=part, start=start, first_loop=loop,
                                state=None if h is None else h[:n])  # fmt: skip
        for loop, h in enumerate(run, start=loop + 1):  # noqa: B020 (the run goes on from where loop was)
            yield loop, h
