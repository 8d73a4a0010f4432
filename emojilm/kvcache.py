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


def visible(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """Where a query at query_pos may attend a key at key_pos (broadcast): at or before it, and with a
    sliding window, less than `window` positions before it (lingua's local mask: the window counts itself)."""
    seen = key_pos <= query_pos
    return seen if window is None else seen & (key_pos > query_pos - window)


def first_visible(query_pos: int, window: int | None) -> int:
    """The first position a query at query_pos sees: 0, or with a sliding window the oldest one in it."""
    return 0 if window is None else max(0, query_pos - window + 1)


NO_PREFIX = (0,) * 7  # a decode slot's prefix fields for a row that has none (its keys, values, strides, length)


def native_layout(cache: KVCache | BranchCache) -> bool:
    """Whether native.decode_block can read the cache in place: float32 keys and values on the CPU, laid
    out alike [loops, layers, rows, kv heads, positions, head dim] with each head's values contiguous."""
    k, v = cache.k, cache.v
    return k.dtype == torch.float32 and k.device.type == "cpu" and v.stride() == k.stride() and k.stride(5) == 1


def slot_strides(k: torch.Tensor) -> list[int]:
    """A decode slot's strides of a loop, a layer, a kv head and a position, in floats."""
    return [k.stride(0), k.stride(1), k.stride(3), k.stride(4)]


def row_addresses(k: torch.Tensor, v: torch.Tensor, rows) -> list[tuple[int, int]]:
    """Where each of the given batch rows' keys and values start (bytes)."""
    step = k.stride(2) * k.element_size()
    return [(k.data_ptr() + r * step, v.data_ptr() + r * step) for r in rows]


def repeat_kv(x: torch.Tensor, rep: int) -> torch.Tensor:
    """GQA: kv head j serves query heads j*rep .. j*rep+rep-1, as lingua's repeat_kv ([B, H, T, D])."""
    return x if rep == 1 else x.repeat_interleave(rep, dim=1)


class KVCache:
    """Keys and values of every (loop, layer), one sequence per batch row."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, window: int | None = None) -> None:
        self.k, self.v = k, v  # [loops, layers, batch, kv heads, positions, head dim]
        self.window = window  # the model's sliding window (None: every earlier position is seen)
        self._layers: list[list[tuple[torch.Tensor, torch.Tensor]] | None] = [None] * k.shape[0]  # views per loop

    @classmethod
    def empty(cls, args: ModelArgs, n_loops: int, batch: int, max_len: int, device=None, dtype=torch.float32):
        shape = (n_loops, args.n_layers, batch, args.n_kv_heads, max_len, args.head_dim)
        # Not zeroed: every position is written before it is read (a test runs with NaN in new caches).
        # Zeroing cost 0.08-0.15 s of 8 prompts' prefill at the published shape, for positions a short answer
        # never writes.
        k, v = (torch.empty(shape, device=device, dtype=dtype) for _ in range(2))
        return cls(k, v, args.sliding_window)

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
        # Views made once per loop (a pass runs every layer of it; a first_rows view may run one loop
        # only) and narrow(): a decode step runs this in every block, where each op call counts.
        if self._layers[loop] is None:  # indexed, not unbound: in-place writes to unbound views are refused
            loop_k, loop_v = self.k[loop], self.v[loop]
            self._layers[loop] = [(loop_k[j], loop_v[j]) for j in range(self.k.shape[1])]
        layer_k, layer_v = self._layers[loop][layer]
        layer_k.narrow(2, start, T).copy_(k)
        layer_v.narrow(2, start, T).copy_(v)
        rep = q.shape[1] // k.shape[1]
        keys, values = repeat_kv(layer_k.narrow(2, 0, end), rep), repeat_kv(layer_v.narrow(2, 0, end), rep)
        if self.window is not None and end > self.window:  # some earlier positions are out of the window
            positions = torch.arange(end, device=q.device)
            mask = visible(positions[start:, None], positions, self.window)
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        if start == 0:
            return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        if T == 1:
            return F.scaled_dot_product_attention(q, keys, values)
        mask = torch.ones(T, end, dtype=torch.bool, device=q.device).tril(start)  # causal with an offset
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)

    def decode_slots(self, start: int) -> list[list[int]] | None:
        """Per row, where native.decode_block finds its keys and values to feed one position at `start`:
        their addresses, the strides of a loop, a layer, a head and a position (in floats), the position,
        the first one it attends and its loops, then no prefix (NO_PREFIX). None where that kernel cannot
        serve: not float32 on the CPU, or `start` outside the cache (then torch's path raises)."""
        if not native_layout(self) or not 0 <= start < self.max_len:
            return None
        first = first_visible(start, self.window)
        rest = [*slot_strides(self.k), start, first, self.n_loops, *NO_PREFIX]
        return [[k, v, *rest] for k, v in row_addresses(self.k, self.v, range(self.k.shape[2]))]

    def copy_to_later_loops(self, loop: int, start: int, end: int, row: int | None = None) -> None:
        """Reuse loop `loop`'s keys/values at positions start..end (of one row, or all) for every later loop.

        Used when a token exits early: the loops it skipped must still hold
        something for later tokens to attend to, and the last state it reached
        is the best estimate of what they would have held.
        """
        rows = slice(None) if row is None else slice(row, row + 1)
        self.k[loop + 1 :, :, rows, :, start:end] = self.k[loop, :, rows, :, start:end]
        self.v[loop + 1 :, :, rows, :, start:end] = self.v[loop, :, rows, :, start:end]

    def first_rows(self, rows: int) -> KVCache:
        """A view of the first `rows` batch rows (writes go to this cache)."""
        return self if rows == self.k.shape[2] else KVCache(self.k[:, :, :rows], self.v[:, :, :rows], self.window)

    def repeat_rows(self, times: int) -> KVCache:
        """A copy with each batch row repeated `times` times in a row (one prefill, many continuations)."""
        if times == 1:
            return KVCache(self.k, self.v, self.window)
        k, v = self.k.repeat_interleave(times, dim=2), self.v.repeat_interleave(times, dim=2)
        return KVCache(k, v, self.window)


class BranchCache:
    """Rows that each continue row 0 of a trunk cache from their own position, in step with each other.

    Row r sees the trunk's positions before branch_at[r], then its own tokens:
    the tokens fed at step s (`start` = s) sit at positions branch_at[r] + s.
    Only the rows' own keys/values are stored here (`BranchCache.grow`).
    """

    def __init__(self, trunk: KVCache, branch_at: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 whole: BranchCache | None = None) -> None:  # fmt: skip
        self.trunk, self.branch_at = trunk, branch_at
        self.k, self.v = k, v  # [loops, layers, rows, kv heads, steps, head dim]
        self.whole = whole or self  # the cache this one is a view of (first_rows): it holds the masks
        self.shared = int(branch_at.max()) if whole is None else whole.shared  # trunk positions any row sees
        self._mask: tuple[int, int, torch.Tensor] | None = None  # (start, T, mask) of the step being run

    @classmethod
    def grow(cls, trunk: KVCache, branch_at: torch.Tensor, length: int) -> BranchCache:
        """Branches at positions branch_at [R] of the trunk, with room for `length` steps each."""
        last = int(branch_at.max())
        if last > trunk.max_len:
            raise ValueError(f"a branch at position {last} is past the trunk's {trunk.max_len}")
        shape = list(trunk.k.shape)
        shape[2], shape[4] = len(branch_at), length
        # Not zeroed: a row reads only the steps it has written, at the loops it runs.
        return cls(trunk, branch_at, trunk.k.new_empty(shape), trunk.v.new_empty(shape))

    @property
    def n_loops(self) -> int:
        return self.k.shape[0]

    def positions(self, start: int, length: int) -> torch.Tensor:
        """Positions [R, T] of `length` tokens fed at step `start`."""
        return row_positions(self.branch_at + start, length)

    def attend(self, loop: int, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Store k/v [R, H_kv, T, D] as steps start.. and attend q [R, H, T, D] to the trunk and own steps so far.

        All rows' queries attend in one call to one key sequence: the shared
        trunk positions, then every row's own steps. The mask keeps each row to
        the trunk before its branch and to its own steps, so the trunk is read
        once for all rows instead of being copied into each.
        """
        R, H, T, D = q.shape
        end = start + T
        self.k[loop, layer, :, :, start:end] = k
        self.v[loop, layer, :, :, start:end] = v
        rep = H // k.shape[1]
        keys = repeat_kv(self._sequence(self.trunk.k, self.k, loop, layer, end), rep)
        values = repeat_kv(self._sequence(self.trunk.v, self.v, loop, layer, end), rep)
        queries = q.transpose(0, 1).reshape(1, H, R * T, D)
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=self._step_mask(start, T))
        return out.view(H, R, T, D).transpose(0, 1)

    def decode_slots(self, start: int) -> list[list[int]] | None:
        """Per row, as KVCache.decode_slots, for feeding step `start`: its own steps, after a prefix read
        in place in the trunk (row 0's positions it sees before its branch). None where the kernel cannot
        serve (then torch attends, or raises where `start` is past the steps held)."""
        trunk = self.trunk
        if not (native_layout(self) and native_layout(trunk)) or not 0 <= start < self.k.shape[4]:
            return None
        own_first = first_visible(start, trunk.window)
        rest = [*slot_strides(self.k), start, own_first, self.n_loops]
        [(trunk_k, trunk_v)] = row_addresses(trunk.k, trunk.v, [0])
        slots = []
        for (k, v), at in zip(row_addresses(self.k, self.v, range(self.k.shape[2])), self.branch_at.tolist(),
                              strict=True):  # fmt: skip
            seen = first_visible(at + start, trunk.window)  # its first trunk position
            skip = min(seen, at) * trunk.k.stride(4) * trunk.k.element_size()
            slots.append([k, v, *rest, trunk_k + skip, trunk_v + skip, *slot_strides(trunk.k), max(0, at - seen)])
        return slots

    def _sequence(self, trunk: torch.Tensor, own: torch.Tensor, loop: int, layer: int, end: int) -> torch.Tensor:
        """[1, H_kv, shared + R * end, D]: the shared trunk positions, then each row's steps up to `end`."""
        rows = own[loop, layer, :, :, :end].transpose(0, 1).flatten(1, 2)
        return torch.cat([trunk[loop, layer, 0, :, : self.shared], rows], dim=1)[None]

    def _step_mask(self, start: int, T: int) -> torch.Tensor:
        """[R * T, shared + R * end]: 0 where a (row, new token) query sees a key, else -inf.

        Built once per step by the whole cache; a view of its first rows takes
        the top-left corner (its queries and keys come first).
        """
        whole, rows = self.whole, len(self.branch_at)
        if whole._mask is None or whole._mask[:2] != (start, T):
            whole._mask = (start, T, whole._build_mask(start, T))
        return whole._mask[2][: rows * T, : self.shared + rows * (start + T)]

    def _build_mask(self, start: int, T: int) -> torch.Tensor:
        R, device, window = len(self.branch_at), self.branch_at.device, self.trunk.window
        rows, end = torch.arange(R, device=device), start + T
        query_pos = row_positions(self.branch_at + start, T)[:, :, None]  # [R, T, 1]
        trunk_pos = torch.arange(self.shared, device=device)
        before_branch = trunk_pos < self.branch_at[:, None, None]
        sees_trunk = before_branch & visible(query_pos, trunk_pos, window)  # [R, T, shared]
        same_row = rows[:, None, None, None] == rows[None, None, :, None]  # [R, 1, R, 1]
        steps = torch.arange(end, device=device)
        step_seen = visible(start + torch.arange(T, device=device)[:, None], steps, window)  # [T, end]: own steps
        sees_own = (same_row & step_seen[None, :, None]).reshape(R, T, R * end)
        sees = torch.cat([sees_trunk, sees_own], dim=-1).reshape(R * T, -1)
        # Additive, in the cache's dtype: a boolean mask would be converted in every layer.
        return torch.zeros(sees.shape, dtype=self.k.dtype, device=device).masked_fill(~sees, -math.inf)

    def first_rows(self, rows: int) -> BranchCache:
        """A view of the first `rows` rows (writes go to this cache)."""
        if rows == len(self.branch_at):
            return self
        return BranchCache(self.trunk, self.branch_at[:rows], self.k[:, :, :rows], self.v[:, :, :rows], self.whole)

    def select_rows(self, rows: list[int]) -> BranchCache:
        """A copy holding the given rows' own steps, in that order (a row may come more than once)."""
        index = torch.tensor(rows, device=self.k.device)
        return BranchCache(
            self.trunk, self.branch_at[index], self.k.index_select(2, index), self.v.index_select(2, index)
        )
