"""The one forward step every decoder stands on, and the prefill before it.

`step` feeds the next id (or a few) of every batch row and runs the loops that
row needs: up to its *exit loop* (the loop whose read-out picks its next byte),
carrying on from a draft's state, or, with adaptive loops, until two successive
read-outs agree. Plain, exit-loop and adaptive decoding (emojilm.generation),
self-speculative drafting and verifying (emojilm.speculative) and the trace's
branches all call it.
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
    threshold: float = 0.0,
) -> Step:
    """Feed ids [R, G] at position (or branch step) `start` and run loops first_loop+1..exit_loops[r] for row r.

    Rows compute no loop past their own exit: loop j runs on the rows up to the
    last one that needs it, so rows ordered latest exit first do the least work
    (with 8 loops, rows exiting at 1..8 do 36 row-loops, not 64). `state`
    [R, G, dim] carries on rows that stopped after `first_loop` loops (a draft).
    threshold > 0 (adaptive loops; one position per row, all loops from the first):
    a row stops at the first loop whose read-out is within `threshold` nats
    (KL) of the loop before it, and its skipped loops' keys/values copy that loop's.
    """
    if threshold > 0:
        return _adaptive_step(model, ids, cache, start, max(exit_loops), threshold)
    last = max(exit_loops)
    if min(exit_loops) == last:  # one pass over every row (a plain decode step, a draft, a verification)
        states = list(model.loop_states(ids, last, cache=cache, start=start, first_loop=first_loop, state=state))
        return Step(states, states[-1], list(exit_loops))
    rows_at = [1 + max(r for r, k in enumerate(exit_loops) if k > loop) for loop in range(last)]
    states, h, loop = [], state, first_loop
    while loop < last:  # one pass per run of loops over the same rows
        rows, end = rows_at[loop], loop + rows_at[loop:].count(rows_at[loop])
        carried = None if h is None else h[:rows]
        states += model.loop_states(ids[:rows], end, cache=cache.first_rows(rows), start=start,
                                    first_loop=loop, state=carried)  # fmt: skip
        h, loop = states[-1], end
    hidden = torch.stack([states[k - 1 - first_loop][r] for r, k in enumerate(exit_loops)])
    return Step(states, hidden, list(exit_loops))


def _adaptive_step(model, ids, cache: KVCache, start: int, n_loops: int, threshold: float) -> Step:
    """step() with adaptive loops: every row runs until its two last read-outs agree (or n_loops)."""
    rows = ids.shape[0]
    exits: list[int | None] = [None] * rows
    hidden, logits, states, previous = [None] * rows, [None] * rows, [], None
    for loop, h in enumerate(model.loop_states(ids, n_loops, cache=cache, start=start), start=1):
        states.append(h)
        read = model.readout(h[:, -1])
        logp = read.float().log_softmax(-1)
        kl = None if previous is None else (logp.exp() * (logp - previous)).sum(-1).tolist()
        for r in range(rows):
            if exits[r] is None and (loop == n_loops or (kl is not None and kl[r] < threshold)):
                exits[r], hidden[r], logits[r] = loop, h[r], read[r]
        if all(k is not None for k in exits):
            break
        previous = logp
    for r, k in enumerate(exits):
        if k < n_loops:
            cache.copy_to_later_loops(k - 1, start, start + 1, row=r if rows > 1 else None)
    return Step(states, torch.stack(hidden), exits, torch.stack(logits))
