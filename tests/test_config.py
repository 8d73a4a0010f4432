"""params.json → ModelArgs: lingua's size rules, loop modes, and refusal of what cannot run."""

from __future__ import annotations

import pytest

from emojilm.config import LOOP_MODES, args_from_params, config_fields
from tests.conftest import lingua_params, tiny_params


def args_for(**model):
    """ModelArgs from a whole lingua config whose model section is `model`."""
    return args_from_params(lingua_params(model, seed=0))


@pytest.mark.parametrize(
    ("model", "hidden"),
    [
        ({"dim": 1024, "n_heads": 16, "multiple_of": 256}, 2816),  # Emoji-ByteLM (docs/checkpoint.md, "Known")
        ({"dim": 4096, "n_heads": 32, "multiple_of": 256}, 11008),  # Llama 7B
        ({"dim": 4096, "n_heads": 32, "multiple_of": 1024, "ffn_dim_multiplier": 1.3}, 14336),  # Llama 3 8B
        ({"dim": 8192, "n_heads": 64, "multiple_of": 4096, "ffn_dim_multiplier": 1.3}, 28672),  # Llama 2 70B
        ({"dim": 1024, "n_heads": 16, "multiple_of": 256, "ffn_dim_multiplier": None}, 2816),
        ({"dim": 64, "n_heads": 4}, 256),  # multiple_of defaults to 256
        ({"dim": 64, "n_heads": 4, "hidden_dim": 100}, 100),  # an explicit size wins
    ],
)
def test_ffn_hidden_size(model, hidden):
    assert args_for(**model).hidden_dim == hidden


@pytest.mark.parametrize(
    ("model", "n_heads", "head_dim", "n_kv_heads"),
    [
        ({"dim": 1024, "n_heads": 16}, 16, 64, 16),
        ({"dim": 1024, "n_heads": 16, "n_kv_heads": 4}, 16, 64, 4),
        ({"dim": 1024, "n_heads": 16, "n_kv_heads": None, "head_dim": None}, 16, 64, 16),
        ({"dim": 1024, "n_heads": 8, "head_dim": 32}, 8, 32, 8),
        ({"dim": 1024, "head_dim": 128}, 8, 128, 8),
    ],
)
def test_heads(model, n_heads, head_dim, n_kv_heads):
    args = args_for(**model)
    assert (args.n_heads, args.head_dim, args.n_kv_heads) == (n_heads, head_dim, n_kv_heads)


@pytest.mark.parametrize(
    ("loop_residual", "mode"),
    [(True, "add"), (False, "none"), (None, "none"), *((m, m) for m in LOOP_MODES)],
)
def test_loop_residual(loop_residual, mode):
    assert args_for(**tiny_params(loop_residual=loop_residual)).loop_mode == mode


def test_loop_residual_missing_means_none():
    assert args_for(dim=64, n_heads=4).loop_mode == "none"


@pytest.mark.parametrize("value", ["residual", 1, 0.5, "ADD"])
def test_unknown_loop_residual_rejected(value):
    with pytest.raises(ValueError, match="loop_residual"):
        args_for(**tiny_params(loop_residual=value))


def test_reads_every_field_and_ignores_unknown_keys():
    model = tiny_params(weight_tying=True, norm_eps=1e-6, rope_theta=500000.0, future_option={"x": 1}, init_std=0.02)
    args = args_from_params(lingua_params(model, seed=0, extra={"another_section": [1, 2]}))
    assert (args.dim, args.n_layers, args.n_heads, args.n_kv_heads, args.head_dim) == (32, 2, 4, 2, 8)
    assert (args.hidden_dim, args.max_seqlen, args.n_loops, args.loop_mode) == (96, 48, 3, "add")
    assert (args.norm_eps, args.rope_theta, args.weight_tying, args.vocab_size) == (1e-6, 500000.0, True, 258)


def test_model_section_alone_is_accepted():
    assert args_from_params(tiny_params()) == args_for(**tiny_params())


def test_max_loops_allows_extrapolation():
    assert args_for(**tiny_params(n_loops=8)).max_loops > 8


def test_sliding_window_is_read():
    assert args_for(**tiny_params(sliding_window=None)).sliding_window is None
    assert args_for(**tiny_params(sliding_window=16)).sliding_window == 16
    for bad in (0, -3, 2.5, True, "16"):
        with pytest.raises(ValueError, match="sliding_window"):
            args_for(**tiny_params(sliding_window=bad))


# ----------------------------------------------------------------------------- spellings and fields


@pytest.mark.parametrize("spelling", ["n_loops", "loop_count", "num_loops"])
def test_loop_count_spellings(spelling):
    model = tiny_params(**{"n_loops": None, spelling: 5})
    assert args_for(**model).n_loops == 5
    assert config_fields(lingua_params(model, seed=0)).used[spelling] == 5


@pytest.mark.parametrize("spelling", ["loop_residual", "use_residual"])
@pytest.mark.parametrize(("value", "mode"), [(True, "add"), (False, "none"), ("gated_mix", "gated_mix")])
def test_loop_residual_spellings(spelling, value, mode):
    args = args_for(**tiny_params(**{"loop_residual": None, spelling: value}))
    assert args.loop_mode == mode


def test_agreeing_spellings_are_accepted():
    assert args_for(**tiny_params(n_loops=4, loop_count=4)).n_loops == 4


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"n_loops": 8, "loop_count": 4}, ["n_loops=8", "loop_count=4", "disagree"]),
        ({"loop_residual": True, "use_residual": False}, ["loop_residual=True", "use_residual=False"]),
    ],
)
def test_disagreeing_spellings_refused_naming_both(changes, fragments):
    with pytest.raises(ValueError) as caught:
        args_for(**tiny_params(**changes))
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("spelling", ["loop_count", "num_loops"])
def test_a_loop_count_spelling_is_bounded_like_n_loops(spelling):
    with pytest.raises(ValueError, match=f"{spelling}=1000000 is larger"):
        args_for(**tiny_params(**{"n_loops": None, spelling: 10**6}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("mixer", "gdn"), ("mixer", "mamba"), ("shared_layers", False), ("shared_layers", 1), ("qk_norm", True)],
)
def test_fields_that_change_the_maths_we_cannot_run_are_refused_by_name(field, value):
    model = tiny_params(**{field: value})
    with pytest.raises(ValueError, match=field):
        args_for(**model)
    fields = config_fields(lingua_params(model, seed=0))
    assert list(fields.refused) == [field] and field not in fields.used


@pytest.mark.parametrize(("field", "value"), [("mixer", "attention"), ("shared_layers", True), ("qk_norm", False)])
def test_runnable_values_of_those_fields_are_used(field, value):
    model = tiny_params(**{field: value})
    assert args_for(**model).dim == 32
    assert config_fields(lingua_params(model, seed=0)).used[field] == value


def test_fields_are_sorted_into_used_training_only_and_unknown():
    model = tiny_params(loop_count=3, n_loops=None, gated_attn=True, seed=7, init_std_factor="disabled", moe_k=2)
    fields = config_fields(lingua_params(model, seed=0))
    assert set(fields.used) == set(model) - {"seed", "init_std_factor", "moe_k"}
    assert fields.training == {"seed": 7, "init_std_factor": "disabled"}
    assert fields.unknown == {"moe_k": 2}
    assert fields.refused == {}
    assert (fields.value("n_loops"), fields.value("loop_residual"), fields.value("gated_attn")) == (3, "add", True)


def test_gated_attn_must_be_a_boolean():
    with pytest.raises(ValueError, match="gated_attn"):
        args_for(**tiny_params(gated_attn="yes"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dim", 10**9),
        ("dim", -1024),
        ("dim", True),
        ("dim", 1024.0),
        ("dim", "1024"),
        ("n_layers", 0),
        ("n_layers", 10**6),
        ("n_heads", -4),
        ("n_heads", 10**5),
        ("n_kv_heads", False),
        ("head_dim", 10**9),
        ("hidden_dim", 10**9),
        ("multiple_of", 10**9),
        ("ffn_dim_multiplier", 10**6),
        ("ffn_dim_multiplier", "1.3"),
        ("max_seqlen", 10**9),
        ("n_loops", 0),
        ("n_loops", 10**6),
        ("n_loops", True),
        ("norm_eps", -1e-5),
        ("norm_eps", float("nan")),
        ("rope_theta", True),
        ("vocab_size", 50000),
    ],
)
def test_absurd_values_rejected_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        args_for(**tiny_params(**{key: value}))


@pytest.mark.parametrize(
    "model",
    [
        {"dim": 64},  # neither n_heads nor head_dim
        {"dim": 64, "n_heads": 4, "n_kv_heads": 3},  # 4 query heads cannot share 3 kv heads
        {"dim": 60, "n_heads": 4},  # head_dim 15 is odd: no rotary pairs
        {"dim": 2, "n_heads": 4},  # head_dim 0
        {"dim": 64, "head_dim": 128},  # no head fits
    ],
)
def test_inconsistent_heads_rejected(model):
    with pytest.raises(ValueError, match="head"):
        args_for(**model)


@pytest.mark.parametrize("params", [{"model": "dim=1024"}, {"model": [1024]}])
def test_model_section_must_be_an_object(params):
    with pytest.raises(ValueError, match="model"):
        args_from_params(params)
