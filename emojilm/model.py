"""The looped byte transformer, computing exactly what lingua's Transformer computes.

Parameter names match lingua's state dict, so a lingua checkpoint loads as is.
The model is lingua's pre-norm Llama-style stack (RMSNorm, interleaved-pair
RoPE, GQA attention, SwiGLU feed-forward) whose `n_layers` blocks are applied
`n_loops` times with shared weights. How one loop's output becomes the next
loop's input is the *loop mode* (h0 is the token embedding, B(h) all blocks once):

    none               h_t = B(h_{t-1})
    add                h_t = B(h_{t-1}) + h_{t-1}
    add_skip_first     h_1 = B(h_0),  then as "add"
    inject_embeddings  h_1 = B(h_0),  h_t = B(h_{t-1} + h_0)

The other modes read a learned per-loop tensor g (`loop_gates`, [L] or [L, dim]):

    gated              h_t = B(h_{t-1}) + g_t * h_{t-1}
    gated_update       h_t = h_{t-1} + g_t * B(h_{t-1})
    gated_inject       h_t = B(h_{t-1} + g_t * h_0)
    gated_mix          h_t = h_{t-1} + sigmoid(g_t) * (B(h_{t-1}) - h_{t-1})
    loop_embed         x_t = h_{t-1} + g_t,  h_t = B(x_t) + x_t   (g_t: loop t's embedding)

With L = n_loops, loop t uses g_t; with L = n_loops - 1, loop 1 runs plain
(h_1 = B(h_0)) and loop t uses g_{t-1}. Loops beyond the trained count reuse the last row.

Attention may have an output gate (`wg`, `args.attn_gate`): the attention output
times sigmoid(x W_g^T) before wo, x the block's normed input, one gate per head
or per element. With `sliding_window` each position attends to itself and the
window - 1 positions before it.

Logits are output(norm(h)); `loop_logits` reads them out after every loop.
For inference, `to_format` stores the blocks' matrices in bfloat16 or int8 (the
embedding, the final norm and the read-out stay float32), and `fuse_weights`
prepares every matrix for the fastest product this machine has (`kernels`).
Where that is emojilm's own kernel, a block runs in two calls of it around its
attention (`emojilm.native`): the norms, RoPE and SwiGLU between the products
too, without a dozen small torch ops each decode step pays for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from emojilm import kernels, native
from emojilm.config import GATE_MODES, LOOP_MODES, ModelArgs
from emojilm.kvcache import BranchCache, KVCache, repeat_kv, visible
from emojilm.request import check_integer


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Computed in fp32 whatever the weights' dtype, as lingua does (no conversions where all is fp32:
        # a decode step of a small model runs this thousands of times a second).
        weight = self.weight
        if x.dtype == weight.dtype == torch.float32:
            return F.rms_norm(x, weight.shape, weight, self.eps)
        return F.rms_norm(x.float(), weight.shape, weight.float(), self.eps).type_as(x)


def rope_table(head_dim: int, max_seqlen: int, theta: float) -> torch.Tensor:
    """Rotations e^(i·pos·theta^(-2j/head_dim)), [max_seqlen, head_dim // 2] as float32 (re, im) pairs."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_seqlen, dtype=torch.float64), inv_freq)
    return torch.view_as_real(torch.polar(torch.ones_like(angles), angles)).float()


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]) of x [B, T, H, D] as complex numbers; rope: [T or B, T, 1, D/2]."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rope).flatten(-2).type_as(x)


class Rotation(NamedTuple):
    """RoPE for the positions a forward runs: `table` complex [T or B, T, 1, D/2] (torch's path) and, for
    blocks on emojilm's kernels, `rows`: the same as (cos, sin) pairs, one row [D] per batch row and position."""

    table: torch.Tensor
    rows: torch.Tensor | None

    @classmethod
    def of(cls, table: torch.Tensor, tokens_shape: torch.Size, native_blocks: bool) -> Rotation:
        """The rotation of a forward over tokens of tokens_shape [B, T], with rows where blocks run natively."""
        if not native_blocks:
            return cls(table, None)
        B, T = tokens_shape
        pairs = torch.view_as_real(table).flatten(-3)  # [T or B, T, D]
        return cls(table, pairs.expand(B, T, -1).reshape(B * T, -1).contiguous())


# float16 is for GPUs; on CPU, bfloat16 and int8 are the formats that read fewer bytes than float32.
WEIGHT_FORMATS = ("float32", "bfloat16", "float16", "int8")


class Int8Linear(nn.Module):
    """A bias-free linear layer stored as int8 rows with one bf16 scale per output (weight-only)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.bfloat16))

    @classmethod
    def quantize(cls, linear: nn.Linear) -> Int8Linear:
        with torch.device("meta"):  # on meta weights, the layout only: a converted state dict is loaded into it
            layer = cls(linear.in_features, linear.out_features)
        if linear.weight.is_meta:
            return layer
        layer.weight, layer.scale = kernels.quantize_rows(linear.weight)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, kernels.dequantize_rows(self.weight, self.scale).to(x.dtype))


def fuse_linears(*linears: nn.Linear | Int8Linear) -> kernels.Product:
    """Move the linears' weights into one matrix, each weight becoming a view of it, ready for products.

    A decode step multiplies a single vector by every weight, so it runs at the
    speed memory streams the matrix. float32 is fused as one [in, sum of outs]
    matrix, whose long contiguous rows torch's x @ W streams fastest on CPU;
    bfloat16 and int8 as [sum of outs, in] rows, the layout their kernels read.
    The parameters keep their names, shapes and values.
    """
    if isinstance(linears[0], Int8Linear):
        rows = torch.cat([linear.weight for linear in linears])
        scale = torch.cat([linear.scale for linear in linears])
        views = zip(linears, _row_views(rows, linears), _row_views(scale, linears), strict=True)
        for linear, part, part_scale in views:
            linear.weight, linear.scale = part, part_scale
        return kernels.int8_product(rows, scale)
    if linears[0].weight.dtype == torch.float32:
        fused = torch.cat([linear.weight.detach().t() for linear in linears], dim=1)
        for linear, part in zip(linears, _row_views(fused.t(), linears), strict=True):
            linear.weight.data = part
        return kernels.DenseProduct(fused)
    fused = torch.cat([linear.weight.detach() for linear in linears])
    for linear, part in zip(linears, _row_views(fused, linears), strict=True):
        linear.weight.data = part
    return kernels.bfloat16_product(fused) if fused.dtype == torch.bfloat16 else kernels.DenseProduct(fused.t())


def _row_views(fused: torch.Tensor, linears) -> list[torch.Tensor]:
    """Consecutive slices of fused's rows (dim 0), one per linear's output size."""
    return list(fused.split([linear.out_features for linear in linears]))


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.window = args.sliding_window
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.products: dict[str, kernels.Product] = {}  # once fused: "qkv" (wq|wk|wv|wg) and "o"
        # The output gate reads the same input as q, k and v: it is fused with them (one product per step).
        gates = {"none": 0, "head": args.n_heads, "element": args.n_heads * args.head_dim}[args.attn_gate]
        self.wg = nn.Linear(args.dim, gates, bias=False) if gates else None

    def inputs(self) -> list[nn.Linear]:
        """The projections of the block's normed input: q, k, v, and the output gate when there is one."""
        return [self.wq, self.wk, self.wv] + ([self.wg] if self.wg is not None else [])

    def fuse(self) -> None:
        self.products = {"qkv": fuse_linears(*self.inputs()), "o": fuse_linears(self.wo)}

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        """The q, k and v projections (and the gate's) side by side: [B, T, (H + 2 H_kv) * D (+ gates)]."""
        if not self.products:
            return torch.cat([linear(x) for linear in self.inputs()], dim=-1)
        return self.products["qkv"](x)

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return self.products["o"](x) if self.products else self.wo(x)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        cache: KVCache | BranchCache | None,
        loop: int,
        layer: int,
        start: int,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        H, H_kv, D = self.n_heads, self.n_kv_heads, self.head_dim
        projected = self.qkv(x)
        heads = projected[..., : (H + 2 * H_kv) * D].view(B, T, H + 2 * H_kv, D)
        qk = apply_rope(heads[:, :, : H + H_kv], rope)  # q and k rotate alike: one call for both
        gate = projected[..., (H + 2 * H_kv) * D :] if self.wg is not None else None
        attended = self.attend(qk, heads[:, :, H + H_kv :], gate, cache, loop, layer, start)
        return self.out(attended)

    def attend(
        self,
        qk: torch.Tensor,
        v: torch.Tensor,
        gate: torch.Tensor | None,
        cache: KVCache | BranchCache | None,
        loop: int,
        layer: int,
        start: int,
    ) -> torch.Tensor:
        """Attention from the turned q and k heads (side by side, [B, T, H + H_kv, D]) and v [B, T, H_kv, D],
        times the output gate's sigmoid where there is one: [B, T, H * D], what wo multiplies."""
        B, T = v.shape[:2]
        H, H_kv = self.n_heads, self.n_kv_heads
        q, k = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2)  # [B, H, T, D]
        v = v.transpose(1, 2)
        if cache is None:  # the tokens alone, from the start of a sequence
            keys, values = repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv)
            if self.window is None or self.window >= T:
                out = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
            else:
                positions = torch.arange(T, device=v.device)
                mask = visible(positions[:, None], positions, self.window)
                out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        else:
            out = cache.attend(loop, layer, start, q, k, v)
        out = out.transpose(1, 2)  # [B, T, H, D]
        if gate is not None:  # one gate per head broadcasts over its D elements
            out = out * torch.sigmoid(gate).view(B, T, H, -1)
        return out.reshape(B, T, -1)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.products: dict[str, kernels.Product] = {}  # once fused: "13" (w1|w3) and "2"

    def fuse(self) -> None:
        self.products = {"13": fuse_linears(self.w1, self.w3), "2": fuse_linears(self.w2)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.products:
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        gate, up = self.products["13"](x).chunk(2, dim=-1)
        return self.products["2"](F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        # Once fused with every product on emojilm's own kernels: those products, which the block runs itself.
        self.native: dict[str, kernels.NativeProduct] | None = None

    def fuse(self) -> None:
        """Fuse the weights (Attention.fuse, FeedForward.fuse); where emojilm's kernels serve every product
        (and there is no output gate), the block then runs fused around its attention (native.block_output)."""
        self.attention.fuse()
        self.feed_forward.fuse()
        products = {**self.attention.products, **self.feed_forward.products}
        native_products = all(isinstance(p, kernels.NativeProduct) for p in products.values())
        self.native = products if native_products and self.attention.wg is None else None

    def forward(
        self,
        x: torch.Tensor,
        rope: Rotation,
        cache: KVCache | BranchCache | None,
        loop: int,
        layer: int,
        start: int,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """slots: for blocks on emojilm's kernels, where each row's one position attends (decode_slots)."""
        if self.native is not None:
            return self._native_forward(x, rope, cache, loop, layer, start, slots)
        h = x + self.attention(self.attention_norm(x), rope.table, cache, loop, layer, start)
        return h + self.feed_forward(self.ffn_norm(h))

    def _native_forward(self, x, rope: Rotation, cache, loop: int, layer: int, start: int, slots) -> torch.Tensor:
        """forward() in two calls of emojilm's kernels around torch's attention: the same sums, each row's
        in one order, without a dozen small torch ops between the products. A decode step (slots) runs the
        whole block in one call, each row attending in its own cache."""
        B, T, dim = x.shape
        attention = self.attention
        H, H_kv, D = attention.n_heads, attention.n_kv_heads, attention.head_dim
        flat = x.reshape(B * T, dim)
        norm, w = self.attention_norm, self.native
        if slots is not None:
            matrices = w["qkv"].matrix, w["o"].matrix, w["13"].matrix, w["2"].matrix
            norms = norm.weight, self.ffn_norm.weight, norm.eps
            out = native.decode_block(flat, slots, (H, H_kv, D), loop, layer, rope.rows, norms, matrices)
            return out.view(B, T, dim)
        projected = native.attention_inputs(flat, norm.weight, norm.eps, w["qkv"].matrix, rope.rows, (H + H_kv) * D)
        heads = projected.view(B, T, H + 2 * H_kv, D)
        attended = attention.attend(heads[:, :, : H + H_kv], heads[:, :, H + H_kv :], None, cache, loop, layer, start)
        norm = self.ffn_norm
        out = native.block_output(
            flat, attended.reshape(B * T, -1), w["o"].matrix, norm.weight, norm.eps, w["13"].matrix, w["2"].matrix
        )
        return out.view(B, T, dim)


def decode_slots(cache: KVCache | BranchCache | None, start: int, head_dim: int, n_loops: int) -> torch.Tensor | None:
    """Where each row of a decode step (one position per row) keeps its keys and values, for blocks on
    emojilm's kernels (native.decode_block): the cache's decode_slots, or None (torch attends). A
    KVCache or BranchCache run for more loops than it holds goes to torch, which refuses it (the kernel
    would give those loops' rows their queries back, as it does for an engine's rows past their loop
    count)."""
    if cache is None or head_dim > native.module().MAX_HEAD_DIM:
        return None
    if isinstance(cache, KVCache | BranchCache) and n_loops > cache.n_loops:
        return None
    slots = cache.decode_slots(start)
    return None if slots is None else torch.tensor(slots, dtype=torch.int64)


class LoopedTransformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        if args.loop_mode not in LOOP_MODES:
            raise ValueError(f"loop_mode={args.loop_mode!r}; expected one of {LOOP_MODES}")
        if args.loop_mode not in args.loop_modes:
            raise ValueError(f"loop_mode={args.loop_mode!r} needs a row of {args.dim} values per loop")
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        if not args.weight_tying:
            self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.loop_mode in GATE_MODES:  # without a shape from a checkpoint, one gate per loop and channel
            self.loop_gates = nn.Parameter(torch.ones(args.loop_gate_shape or (args.n_loops, args.dim)))
        # Not a buffer: casting the model to bf16 must not round the rotation angles.
        self._rope: torch.Tensor | None = None

    @property
    def loop_mode(self) -> str:
        return self.args.loop_mode

    @property
    def loop_modes(self) -> tuple[str, ...]:
        """The loop modes these weights can run (ModelArgs.loop_modes)."""
        return self.args.loop_modes

    def set_loop_mode(self, mode: str) -> None:
        """Switch how loops are chained (used by the variant probe)."""
        if mode not in self.loop_modes:
            raise ValueError(f"cannot switch this model to loop mode {mode!r}; it runs {', '.join(self.loop_modes)}")
        self.args = dataclasses.replace(self.args, loop_mode=mode)

    def check_loops(self, n_loops: int | None) -> int:
        """Resolve and validate a loop count: None means the trained count."""
        if n_loops is None:
            return self.args.n_loops
        return check_integer("n_loops", n_loops, 1, self.args.max_loops)

    def _rope_on(self, device: torch.device) -> torch.Tensor:
        """The complex64 RoPE table on `device`, computed once per device (kept in fp32 whatever the weights)."""
        if self._rope is None or self._rope.device != device:
            args = self.args
            with torch.inference_mode(False):  # made by a decode, still usable by training (autograd)
                table = rope_table(args.head_dim, args.max_seqlen, args.rope_theta)
                self._rope = torch.view_as_complex(table).to(device)
        return self._rope

    def loop_states(
        self,
        tokens: torch.Tensor,
        n_loops: int | None = None,
        *,
        cache: KVCache | BranchCache | None = None,
        start: int = 0,
        first_loop: int = 0,
        state: torch.Tensor | None = None,
        each_layer: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Yield the hidden state [B, T, dim] after each loop, for tokens at positions start..

        each_layer: also yield, after every block of a loop but its last, the state the loop
        would hand on if it ended there (its carry applied to the blocks so far): the
        layer-by-layer lens, n_layers states per loop.

        With a cache, keys/values of earlier positions are read from it and those
        of these positions are written to it; with a BranchCache, `start` counts
        each row's steps from its own branch position. To carry on a run that
        stopped after `first_loop` loops, pass the state it reached: loops
        first_loop+1..n_loops follow.
        """
        n_loops = self.check_loops(n_loops)
        T = tokens.shape[1]
        positions = slice(start, start + T) if cache is None else cache.positions(start, T)
        end = positions.stop if isinstance(positions, slice) else int(positions.max()) + 1
        if end > self.args.max_seqlen:
            raise ValueError(f"sequence of {end} tokens exceeds max_seqlen={self.args.max_seqlen}")
        rope = Rotation.of(self._rope_on(tokens.device)[positions].unsqueeze(-2), tokens.shape, self.native_blocks)
        slots = decode_slots(cache, start, self.args.head_dim, n_loops) if T == 1 and self.native_blocks else None
        if (state is None) != (first_loop == 0):
            raise ValueError("a state must be given exactly when starting after loop 0")
        h0 = self.tok_embeddings(tokens).to(self.dtype)
        h = h0 if state is None else state
        for loop in range(first_loop, n_loops):
            gate = self._gate(loop, h.dtype)
            x = self._loop_input(loop, gate, h, h0)
            out = x
            for i, layer in enumerate(self.layers):
                out = layer(out, rope, cache, loop, i, start, slots)
                if each_layer and i + 1 < len(self.layers):
                    yield self._carry(loop, gate, out, h, x)
            h = self._carry(loop, gate, out, h, x)
            yield h

    def _gate(self, loop: int, dtype: torch.dtype) -> torch.Tensor | None:
        """Loop `loop`'s row of the per-loop tensor (None: a mode without one, or the first of
        n_loops - 1 rows' loops, which runs plain)."""
        if self.loop_mode not in GATE_MODES:
            return None
        gates = self.loop_gates
        row = loop - (self.args.n_loops - gates.shape[0])
        return None if row < 0 else gates[min(row, gates.shape[0] - 1)].to(dtype)

    def _loop_input(self, loop: int, gate: torch.Tensor | None, h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """What the blocks of loop `loop` read, per the loop mode."""
        mode = self.loop_mode
        if mode == "inject_embeddings" and loop > 0:
            return h + h0
        if gate is not None and mode == "gated_inject":
            return h + gate * h0
        if gate is not None and mode == "loop_embed":
            return h + gate
        return h

    def _carry(self, loop: int, gate: torch.Tensor | None, out: torch.Tensor, prev: torch.Tensor, x: torch.Tensor):
        """The state after loop `loop`: its block output `out` combined with the state before it
        (`prev`) and its input (`x`), per the loop mode."""
        mode = self.loop_mode
        if mode == "add" or (mode == "add_skip_first" and loop > 0):
            return out + prev
        if gate is None:
            return out
        if mode == "gated":
            return out + gate * prev
        if mode == "gated_update":
            return prev + gate * out
        if mode == "gated_mix":
            return prev + torch.sigmoid(gate) * (out - prev)
        if mode == "loop_embed":
            return out + x
        return out  # gated_inject: the gate acted on the input

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits in float32 whatever the blocks' format: the head is float32 and small."""
        head = self.tok_embeddings.weight if self.args.weight_tying else self.output.weight
        return F.linear(self.norm(h.to(head.dtype)), head)

    def forward(
        self,
        tokens: torch.Tensor,
        n_loops: int | None = None,
        *,
        cache: KVCache | BranchCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Logits [B, T, vocab] after the last loop."""
        *_, last = self.loop_states(tokens, n_loops, cache=cache, start=start)
        return self.readout(last)

    def loop_logits(
        self,
        tokens: torch.Tensor,
        n_loops: int | None = None,
        *,
        cache: KVCache | BranchCache | None = None,
        start: int = 0,
        first_loop: int = 0,
        state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits read out after every loop (after loop first_loop onwards): [n_loops - first_loop, B, T, vocab]."""
        states = self.loop_states(tokens, n_loops, cache=cache, start=start, first_loop=first_loop, state=state)
        return torch.stack([self.readout(h) for h in states])

    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype (float32 in every weight format; another after model.to(dtype))."""
        return self.layers[0].attention_norm.weight.dtype

    @property
    def weight_format(self) -> str:
        """How the blocks' matrices are stored: one of WEIGHT_FORMATS."""
        if isinstance(self.layers[0].attention.wq, Int8Linear):
            return "int8"
        return str(self.layers[0].attention.wq.weight.dtype).removeprefix("torch.")

    def to_format(self, weight_format: str) -> LoopedTransformer:
        """Store the blocks' matrices in weight_format, for inference; call before fuse_weights.

        Only the matrices change (99.6 % of the published model's bytes): the
        embedding, the norms and the read-out stay float32, and so do the
        activations and the KV cache. Each product takes its input in its own
        format and returns float32 (`kernels`), so everything between the
        products runs as it does in float32, where small ops are fastest on CPU.
        """
        if weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight format must be one of {', '.join(WEIGHT_FORMATS)}, got {weight_format!r}")
        if weight_format == "float32":
            return self
        for block in self.layers:
            attention = "wq wk wv wo" + (" wg" if block.attention.wg is not None else "")
            for module, names in ((block.attention, attention), (block.feed_forward, "w1 w2 w3")):
                for name in names.split():
                    linear = getattr(module, name)
                    if weight_format == "int8":
                        setattr(module, name, Int8Linear.quantize(linear))
                    else:
                        linear.to(getattr(torch, weight_format))
        return self

    def fuse_weights(self) -> LoopedTransformer:
        """Lay the weights out for inference: wq|wk|wv and w1|w3 each become one matrix.

        Every block then does one product per fused matrix instead of one per
        weight, through the fastest kernel its format has here (`fuse_linears`,
        `kernels`). Outputs match the unfused model up to float rounding. Call it
        last: the weights are views of the fused matrices, which `.to()` would
        split into copies, and the fused path is for inference only (no
        gradients reach the parameters through it).
        """
        for block in self.layers:
            block.fuse()
        kernels.pad_for_speed(self.products())
        return self

    def products(self) -> list[kernels.Product]:
        """The fused matrices' products, block by block (empty before fuse_weights)."""
        return [p for block in self.layers for m in (block.attention, block.feed_forward) for p in m.products.values()]

    @property
    def native_blocks(self) -> bool:
        """Whether blocks run fused on emojilm's kernels (TransformerBlock.fuse)."""
        return any(block.native is not None for block in self.layers)

    @property
    def packed(self) -> bool:
        """Whether products of a few rows run through oneDNN's packed copies (all of them)."""
        products = self.products()
        return bool(products) and all(getattr(p, "packed", None) is not None for p in products)

    @property
    def rows_steady(self) -> bool:
        """Whether every product gives a row the same bits at any row count (kernels.Product.min_rows), so
        that rows may step together with the bits each gets alone (emojilm.engine)."""
        products = self.products()
        return bool(products) and all(p.min_rows is not None for p in products)

    @property
    def kernel(self) -> str:
        """The kernels the products run through (the model panel and the bench name them)."""
        return ", ".join(sorted({p.kernel for p in self.products()})) or "unfused"

    def new_cache(self, n_loops: int | None, batch: int, max_len: int) -> KVCache:
        device = self.tok_embeddings.weight.device
        return KVCache.empty(self.args, self.check_loops(n_loops), batch, max_len, device, self.dtype)

    def num_params(self) -> int:
        """Weights in the model, whatever their format (an int8 layer's weights are buffers)."""
        int8 = [m.weight for m in self.modules() if isinstance(m, Int8Linear)]
        return sum(p.numel() for p in self.parameters()) + sum(w.numel() for w in int8)
