"""Keys and values kept between decoding steps, and attention over them.

The blocks are shared across loops but their inputs differ from loop to loop,
so every (loop, layer) pair has its own keys and values. A cache stores the
keys/values of the tokens it is given and attends their queries to everything
before them (`attend`), so the attention mask lives with the layout it
describes:

- `KVCache`: one sequence per batch row, every row at the same positions.
- `BranchCache`: rows that each continue one shared *trunk* sequence from
  their own position (the trace's alternatives and per-loop answers). The
  trunk is read in place, never copied per row: at the real shape a copy per
  row would move more memory than the weights themselves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emojilm.config import ModelArgs


def row_positions(start: torch.Tensor, length: int) -> torch.Tensor:
    """Positions [B, T] of `length` new tokens in each batch row, row b starting at start[b]."""
    return start[:, None] + torch.arange(length, device=start.device)


def repeat_kv(x: torch.Tensor, rep: int) -> torch.Tensor:
    """GQA: kv head j serves query heads j*rep .. j*rep+rep-1, as lingua's repeat_kv ([B, H, T, D])."""
    return x if rep == 1 else x.repeat_interleave(rep, dim=1)


class KVCache:
    """Keys and values of every (loop, layer), one sequence per batch row."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v  # [loops, layers, batch, kv heads, positions, head dim]

    @classmethod
    def empty(cls, args: ModelArgs, n_loops: int, batch: int, max_len: int, device=None, dtype=torch.float32):
        shape = (n_loops, args.n_layers, batch, args.n_kv_heads, max_len, args.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @property
    def n_loops(self) -> int:
        return self.k.shape[0]

    @property
    def max_len(self) -> int:
        return self.k.shape[4]

    def positions(self, start: int, length: int) -> slice:
        """Where `length` tokens fed at `start` sit (the same in every row)."""
        return slice(start, start + length)

    def attend(self, loop: int, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Store k/v [B, H_kv, T, D] at positions start.. and attend q [B, H, T, D] causally to all so far."""
        T, end = k.shape[2], start + k.shape[2]
        self.k[loop, layer, :, :, start:end] = k
        self.v[loop, layer, :, :, start:end] = v
        rep = q.shape[1] // k.shape[1]
        keys, values = repeat_kv(self.k[loop, layer, :, :, :end], rep), repeat_kv(self.v[loop, layer, :, :, :end], rep)
        if start == 0:
            return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        if T == 1:
            return F.scaled_dot_product_attention(q, keys, values)
        mask = torch.ones(T, end, dtype=torch.bool, device=q.device).tril(start)  # causal with an offset
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)

    def copy_to_later_loops(self, loop: int, start: int, end: int) -> None:
        """Reuse loop `loop`'s keys/values at positions start..end for every later loop.

        Used when a token exits early: the loops it skipped must still hold
        something for later tokens to attend to, and the last state it reached
        is the best estimate of what they would have held.
        """
        self.k[loop + 1 :, :, :, :, start:end] = self.k[loop, :, :, :, start:end]
        self.v[loop + 1 :, :, :, :, start:end] = self.v[loop, :, :, :, start:end]

    def first_rows(self, rows: int) -> KVCache:
        """A view of the first `rows` batch rows (writes go to this cache)."""
        return self if rows == self.k.shape[2] else KVCache(self.k[:, :, :rows], self.v[:, :, :rows])

    def repeat_rows(self, times: int) -> KVCache:
        """A copy with each batch row repeated `times` times in a row (one prefill, many continuations)."""
        if times == 1:
            return KVCache(self.k, self.v)
        return KVCache(self.k.repeat_interleave(times, dim=2), self.v.repeat_interleave(times, dim=2))


class BranchCache:
    """Rows that each continue row 0 of a trunk cache from their own position, in step with each other.

    Row r sees the trunk's positions before branch_at[r], then its own tokens:
    the tokens fed at step s (`start` = s) sit at positions branch_at[r] + s.
    Only the rows' own keys/values are stored here (`BranchCache.grow`).
    """

    def __init__(self, trunk: KVCache, branch_at: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 trunk_bias: torch.Tensor) -> None:  # fmt: skip
        self.trunk, self.branch_at = trunk, branch_at
        self.k, self.v = k, v  # [loops, layers, rows, kv heads, steps, head dim]
        self.trunk_bias = trunk_bias  # [rows, 1, 1, shared]: 0 where a row sees a trunk position, else -inf

    @classmethod
    def grow(cls, trunk: KVCache, branch_at: torch.Tensor, length: int) -> BranchCache:
        """Branches at positions branch_at [R] of the trunk, with room for `length` steps each."""
        shared = int(branch_at.max())  # trunk positions any row sees
        if shared > trunk.max_len:
            raise ValueError(f"a branch at position {shared} is past the trunk's {trunk.max_len} positions")
        hidden = torch.arange(shared, device=branch_at.device) >= branch_at[:, None]
        bias = torch.zeros(hidden.shape, device=branch_at.device).masked_fill(hidden, -math.inf)
        shape = list(trunk.k.shape)
        shape[2], shape[4] = len(branch_at), length
        # Not zeroed: a row reads only the steps it has written, at the loops it runs.
        return cls(trunk, branch_at, trunk.k.new_empty(shape), trunk.v.new_empty(shape), bias[:, None, None])

    @property
    def n_loops(self) -> int:
        return self.k.shape[0]

    def positions(self, start: int, length: int) -> torch.Tensor:
        """Positions [R, T] of `length` tokens fed at step `start`."""
        return row_positions(self.branch_at + start, length)

    def attend(self, loop: int, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Store k/v [R, H_kv, T, D] as steps start.. and attend q [R, H, T, D] to the trunk and own steps so far.

        One softmax over both parts. The trunk's keys are shared by all rows, so
        its part is one batched product per kv head, rows and their query heads
        side by side: nothing is copied per row.
        """
        R, H, T, D = q.shape
        G, end, shared = k.shape[1], start + T, self.trunk_bias.shape[-1]
        self.k[loop, layer, :, :, start:end] = k
        self.v[loop, layer, :, :, start:end] = v
        query = q.float().reshape(R, G, H // G * T, D) / math.sqrt(D)  # per kv head: (query head, step)
        by_head = query.transpose(0, 1).reshape(G, -1, D)  # [G, R * H/G * T, D]
        trunk_k, trunk_v = self.trunk.k[loop, layer, 0, :, :shared], self.trunk.v[loop, layer, 0, :, :shared]
        own_k, own_v = self.k[loop, layer, :, :, :end], self.v[loop, layer, :, :, :end]
        trunk_scores = torch.bmm(by_head, trunk_k.float().transpose(1, 2)).view(G, R, -1, shared).transpose(0, 1)
        own_scores = query @ own_k.float().transpose(2, 3)  # [R, G, H/G * T, end]
        if T > 1:  # step t sees own steps up to start + t
            step = (start + torch.arange(T, device=q.device)).repeat(H // G)
            own_scores = own_scores.masked_fill(torch.arange(end, device=q.device) > step[:, None], -math.inf)
        weights = torch.cat([trunk_scores + self.trunk_bias, own_scores], dim=-1).softmax(-1)
        trunk_weights = weights[..., :shared].transpose(0, 1).reshape(G, -1, shared)
        out = torch.bmm(trunk_weights, trunk_v.float()).view(G, R, -1, D).transpose(0, 1)
        out = out + weights[..., shared:] @ own_v.float()
        return out.reshape(R, H, T, D).type_as(q)

    def first_rows(self, rows: int) -> BranchCache:
        """A view of the first `rows` rows (writes go to this cache)."""
        if rows == len(self.branch_at):
            return self
        return BranchCache(self.trunk, self.branch_at[:rows], self.k[:, :, :rows], self.v[:, :, :rows],
                           self.trunk_bias[:rows])  # fmt: skip

    def select_rows(self, rows: list[int]) -> BranchCache:
        """A copy holding the given rows' own steps, in that order (a row may come more than once)."""
        index = torch.tensor(rows, device=self.k.device)
        return BranchCache(self.trunk, self.branch_at[index], self.k.index_select(2, index),
                           self.v.index_select(2, index), self.trunk_bias[index])  # fmt: skip
