"""The looped model against an independent straight-line computation from the raw state dict.

The reference below uses only plain torch ops in float64 and follows docs/checkpoint.md (the
blocks, the formulas of attention output gates and per-loop gates, lingua's sliding window) and
the loop-mode table at the top of emojilm/model.py; it calls nothing in emojilm, and reads the
tensors under the names the checkpoint stores.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import emojilm
from emojilm.checkpoint import read_state_dict, write_checkpoint
from emojilm.config import GATE_MODES, LOOP_MODES
from emojilm.kvcache import BranchCache
from emojilm.model import LoopedTransformer
from emojilm.request import LOOPS_FACTOR
from tests.conftest import lingua_sizes, random_tokens, tiny_params

TRAINED = 3  # tiny_params()["n_loops"]
LOOP_COUNTS = (1, TRAINED, TRAINED + 2)  # one loop, the trained count, extrapolation
WINDOW = 5  # shorter than the test sequences, so that early positions fall out of it
ATTENTION_GATE = "gate_proj"  # the name the checkpoints store attention output gates under

# name -> (params.json model section, attention output gate: None, "head" or "element")
VARIANTS = {
    "mha": (tiny_params(n_kv_heads=None), None),
    "gqa": (tiny_params(), None),  # 4 query heads share 2 kv heads
    "tied": (tiny_params(weight_tying=True), None),
    "head_dim": (tiny_params(head_dim=12), None),  # n_heads * head_dim = 48 != dim = 32
    "window": (tiny_params(sliding_window=WINDOW), None),
    "gate_per_head": (tiny_params(gated_attn=True), "head"),
    "gate_per_element": (tiny_params(head_dim=12), "element"),  # no gated_attn: the tensors say it
}
# name -> (params.json loop_residual, shape of the per-loop tensor or None); the mode run is the
# name without its suffix. L = TRAINED - 1 rows: the first loop runs plain.
MODES = {
    "none": ("none", None),
    "add": ("add", None),
    "add_skip_first": ("add_skip_first", None),
    "inject_embeddings": ("inject_embeddings", None),
    "gated": (True, (TRAINED,)),  # a per-loop tensor read the default way under a bare `true`
    "gated_per_channel": ("gated", (TRAINED, 32)),
    "gated_update": ("gated_update", (TRAINED, 32)),
    "gated_update_scalar": ("gated_update", (TRAINED - 1,)),
    "gated_inject": ("gated_inject", (TRAINED - 1, 32)),
    "gated_mix": ("gated_mix", (TRAINED,)),
    "gated_mix_per_channel": ("gated_mix", (TRAINED - 1, 32)),
    "loop_embed": ("loop_embed", (TRAINED, 32)),
    "loop_embed_skip_first": ("loop_embed", (TRAINED - 1, 32)),
}


def mode_of(name: str) -> str:
    return next(mode for mode in sorted(LOOP_MODES, key=len, reverse=True) if name.startswith(mode))


# ----------------------------------------------------------------------------- reference


def rms_norm(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope(x, theta):
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, T, H, D] as complex numbers."""
    B, T, H, D = x.shape
    freqs = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None, :]
    rotation = torch.polar(torch.ones_like(angles), angles)  # e^{i·pos·freq}, [T, D/2]
    pairs = torch.view_as_complex(x.reshape(B, T, H, D // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation[None, :, None, :]).reshape(B, T, H, D)


def attention(x, w, sizes, theta, window=None):
    B, T, _ = x.shape
    H, KV, hd = sizes["n_heads"], sizes["n_kv_heads"], sizes["head_dim"]
    q = rope((x @ w["wq"].T).reshape(B, T, H, hd), theta)
    k = rope((x @ w["wk"].T).reshape(B, T, KV, hd), theta)
    v = (x @ w["wv"].T).reshape(B, T, KV, hd)
    kv_head_of = torch.arange(H) // (H // KV)  # query head h reads kv head h // rep
    k, v = k[:, :, kv_head_of], v[:, :, kv_head_of]
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd)
    query, key = torch.arange(T)[:, None], torch.arange(T)[None, :]
    hidden = key > query  # the future
    if window is not None:  # lingua's local mask: a query sees itself and the window - 1 keys before it
        hidden |= key <= query - window
    scores = scores.masked_fill(hidden, -math.inf)
    weights = (scores - scores.amax(-1, keepdim=True)).exp()
    weights = weights / weights.sum(-1, keepdim=True)
    out = torch.einsum("bhts,bshd->bthd", weights, v)  # [B, T, H, hd]
    if ATTENTION_GATE in w:  # sigmoid(x W_g^T): [B, T, H] per head, [B, T, H * hd] per element
        gate = torch.sigmoid(x @ w[ATTENTION_GATE].T)
        out = out * (gate[..., None] if gate.shape[-1] == H else gate.reshape(B, T, H, hd))
    return out.reshape(B, T, H * hd) @ w["wo"].T


def feed_forward(x, w):
    a = x @ w["w1"].T
    return (a * torch.sigmoid(a) * (x @ w["w3"].T)) @ w["w2"].T


def all_blocks(h, state, model):
    sizes, eps, theta = lingua_sizes(model), model["norm_eps"], model["rope_theta"]
    for i in range(model["n_layers"]):
        w = {name.split(".")[-2]: t for name, t in state.items() if name.startswith(f"layers.{i}.")}
        h = h + attention(rms_norm(h, w["attention_norm"], eps), w, sizes, theta, model.get("sliding_window"))
        h = h + feed_forward(rms_norm(h, w["ffn_norm"], eps), w)
    return h


def reference_loop_logits(state, model, mode, tokens, n_loops, gates=None):
    """Logits [n_loops, B, T, V] read out after every loop, in float64.

    gates: the per-loop tensor ([L] or [L, dim]) for the gate modes. With L = trained loops,
    loop t (from 0) reads row t; with one row fewer, loop 0 runs plain and loop t reads row
    t - 1; beyond training, the last row.
    """
    state = {k: v.double() for k, v in state.items()}
    head = state["tok_embeddings.weight"] if model.get("weight_tying") else state["output.weight"]
    h0 = state["tok_embeddings.weight"][tokens]
    h, out = h0, []
    for t in range(n_loops):
        row = None if gates is None else t - (model["n_loops"] - len(gates))
        g = None if row is None or row < 0 else gates.double()[min(row, len(gates) - 1)]
        if mode == "none" or (mode in GATE_MODES and g is None):
            h = all_blocks(h, state, model)
        elif mode == "add":
            h = all_blocks(h, state, model) + h
        elif mode == "add_skip_first":
            h = all_blocks(h, state, model) + (h if t > 0 else 0)
        elif mode == "inject_embeddings":
            h = all_blocks(h + h0 if t > 0 else h0, state, model)
        elif mode == "gated":
            h = all_blocks(h, state, model) + g * h
        elif mode == "gated_update":
            h = h + g * all_blocks(h, state, model)
        elif mode == "gated_inject":
            h = all_blocks(h + g * h0, state, model)
        elif mode == "gated_mix":
            s = torch.sigmoid(g)
            h = s * all_blocks(h, state, model) + (1 - s) * h
        elif mode == "loop_embed":
            x = h + g
            h = all_blocks(x, state, model) + x
        out.append(rms_norm(h, state["norm.weight"], model["norm_eps"]) @ head.T)
    return torch.stack(out)


# ----------------------------------------------------------------------------- helpers


def attention_gates(section, kind, seed):
    """One output gate per layer, [n_heads, dim] or [n_heads * head_dim, dim], under ATTENTION_GATE."""
    sizes, gen = lingua_sizes(section), torch.Generator().manual_seed(seed + 100)
    rows = sizes["n_heads"] * (1 if kind == "head" else sizes["head_dim"])
    return {
        f"layers.{i}.attention.{ATTENTION_GATE}.weight": torch.randn(rows, sizes["dim"], generator=gen)
        for i in range(section["n_layers"])
    }


def make_model(make_checkpoint, variant, mode, seed=0, fused=True):
    """Write a checkpoint for (variant, mode), load it; return (model, state, model section).

    The state holds the per-loop tensor as "loop_gates" when the mode has one.
    `emojilm.load` fuses the weights for inference; fused=False gives the layout training uses.
    """
    loop_residual, gate_shape = MODES[mode]
    section, gate_kind = VARIANTS[variant]
    section = {**section, "loop_residual": loop_residual}
    override = attention_gates(section, gate_kind, seed) if gate_kind else {}
    if gate_shape:  # around 0.5, and below 0 too: sigmoid and scaling both matter
        gen = torch.Generator().manual_seed(seed)
        override["loop_gates"] = 0.5 + 0.6 * torch.randn(gate_shape, generator=gen)
    folder, state = make_checkpoint(section, seed=seed, state_override=override)
    lm = emojilm.load(folder, device="cpu", probe=False)
    assert lm.model.loop_mode == mode_of(mode)
    return (lm.model if fused else unfused_copy(lm.model)), state, section


def reference_for(state, section, mode, tokens, n_loops):
    return reference_loop_logits(state, section, mode_of(mode), tokens, n_loops, state.get("loop_gates"))


def unfused_copy(model):
    copy = LoopedTransformer(model.args)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def assert_matches(actual, expected):
    torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", MODES)
def test_forward_matches_reference(make_checkpoint, variant, mode, fused):
    model, state, section = make_model(make_checkpoint, variant, mode, fused=fused)
    tokens = random_tokens(2, 13, seed=1)
    expected = reference_for(state, section, mode, tokens, max(LOOP_COUNTS))
    with torch.no_grad():
        assert_matches(model.loop_logits(tokens, max(LOOP_COUNTS)), expected)
        for n in LOOP_COUNTS:
            assert_matches(model(tokens, n_loops=n), expected[n - 1])
            assert_matches(model.loop_logits(tokens, n), expected[:n])
        assert_matches(model(tokens), expected[TRAINED - 1])  # default: the trained count


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_weights_are_views_of_the_fused_matrices(make_checkpoint, variant):
    """Fusing moves the weights instead of copying them, and the state dict still reads as lingua's."""
    model, state, _ = make_model(make_checkpoint, variant, "add")
    for block in model.layers:
        attention = block.attention
        gate = [attention.wg] if attention.wg is not None else []
        for fused, linears in [
            (attention.products["qkv"].dense, [attention.wq, attention.wk, attention.wv, *gate]),
            (block.feed_forward.products["13"].dense, [block.feed_forward.w1, block.feed_forward.w3]),
        ]:
            assert fused.is_contiguous()
            assert fused.shape == (linears[0].in_features, sum(x.out_features for x in linears))
            for linear in linears:
                assert linear.weight.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
    storages |= {b.untyped_storage().data_ptr(): b.untyped_storage().nbytes() for b in model.buffers()}
    assert sum(storages.values()) == sum(p.numel() * p.element_size() for p in model.parameters())
    loaded = model.state_dict()
    ours = {key.replace(ATTENTION_GATE, "wg"): value for key, value in state.items()}
    assert loaded.keys() == ours.keys()
    for key, value in ours.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_a_fused_model_writes_the_same_checkpoint(make_checkpoint, tmp_path):
    model, state, section = make_model(make_checkpoint, "gqa", "add")
    write_checkpoint(tmp_path, model, {"model": section})
    again, _ = read_state_dict(tmp_path)
    for key, value in state.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0)


def test_loop_modes_differ(make_checkpoint):
    """A check on the test itself: each loop mode computes something else, so mixing them up fails."""
    tokens = random_tokens(1, 9, seed=2)
    outputs = {}
    for mode in MODES:
        _, state, section = make_model(make_checkpoint, "gqa", mode)
        outputs[mode] = reference_for(state, section, mode, tokens, TRAINED)
    for a, b in itertools.combinations(MODES, 2):
        assert not torch.allclose(outputs[a], outputs[b], atol=1e-3), (a, b)


@pytest.mark.parametrize("variant", ["window", "gate_per_head", "gate_per_element"])
def test_the_window_and_the_gates_change_the_output(make_checkpoint, variant):
    """A check on the test itself: on these tokens the reference's window and gates matter."""
    _, state, section = make_model(make_checkpoint, variant, "add")
    tokens = random_tokens(1, 13, seed=2)
    plain_section = {k: v for k, v in section.items() if k != "sliding_window"}
    plain_state = {k: v for k, v in state.items() if ATTENTION_GATE not in k}
    with_them = reference_for(state, section, "add", tokens, TRAINED)
    assert not torch.allclose(with_them, reference_for(plain_state, plain_section, "add", tokens, TRAINED), atol=1e-3)


@pytest.mark.parametrize("variant", ["gqa", "window", "gate_per_element"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_loops", [1, TRAINED + 1])
def test_kv_cached_chunks_equal_full_forward(make_checkpoint, mode, n_loops, variant):
    model, _, _ = make_model(make_checkpoint, variant, mode)
    tokens = random_tokens(2, 16, seed=3)
    bounds = [0, 7, 8, 11, 12, 13, 16]  # a prefill, then chunks of 1 and 3 tokens
    cache = model.new_cache(n_loops, batch=2, max_len=20)
    with torch.no_grad():
        full = model.loop_logits(tokens, n_loops)
        chunks = [
            model.loop_logits(tokens[:, a:b], n_loops, cache=cache, start=a) for a, b in itertools.pairwise(bounds)
        ]
    torch.testing.assert_close(torch.cat(chunks, dim=2), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["gqa", "window", "gate_per_head"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first_loop", [1, TRAINED])
def test_carrying_on_from_a_stopped_run_equals_one_run(make_checkpoint, mode, first_loop, variant):
    """Loops first_loop+1.. run later from the saved state (what speculative verification does)."""
    model, _, _ = make_model(make_checkpoint, variant, mode)
    tokens = random_tokens(1, 12, seed=5)
    n_loops = TRAINED + 1
    with torch.no_grad():
        full = model.loop_logits(tokens, n_loops)
        cache = model.new_cache(n_loops, 1, 12)
        model(tokens[:, :8], n_loops, cache=cache)
        *_, state = model.loop_states(tokens[:, 8:], first_loop, cache=cache, start=8)
        later = model.loop_logits(tokens[:, 8:], n_loops, cache=cache, start=8, first_loop=first_loop, state=state)
    torch.testing.assert_close(later, full[first_loop:, :, 8:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="state"):
        next(model.loop_states(tokens, n_loops, first_loop=first_loop))


@pytest.mark.parametrize(
    ("mode", "variant"),
    [("add", "gqa"), ("inject_embeddings", "gqa"), ("add", "window"), ("gated_mix_per_channel", "gate_per_head")],
)
def test_branches_equal_running_each_continuation_alone(make_checkpoint, mode, variant):
    """Rows continuing one trunk from their own positions (the trace's branches) compute what each would alone."""
    model, _, _ = make_model(make_checkpoint, variant, mode)
    trunk_tokens, tails = random_tokens(1, 10, seed=6), random_tokens(3, 3, seed=7)
    branch_at = [5, 9, 7]
    with torch.no_grad():
        trunk = model.new_cache(TRAINED, 1, 10)
        model(trunk_tokens, cache=trunk)
        branches = BranchCache.grow(trunk, torch.tensor(branch_at), 3)
        two_steps = model.loop_logits(tails[:, :2], cache=branches)
        one_more = model.loop_logits(tails[:, 2:], cache=branches, start=2)
        batched = torch.cat([two_steps, one_more], dim=2)
        for r, at in enumerate(branch_at):
            alone = model.loop_logits(torch.cat([trunk_tokens[:, :at], tails[r : r + 1]], dim=1))[:, :, at:]
            torch.testing.assert_close(batched[:, r : r + 1], alone, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="past the trunk"):
            BranchCache.grow(trunk, torch.tensor([3, 11]), 2)
        trunk = model.new_cache(TRAINED, 1, 48)
        with pytest.raises(ValueError, match="max_seqlen"):
            next(model.loop_states(tails[:, :2], cache=BranchCache.grow(trunk, torch.tensor([0, 47, 3]), 2)))


def test_cached_forward_uses_the_cache(make_checkpoint):
    """Positions after the prefix must see the prefix: a fresh cache gives other logits."""
    model, _, _ = make_model(make_checkpoint, "gqa", "add")
    tokens = random_tokens(1, 8, seed=4)
    with torch.no_grad():
        cache = model.new_cache(TRAINED, 1, 8)
        model(tokens[:, :7], cache=cache)
        with_prefix = model(tokens[:, 7:], cache=cache, start=7)
        empty = model(tokens[:, 7:], cache=model.new_cache(TRAINED, 1, 8), start=7)
        torch.testing.assert_close(with_prefix, model(tokens)[:, 7:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(with_prefix, empty, atol=1e-3)


@pytest.mark.parametrize("n_loops", [0, -1, LOOPS_FACTOR * TRAINED + 1, True, 2.0, "3"])
def test_bad_loop_counts_rejected(make_checkpoint, n_loops):
    model, _, _ = make_model(make_checkpoint, "gqa", "add")
    tokens = random_tokens(1, 4, seed=5)
    calls = [
        lambda: model(tokens, n_loops=n_loops),
        lambda: model.loop_logits(tokens, n_loops),
        lambda: model.new_cache(n_loops, 1, 4),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="n_loops"):
            call()


def test_max_loops_accepted(make_checkpoint):
    model, _, _ = make_model(make_checkpoint, "gqa", "add")
    with torch.no_grad():
        assert model.loop_logits(random_tokens(1, 2, seed=6), model.args.max_loops).shape[0] == LOOPS_FACTOR * TRAINED


@pytest.mark.parametrize(("start", "length"), [(0, 49), (40, 9), (48, 1)])
def test_longer_than_max_seqlen_rejected(make_checkpoint, start, length):
    model, _, _ = make_model(make_checkpoint, "gqa", "add")  # max_seqlen 48
    cache = model.new_cache(None, 1, 64)
    with pytest.raises(ValueError, match="max_seqlen"):
        model(random_tokens(1, length, seed=7), cache=cache, start=start)


def test_full_max_seqlen_accepted(make_checkpoint):
    model, _, _ = make_model(make_checkpoint, "gqa", "add")
    with torch.no_grad():
        assert model(random_tokens(1, 48, seed=8)).shape == (1, 48, 258)
