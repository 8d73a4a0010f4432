"""What a checkpoint's tensors are: its names and shapes mapped onto our model, or one clear error.

lingua's `LMTransformer.state_dict()` names the core tensors as our model does
(tok_embeddings, layers.{i}.attention.wq ..., norm, output). Around that core a
checkpoint may hold what its training code added, and `read_layout` reads:

- names wrapped by torch.compile, DDP, FSDP or activation checkpointing
  (`_orig_mod.`, `module.`, ...), in front or around one block;
- the tied head as lingua's TiedLinear stores it (`output.tied_module.weight`), or
  as `output.weight`, or not at all; shared layers stored once per loop: accepted
  when identical to what they copy;
- `rope_embeddings.freqs_cis`, a RoPE table: checked against ours, then dropped;
- an attention output gate per layer: a tensor under `layers.{i}.attention.` other
  than wq/wk/wv/wo, [n_heads, dim] (per head) or [n_heads * head_dim, dim] (per element);
- one per-loop tensor under any name outside the core: [L], [L, dim] or [L, 1, dim]
  with L = n_loops or n_loops - 1, or a ParameterList `name.{t}` of such rows. It
  becomes `loop_gates`, read by one of the gate modes (emojilm.model).

Anything else is refused, listing every missing or unexpected key, shape mismatch
and bad value in one message. Every unforeseen tensor's reading is recorded.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from emojilm.checkpoint import CheckpointError
from emojilm.config import DEFAULT_GATE_MODE, TRUE_READINGS, ConfigFields, ModelArgs
from emojilm.model import LoopedTransformer, rope_table

# Name segments that training wrappers (torch.compile, DDP, FSDP, activation checkpointing) add.
WRAPPER_SEGMENTS = ("_orig_mod", "module", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
ROPE_KEY = "rope_embeddings.freqs_cis"
TIED_HEAD = "output.tied_module.weight"  # lingua's TiedLinear keeps the embedding as a submodule
ATTENTION_CORE = ("wq", "wk", "wv", "wo")
GATE_NAME = "wg"  # our name for an attention output gate: layers.{i}.attention.wg.weight
CORE_PREFIXES = ("tok_embeddings.", "norm.", "output.", "layers.")
# lingua computes its RoPE table in float32: at position 65,536 the angle is off by up to ~4e-3.
ROPE_TOLERANCE = 1e-2


@dataclass
class Layout:
    """A checkpoint's tensors under our names, the args they imply, and what was read from them."""

    state: dict[str, torch.Tensor]
    args: ModelArgs  # with the tensors' attention gate, per-loop tensor and loop mode
    readings: list[tuple[str, str]]  # (key or key family as stored, what it was read as)
    open_modes: tuple[str, ...]  # the loop modes the checkpoint leaves open (the probe's candidates); () if decided


@dataclass
class _Work:
    """What read_layout has found so far."""

    tensors: dict[str, torch.Tensor]  # under our names as they are read
    problems: list[str] = field(default_factory=list)
    readings: list[tuple[str, str]] = field(default_factory=list)
    stored_as: dict[str, str] = field(default_factory=dict)  # our name -> the key it was stored under

    def rename(self, key: str, name: str) -> None:
        self.tensors[name] = self.tensors.pop(key)
        self.stored_as[name] = self.stored_as.pop(key, key)

    def label(self, key: str) -> str:
        """A key for a message: ours, and the stored one where it differs."""
        return f"{key} (stored as {self.stored_as[key]})" if key in self.stored_as else key


def read_layout(state: dict[str, torch.Tensor], args: ModelArgs, fields: ConfigFields) -> Layout:
    """Map a checkpoint's tensors onto our parameter names, or fail listing every problem."""
    work = _unwrapped(state)
    if ROPE_KEY in work.tensors:
        work.readings.append((ROPE_KEY, _check_rope(work.tensors.pop(ROPE_KEY), args, work.problems)))
    args = _attention_gates(work, args, fields)
    _drop_copies(work, args)
    args, open_modes = _loop_tensor(work, args, fields)

    tensors, problems, expected = work.tensors, work.problems, _expected_shapes(args)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        listed = ", ".join(f"{work.label(k)} {list(tensors[k].shape)}" for k in unexpected)
        problems.append(f"unexpected keys ({len(unexpected)}): {listed}")
    for key in sorted(set(expected) & set(tensors)):
        tensor = tensors[key]
        if tuple(tensor.shape) != expected[key]:
            problems.append(f"{work.label(key)} has shape {tuple(tensor.shape)}, params.json implies {expected[key]}")
        elif not tensor.is_floating_point():
            problems.append(f"{work.label(key)} has dtype {tensor.dtype}, expected floating point")
        elif not torch.isfinite(tensor).all():
            problems.append(f"{work.label(key)} holds NaN or infinite values")
    if problems:
        raise CheckpointError("the checkpoint does not match params.json:\n- " + "\n- ".join(problems))
    return Layout(tensors, args, work.readings, open_modes)


@dataclass(frozen=True)
class KeyFamily:
    """Keys that differ only in their numbers (layers.{i}.attention.wq.weight), as stored."""

    name: str
    count: int
    shapes: str  # e.g. "[1024, 1024]", or several joined by "; "
    dtypes: str


def key_family(key: str) -> str:
    """A key with its numbers as placeholders: layers.3.attention.wq.weight -> layers.{i}.attention.wq.weight."""
    return re.sub(r"(?<=\.)\d+(?=\.|$)", "{i}", key)


def key_families(state: dict[str, torch.Tensor]) -> list[KeyFamily]:
    """The state dict's keys grouped into families, in the order they first appear."""
    groups: dict[str, list[torch.Tensor]] = defaultdict(list)
    for key, tensor in state.items():
        groups[key_family(key)].append(tensor)
    return [
        KeyFamily(
            name,
            len(tensors),
            "; ".join(dict.fromkeys(str(list(t.shape)) for t in tensors)),
            "; ".join(dict.fromkeys(str(t.dtype).removeprefix("torch.") for t in tensors)),
        )
        for name, tensors in groups.items()
    ]


def _unwrapped(state: dict[str, torch.Tensor]) -> _Work:
    """The state with the wrappers' segments removed from every name."""
    work = _Work({})
    wrappers: set[str] = set()
    for key, tensor in state.items():
        parts = key.split(".")
        kept = [part for part in parts if part not in WRAPPER_SEGMENTS]
        wrappers |= set(parts) - set(kept)
        name = ".".join(kept)
        if name in work.tensors:
            work.problems.append(f"{work.stored_as.get(name, name)} and {key} both name {name} once unwrapped")
        work.tensors[name] = tensor
        if name != key:
            work.stored_as[name] = key
    if wrappers:
        segments = ", ".join(f"{w}." for w in sorted(wrappers))
        work.readings.append(("(names)", f"training wrappers' segments removed from the names: {segments}"))
    return work


def _check_rope(table: torch.Tensor, args: ModelArgs, problems: list[str]) -> str:
    """Compare a stored RoPE table with ours: lingua's rotation matrices [S, D/2, 2, 2]
    ([[cos, -sin], [sin, cos]]) or complex numbers [S, D/2]."""
    half = args.head_dim // 2
    if table.is_complex() and table.dim() == 2 and table.shape[1] == half:
        stored = torch.view_as_real(table)
    elif table.dim() == 4 and tuple(table.shape[1:]) == (half, 2, 2):
        stored = table[..., :, 0]  # the first column: (cos, sin)
    else:
        problems.append(
            f"{ROPE_KEY} has shape {tuple(table.shape)} ({table.dtype}): neither lingua's rotation matrices "
            f"[positions, {half}, 2, 2] nor complex numbers [positions, {half}]"
        )
        return "refused"
    rows = min(len(stored), args.max_seqlen)
    ours = rope_table(args.head_dim, rows, args.rope_theta)
    gap = float((stored[:rows].float() - ours).abs().max()) if rows else 0.0
    if not gap <= ROPE_TOLERANCE:  # also catches NaN
        problems.append(
            f"{ROPE_KEY} differs from the RoPE table of head_dim={args.head_dim}, rope_theta={args.rope_theta:g} "
            f"by up to {gap:.3g}: the checkpoint rotates positions in another way"
        )
        return "refused"
    return f"lingua's RoPE table, {rows} positions: matches ours (max |Δ| {gap:.1e}); dropped (we compute it)"


def _attention_gates(work: _Work, args: ModelArgs, fields: ConfigFields) -> ModelArgs:
    """Rename each layer's attention output gate to attention.wg.weight; returns args with its kind."""
    found = defaultdict(list)  # layer index -> its candidate keys
    for key in work.tensors:
        if (match := re.match(r"^layers\.(\d+)\.attention\.([^.]+)", key)) and match[2] not in ATTENTION_CORE:
            found[int(match[1])].append(key)
    claimed = fields.value("gated_attn")
    if not found:
        if claimed:
            work.problems.append(
                "params.json says gated_attn: true, but no layer holds an attention gate (a tensor under "
                "layers.{i}.attention. besides wq, wk, wv, wo)"
            )
        return args
    keys = sorted(key for keys in found.values() for key in keys)
    if claimed is False:
        work.problems.append(f"params.json says gated_attn: false, but the state dict holds {', '.join(keys)}")
        return args
    absent = [str(i) for i in range(args.n_layers) if i not in found]
    if absent:
        work.problems.append(f"layer {', '.join(absent)} holds no attention gate, while others do: {', '.join(keys)}")
        return args
    kinds = {(args.n_heads, args.dim): "head", (args.n_heads * args.head_dim, args.dim): "element"}
    seen = set()
    for layer, keys in sorted(found.items()):
        if len(keys) > 1:
            work.problems.append(f"layer {layer} has several attention tensors besides wq/wk/wv/wo: {', '.join(keys)}")
            continue
        [key] = keys
        shape = tuple(work.tensors[key].shape)
        if shape not in kinds:
            shapes = " or ".join(str(list(shape)) for shape in kinds)
            work.problems.append(f"{key} {list(shape)} is not an attention output gate ({shapes})")
            continue
        seen.add((key_family(key), shape))
        work.rename(key, f"layers.{layer}.attention.{GATE_NAME}.weight")
    if len(seen) > 1:
        work.problems.append("the layers' attention gates differ: " + ", ".join(f"{f} {list(s)}" for f, s in seen))
    if len(seen) != 1:
        return args
    [(family, shape)] = seen
    per = "one gate per head" if kinds[shape] == "head" else "one gate per element of each head"
    what = f"attention output gate, {per}: sdpa_out * sigmoid(x W_g^T) before wo"
    work.readings.append((f"{family} {list(shape)}", what))
    return dataclasses.replace(args, attn_gate=kinds[shape])


def _drop_copies(work: _Work, args: ModelArgs) -> None:
    """Remove the copies a checkpoint may store (shared layers once per loop, a tied head) when they
    are identical to what they copy."""
    tensors, expected = work.tensors, _expected_shapes(args)
    layer_copies = 0
    for key in list(tensors):
        original = _copied_from(key, args)
        if original not in expected or original not in tensors:
            continue  # not a copy, or a copy of something unknown or absent: reported later
        copy = tensors.pop(key)
        if not torch.equal(copy, tensors[original]):
            work.problems.append(f"{work.label(key)} should be an identical copy of {original} but differs")
        elif key.startswith("layers."):
            layer_copies += 1
        else:
            work.readings.append((work.stored_as.get(key, key), f"the tied head: identical to {original}"))
    if layer_copies:
        what = f"copies of the shared layers, one set per loop ({layer_copies} tensors, identical)"
        work.readings.append((f"layers.{{{args.n_layers}..}}", what))


def _copied_from(key: str, args: ModelArgs) -> str | None:
    """If key names a duplicate of another parameter, the name of that parameter."""
    if match := re.match(r"^layers\.(\d+)\.(.+)$", key):
        index = int(match[1])
        return f"layers.{index % args.n_layers}.{match[2]}" if index >= args.n_layers else None
    if key in ("output.weight", TIED_HEAD) and args.weight_tying:
        return "tok_embeddings.weight"
    return None


def _loop_tensor(work: _Work, args: ModelArgs, fields: ConfigFields) -> tuple[ModelArgs, tuple[str, ...]]:
    """Find the per-loop tensor, store it as `loop_gates` and settle the loop mode; returns
    (args, the loop modes left open for the probe)."""
    residual = fields.value("loop_residual")
    found = _per_loop_candidates(work.tensors, args)
    if not found:
        return args, (TRUE_READINGS if residual is True else ())
    if len(found) > 1:
        listed = ", ".join(f"{name} {list(tensor.shape)}" for name, (_, tensor) in found.items())
        work.problems.append(f"several tensors have a per-loop shape ({listed}): which one the loops read is unclear")
        return args, ()
    [(name, (keys, gates))] = found.items()
    first = work.stored_as.get(keys[0], keys[0])
    stored = f"{first} {list(work.tensors[keys[0]].shape)}" if len(keys) == 1 else f"{name}.{{i}} ×{len(keys)}"
    shaped = dataclasses.replace(args, loop_gate_shape=tuple(gates.shape))
    named = isinstance(residual, str)  # the config names the reading
    if residual is False or (named and residual not in shaped.loop_modes):
        says = "turns the loop residual off" if residual is False else f"says loop_residual={residual!r}"
        readers = ", ".join(shaped.loop_modes)
        work.problems.append(
            f"params.json {says}, but the state dict holds a per-loop tensor {stored} ({readers} read it)"
        )
        return args, ()  # the tensor stays, among the unexpected keys
    for key in keys:
        del work.tensors[key]
    work.tensors["loop_gates"] = gates
    work.stored_as["loop_gates"] = stored
    runs = "" if gates.shape[0] == args.n_loops else "; loop 1 runs plain, loop t reads row t-1"
    what = f"per-loop tensor {list(gates.shape)} (loop_gates){runs}"
    if named:
        work.readings.append((stored, f"{what}, read as params.json's {residual!r}"))
        return shaped, ()
    shaped = dataclasses.replace(shaped, loop_mode=DEFAULT_GATE_MODE)
    work.readings.append((stored, f"{what}: read as one of {', '.join(shaped.loop_modes)} (see the variant)"))
    return shaped, shaped.loop_modes


def _per_loop_candidates(tensors, args: ModelArgs) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Tensors outside the core whose shape says "one per loop": name -> (their keys, as [L] or [L, dim])."""
    lengths = {args.n_loops, args.n_loops - 1} - {0}
    rows = {(): (), (1,): (), (args.dim,): (args.dim,), (1, args.dim): (args.dim,)}  # a row's shape -> kept as
    found = {}
    lists = defaultdict(dict)  # a ParameterList's name -> {index: key}
    for key, tensor in tensors.items():
        if key.startswith(CORE_PREFIXES):
            continue
        shape = tuple(tensor.shape)
        if shape and shape[0] in lengths and shape[1:] in rows:
            found[key] = ([key], tensor.reshape(shape[0], *rows[shape[1:]]))
        elif (match := re.match(r"^(.+)\.(\d+)$", key)) and shape in rows:
            lists[match[1]][int(match[2])] = key
    for name, items in lists.items():
        keys = [items[t] for t in sorted(items)]
        shapes = {tuple(tensors[k].shape) for k in keys}
        if sorted(items) == list(range(len(items))) and len(items) in lengths and len(shapes) == 1:
            row = rows[shapes.pop()]
            found[name] = (keys, torch.stack([tensors[k].reshape(row) for k in keys]))
    return found


def _expected_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = LoopedTransformer(args)
    return {name: tuple(p.shape) for name, p in model.state_dict().items()}
