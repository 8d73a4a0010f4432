"""Reading the layouts a lingua-based trainer writes: names, wrappers, extra tensors, config spellings.

`LinguaTree` below is this test's own copy of the module tree of lingua's
`LMTransformer` (facebookresearch/lingua, apps/main/transformer.py and
lingua/transformer.py), written from reading that code: parameter names come from
module nesting, so its `state_dict()` produces exactly lingua's key names (the tied
head as `output.tied_module.weight`, the RoPE table as a non-persistent buffer).
Logits are checked against the independent reference in tests/test_model.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import emojilm
from emojilm import CheckpointError
from tests.conftest import lingua_shapes, lingua_sizes, random_state_dict, random_tokens, tiny_params
from tests.test_checkpoint import per_loop_copies
from tests.test_model import reference_loop_logits

TOKENS = random_tokens(2, 11, seed=3)
TRAINED = 3


def load(folder, **kwargs):
    return emojilm.load(folder, device="cpu", probe=False, **kwargs)


def logits(lm, n_loops=None):
    with torch.no_grad():
        return lm.model.loop_logits(TOKENS, n_loops)


def assert_matches_reference(lm, state, section, mode, gates=None, n_loops=TRAINED + 1):
    expected = reference_loop_logits(state, section, mode, TOKENS, n_loops, gates)
    torch.testing.assert_close(logits(lm, n_loops).double(), expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- lingua's module tree


class TiedLinear(nn.Module):  # lingua keeps the tied embedding as a submodule: output.tied_module.weight
    def __init__(self, tied_module: nn.Module) -> None:
        super().__init__()
        self.tied_module = tied_module


class Attention(nn.Module):
    def __init__(self, dim: int, q: int, kv: int) -> None:
        super().__init__()
        self.wq, self.wk, self.wv = (
            nn.Linear(dim, q, bias=False),
            nn.Linear(dim, kv, bias=False),
            nn.Linear(dim, kv, bias=False),
        )
        self.wo = nn.Linear(q, dim, bias=False)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)


class Block(nn.Module):
    def __init__(self, s: dict) -> None:
        super().__init__()
        self.attention = Attention(s["dim"], s["n_heads"] * s["head_dim"], s["n_kv_heads"] * s["head_dim"])
        self.feed_forward = FeedForward(s["dim"], s["hidden"])
        self.attention_norm, self.ffn_norm = nn.Module(), nn.Module()
        self.attention_norm.weight = nn.Parameter(torch.ones(s["dim"]))
        self.ffn_norm.weight = nn.Parameter(torch.ones(s["dim"]))


class Rotary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("freqs_cis", torch.zeros(1), persistent=False)  # as lingua: not in the state dict


class LinguaTree(nn.Module):
    """lingua's LMTransformer, as modules only (BaseTransformer: rope_embeddings, layers; then
    tok_embeddings, norm, output), filled with the given tensors."""

    def __init__(self, section: dict, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        s = lingua_sizes(section)
        self.rope_embeddings = Rotary()
        self.layers = nn.ModuleList(Block(s) for _ in range(section["n_layers"]))
        self.tok_embeddings = nn.Embedding(258, s["dim"])
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(s["dim"]))
        self.output = (
            TiedLinear(self.tok_embeddings) if section.get("weight_tying") else nn.Linear(s["dim"], 258, False)
        )
        with torch.no_grad():
            for name, param in self.named_parameters():
                param.copy_(state[name])


def lingua_state(section: dict, seed: int = 0, export=nn.Module.state_dict):
    """(the state dict `export` writes from a LinguaTree, the same weights under the conftest's key list)."""
    plain = random_state_dict(section, seed)
    return export(LinguaTree(section, plain)), plain


def write(make_checkpoint, section, state, **kwargs):
    """A checkpoint holding exactly `state` (nothing added by the conftest's random weights)."""
    folder, _ = make_checkpoint(section, state_override={k: None for k in lingua_shapes(section)} | state, **kwargs)
    return folder


def test_the_tree_writes_lingua_key_names():
    """The untied tree's keys are the documented list; tied, lingua's TiedLinear adds output.tied_module.weight."""
    untied, _ = lingua_state(tiny_params())
    assert set(untied) == set(lingua_shapes(tiny_params()))
    tied, plain = lingua_state(tiny_params(weight_tying=True))
    assert set(tied) == set(plain) | {"output.tied_module.weight"}
    assert tied["output.tied_module.weight"].data_ptr() == tied["tok_embeddings.weight"].data_ptr()


# ----------------------------------------------------------------------------- 1. lingua's own layouts


@pytest.mark.parametrize("tied", [True, False])
def test_lingua_state_dict_loads_and_matches_the_reference(make_checkpoint, tied):
    section = tiny_params(weight_tying=tied, loop_residual="add")
    state, plain = lingua_state(section)
    lm = load(write(make_checkpoint, section, state))
    assert_matches_reference(lm, plain, section, "add")
    readings = dict(lm.info.anatomy.readings)
    assert ("output.tied_module.weight" in readings) == tied
    if tied:
        assert "tied head" in readings["output.tied_module.weight"]


def test_tied_head_without_a_head_key_loads(make_checkpoint):
    section = tiny_params(weight_tying=True)
    state, plain = lingua_state(section)
    del state["output.tied_module.weight"]
    assert_matches_reference(load(write(make_checkpoint, section, state)), plain, section, "add")


@pytest.mark.parametrize(
    ("tying", "head", "fragments"),
    [
        (True, "differs", ["output.tied_module.weight", "tok_embeddings.weight", "differs"]),
        (False, "tied", ["unexpected keys (1): output.tied_module.weight", "missing keys (1): output.weight"]),
    ],
)
def test_a_tied_head_that_does_not_fit_is_refused_by_name(make_checkpoint, tying, head, fragments):
    section = tiny_params(weight_tying=tying)
    state, _ = lingua_state(tiny_params(weight_tying=True))
    if head == "differs":
        state["output.tied_module.weight"] = state["output.tied_module.weight"] + 1
    with pytest.raises(CheckpointError) as caught:
        load(write(make_checkpoint, section, state))
    for fragment in fragments:
        assert fragment in str(caught.value)


def compiled(tree: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of torch.compile(model): every name under _orig_mod."""
    return torch.compile(tree).state_dict()


def compiled_blocks(tree: nn.Module) -> dict[str, torch.Tensor]:
    """torch.compile around each block (names layers.{i}._orig_mod....), then around the whole."""
    for i, block in enumerate(tree.layers):
        tree.layers[i] = torch.compile(block)
    return torch.compile(tree).state_dict()


def fsdp_names(tree: nn.Module) -> dict[str, torch.Tensor]:
    """Names as FSDP1 wraps the model and activation checkpointing wraps block 0 (as named_parameters()
    shows them; their own state_dict hooks remove these, a hand-made export may not)."""
    inner = "layers.0._fsdp_wrapped_module._checkpoint_wrapped_module."
    return {"_fsdp_wrapped_module." + k.replace("layers.0.", inner): v for k, v in tree.state_dict().items()}


@pytest.mark.parametrize(
    ("wrap", "segments"),
    [
        (compiled, "_orig_mod."),
        (compiled_blocks, "_orig_mod."),
        (fsdp_names, "_checkpoint_wrapped_module., _fsdp_wrapped_module."),
    ],
    ids=["compile", "compile-per-block", "fsdp-and-checkpointing"],
)
def test_wrapper_segments_are_removed(make_checkpoint, wrap, segments):
    section = tiny_params()
    state, plain = lingua_state(section, export=wrap)
    assert all(key not in plain for key in state)  # every name is wrapped somewhere
    lm = load(write(make_checkpoint, section, state))
    assert_matches_reference(lm, plain, section, "add")
    assert dict(lm.info.anatomy.readings)["(names)"].endswith(segments)


def test_two_keys_that_unwrap_to_one_name_are_refused(make_checkpoint):
    section = tiny_params()
    state, _ = lingua_state(section)
    state["_orig_mod.norm.weight"] = state["norm.weight"]
    with pytest.raises(CheckpointError, match=r"(_orig_mod\.)?norm\.weight and (_orig_mod\.)?norm\.weight both name"):
        load(write(make_checkpoint, section, state))


def lingua_rope(head_dim: int, end: int, theta: float) -> torch.Tensor:
    """lingua's precompute_freqs_cis, as its code computes it (float32): [end, head_dim/2, 2, 2] rotation
    matrices [[cos, -sin], [sin, cos]]."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(end).float(), freqs)
    cos, sin = angles.cos(), angles.sin()
    return torch.stack((cos, -sin, sin, cos), dim=-1).view(end, head_dim // 2, 2, 2)


@pytest.mark.parametrize("form", ["rotations", "complex", "longer"])
def test_a_stored_rope_table_is_checked_then_dropped(make_checkpoint, form):
    section = tiny_params(max_seqlen=48)
    state, plain = lingua_state(section)
    table = lingua_rope(8, 96 if form == "longer" else 48, 10000.0)
    state["rope_embeddings.freqs_cis"] = (
        torch.view_as_complex(table[..., 0].contiguous()) if form == "complex" else table
    )
    lm = load(write(make_checkpoint, section, state))
    assert "rope_embeddings.freqs_cis" not in lm.model.state_dict()
    assert "matches ours" in dict(lm.info.anatomy.readings)["rope_embeddings.freqs_cis"]
    assert_matches_reference(lm, plain, section, "add")


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        (lingua_rope(8, 48, 500000.0), "differs from the RoPE table"),  # another theta
        (lingua_rope(8, 48, 10000.0).flip(0), "differs from the RoPE table"),
        (torch.zeros(48, 4, 2), "neither lingua's rotation matrices"),
        (torch.full((48, 4, 2, 2), float("nan")), "differs from the RoPE table"),
    ],
    ids=["theta", "order", "shape", "nan"],
)
def test_a_rope_table_that_differs_from_ours_is_refused(make_checkpoint, table, fragment):
    section = tiny_params(max_seqlen=48)
    state, _ = lingua_state(section)
    state["rope_embeddings.freqs_cis"] = table
    with pytest.raises(CheckpointError, match=fragment):
        load(write(make_checkpoint, section, state))


# ----------------------------------------------------------------------------- 2. config spellings


def test_loop_count_with_use_residual_false_runs_plain_repetition(make_checkpoint):
    """The lab's spellings: `loop_count` once went unread, and the model ran the default single loop."""
    section = tiny_params(n_loops=None, loop_residual=None, loop_count=4, use_residual=False)
    state, plain = lingua_state(section)
    lm = load(write(make_checkpoint, section, state))
    assert (lm.n_loops, lm.info.loop_mode, lm.info.mode_source) == (4, "none", "config")
    expected = reference_loop_logits(plain, {**section, "n_loops": 4}, "none", TOKENS, 4)
    torch.testing.assert_close(logits(lm).double(), expected, rtol=1e-4, atol=1e-4)


def test_unknown_fields_load_and_are_listed(make_checkpoint):
    section = tiny_params(num_loops=3, shared_layers=True, mixer="attention", halting="act", loop_lr_scale=0.5)
    folder, _ = make_checkpoint(section)
    fields = load(folder).info.anatomy.fields
    assert fields.unknown == {"halting": "act", "loop_lr_scale": 0.5}
    assert {"num_loops", "shared_layers", "mixer"} <= set(fields.used) and not fields.refused


@pytest.mark.parametrize(("field", "value"), [("mixer", "gdn"), ("shared_layers", False)])
def test_a_field_we_cannot_run_stops_the_load_naming_it(make_checkpoint, field, value):
    folder, _ = make_checkpoint(tiny_params(**{field: value}))
    with pytest.raises(ValueError, match=f"{field}={value!r} cannot run here"):
        load(folder)


# ----------------------------------------------------------------------------- 3. per-loop tensors


def gate_values(shape, seed=0):
    return 0.5 + 0.6 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# name -> (tensors as stored, the per-loop tensor they hold, how the anatomy names what was stored)
PER_LOOP = {
    "scalar per loop": ({"loop_residual_gate": gate_values(3)}, gate_values(3), "loop_residual_gate [3]"),
    "per channel": ({"model.loop_gates": gate_values((3, 32))}, gate_values((3, 32)), "model.loop_gates [3, 32]"),
    "[L, 1, dim]": ({"residual_scale": gate_values((3, 1, 32))}, gate_values((3, 32)), "residual_scale [3, 1, 32]"),
    "one fewer than loops": ({"iteration_gate": gate_values((2, 32))}, gate_values((2, 32)), "iteration_gate [2, 32]"),
    "wrapped": ({"_orig_mod.gates": gate_values(2)}, gate_values(2), "_orig_mod.gates [2]"),
    "ParameterList of rows": (
        {f"res_gates.{t}": gate_values((3, 32))[t] for t in range(3)},
        gate_values((3, 32)),
        "res_gates.{i} ×3",
    ),
    "ParameterList of scalars": (
        {f"gate_list.{t}": gate_values(3)[t] for t in range(3)},
        gate_values(3),
        "gate_list.{i} ×3",
    ),
    "ParameterList of [1, dim]": (
        {f"loop_g.{t}": gate_values((2, 32))[t][None] for t in range(2)},
        gate_values((2, 32)),
        "loop_g.{i} ×2",
    ),
}


@pytest.mark.parametrize("case", PER_LOOP)
@pytest.mark.parametrize("loop_residual", [True, None], ids=["true", "absent"])
def test_a_per_loop_tensor_under_any_name_is_read_as_the_default_gate(make_checkpoint, case, loop_residual):
    stored, gates, stored_as = PER_LOOP[case]
    section = tiny_params(loop_residual=loop_residual)
    folder, state = make_checkpoint(section, state_override=stored)
    lm = load(folder)
    assert (lm.info.loop_mode, lm.info.mode_source) == ("gated", "default")
    torch.testing.assert_close(lm.model.loop_gates.detach(), gates)
    anatomy = lm.info.anatomy
    assert anatomy.candidates == lm.model.loop_modes and "gated_mix" in anatomy.candidates
    assert ("loop_embed" in anatomy.candidates) == (gates.dim() == 2)
    reading = dict(anatomy.readings)[stored_as]
    assert f"per-loop tensor {list(gates.shape)}" in reading and ("loop 1 runs plain" in reading) == (len(gates) == 2)
    assert_matches_reference(lm, state, section, "gated", gates)


@pytest.mark.parametrize("mode", ["gated_update", "gated_inject", "gated_mix", "loop_embed"])
def test_a_named_gate_reading_is_the_configs(make_checkpoint, mode):
    gates = gate_values((2, 32))
    section = tiny_params(use_residual=mode, loop_residual=None)
    folder, state = make_checkpoint(section, state_override={f"res_gates.{t}": gates[t] for t in range(2)})
    lm = load(folder)
    assert (lm.info.loop_mode, lm.info.mode_source, lm.info.anatomy.candidates) == (mode, "config", ())
    assert_matches_reference(lm, state, section, mode, gates)


# name -> (params changes, state additions, fragments of the one error)
PER_LOOP_REFUSED = {
    "two per-loop tensors": (
        {},
        {"a_gate": gate_values(3), "b_scale": gate_values((3, 32))},
        ["a_gate [3]", "b_scale [3, 32]"],
    ),
    "residual off": (
        {"loop_residual": False},
        {"loop_gate": gate_values(3)},
        ["turns the loop residual off", "loop_gate [3]"],
    ),
    "a mode without gates": (
        {"loop_residual": "add"},
        {"loop_gate": gate_values(3)},
        ["loop_residual='add'", "loop_gate [3]"],
    ),
    "embeddings need rows": (
        {"loop_residual": "loop_embed"},
        {"loop_gate": gate_values(3)},
        ["'loop_embed'", "loop_gate [3]"],
    ),
    "too many rows": ({}, {"loop_gate": gate_values(4)}, ["unexpected keys (1): loop_gate [4]"]),
    "a list with a gap": ({}, {"g.0": gate_values(32), "g.2": gate_values(32)}, ["g.0 [32]", "g.2 [32]"]),
    "NaN gates": ({}, {"loop_gate": torch.full((3,), float("nan"))}, ["loop_gate [3]) holds NaN"]),
    "named mode, no tensor": ({"loop_residual": "gated_mix"}, {}, ["missing keys (1): loop_gates"]),
}


@pytest.mark.parametrize("case", PER_LOOP_REFUSED)
def test_per_loop_tensors_that_cannot_be_read_are_refused_by_name(make_checkpoint, case):
    changes, stored, fragments = PER_LOOP_REFUSED[case]
    folder, _ = make_checkpoint(tiny_params(**{"loop_residual": True, **changes}), state_override=stored)
    with pytest.raises(CheckpointError) as caught:
        load(folder)
    for fragment in fragments:
        assert fragment in str(caught.value)


# ----------------------------------------------------------------------------- 4. attention output gates


def attention_gates(name, rows, layers=(0, 1), seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {f"layers.{i}.attention.{name}": torch.randn(rows, 32, generator=gen) for i in layers}


@pytest.mark.parametrize("name", ["gate.weight", "g_proj.weight", "output_gate"])
@pytest.mark.parametrize(("rows", "kind"), [(4, "head"), (32, "element")])
def test_an_attention_gate_under_any_name_is_read(make_checkpoint, name, rows, kind):
    folder, state = make_checkpoint(tiny_params(), state_override=attention_gates(name, rows))
    lm = load(folder)
    assert lm.model.args.attn_gate == kind
    [reading] = [what for key, what in lm.info.anatomy.readings if key.startswith("layers.{i}.attention.")]
    assert ("one gate per head" in reading) == (kind == "head")
    reference_state = {k.replace(name, "gate_proj.weight"): v for k, v in state.items()}  # the reference's name
    assert_matches_reference(lm, reference_state, tiny_params(), "add")


def test_attention_gates_stored_once_per_loop_are_accepted_when_identical(make_checkpoint):
    plain, state = make_checkpoint(tiny_params(), state_override=attention_gates("gate.weight", 4))
    looped, _ = make_checkpoint(tiny_params(), state_override=state | per_loop_copies(state))
    torch.testing.assert_close(logits(load(looped)), logits(load(plain)), rtol=0, atol=0)


# name -> (params changes, state additions, fragments of the one error)
ATTENTION_REFUSED = {
    "claimed, absent": ({"gated_attn": True}, {}, ["gated_attn: true", "no layer holds an attention gate"]),
    "denied, present": (
        {"gated_attn": False},
        attention_gates("gate.weight", 4),
        ["gated_attn: false", "layers.0.attention.gate.weight"],
    ),
    "wrong shape": (
        {},
        attention_gates("gate.weight", 5),
        ["layers.0.attention.gate.weight [5, 32]", "[4, 32] or [32, 32]"],
    ),
    "two in a layer": (
        {},
        attention_gates("gate.weight", 4) | attention_gates("scale", 4, layers=(0,)),
        ["layer 0", "scale"],
    ),
    "some layers only": (
        {},
        attention_gates("gate.weight", 4, layers=(0,)),
        ["layer 1 holds no attention gate", "layers.0.attention.gate.weight"],
    ),
    "kinds differ": (
        {},
        attention_gates("gate.weight", 4, layers=(0,)) | attention_gates("gate.weight", 32, layers=(1,)),
        ["differ"],
    ),
}


@pytest.mark.parametrize("case", ATTENTION_REFUSED)
def test_attention_gates_that_cannot_be_read_are_refused_by_name(make_checkpoint, case):
    changes, stored, fragments = ATTENTION_REFUSED[case]
    folder, _ = make_checkpoint(tiny_params(**changes), state_override=stored)
    with pytest.raises(CheckpointError) as caught:
        load(folder)
    for fragment in fragments:
        assert fragment in str(caught.value)


# ----------------------------------------------------------------------------- 5. the anatomy


def test_the_anatomy_groups_the_stored_keys_and_splits_the_load_time(make_checkpoint):
    section = tiny_params(weight_tying=True, loop_residual=True, a_new_knob=1)
    state, _ = lingua_state(section, export=compiled)
    state |= {f"_orig_mod.res_gates.{t}": gate_values(32) for t in range(3)}
    lm = load(write(make_checkpoint, section, state))
    families = {f.name: f for f in lm.info.anatomy.families}
    wq = families["_orig_mod.layers.{i}.attention.wq.weight"]
    assert (wq.count, wq.shapes, wq.dtypes) == (2, "[32, 32]", "float32")
    assert (families["_orig_mod.res_gates.{i}"].count, families["_orig_mod.res_gates.{i}"].shapes) == (3, "[32]")
    assert sum(f.count for f in families.values()) == len(state)
    assert lm.info.anatomy.fields.unknown == {"a_new_knob": 1}
    assert set(lm.info.anatomy.seconds) == {"download", "convert", "probe"}
    assert all(math.isfinite(seconds) and seconds >= 0 for seconds in lm.info.anatomy.seconds.values())
