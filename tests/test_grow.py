"""Widening a model (emojilm.grow): the wider model computes the narrow one's logits, and all of it learns."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from emojilm.checkpoint import write_checkpoint
from emojilm.config import ModelArgs
from emojilm.grow import check_widening, grown_eps, read_checkpoint, widen_state
from emojilm.model import LoopedTransformer
from emojilm.train import TrainConfig, _init_weights, train
from tests.test_train import PAIRS

NARROW = ModelArgs(dim=32, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=16, hidden_dim=96, max_seqlen=64,
                   n_loops=3, loop_mode="inject_embeddings")  # fmt: skip


def trained_looking(args: ModelArgs, seed: int = 0) -> LoopedTransformer:
    """Random weights at a trained model's scales: small embeddings (so eps matters) and uneven norms."""
    torch.manual_seed(seed)
    model = LoopedTransformer(args)
    _init_weights(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.3, 3.0)
            elif name == "tok_embeddings.weight":
                p.normal_(0, 0.03)
            else:
                p.normal_(0, 0.1)
    return model


def widened(narrow: LoopedTransformer, dim: int, n_heads: int, hidden_dim: int) -> LoopedTransformer:
    old = narrow.args
    new = dataclasses.replace(old, dim=dim, n_heads=n_heads, n_kv_heads=n_heads, hidden_dim=hidden_dim,
                              norm_eps=grown_eps(old, dim))  # fmt: skip
    check_widening(old, new)
    wide = LoopedTransformer(new)
    _init_weights(wide)
    wide.load_state_dict(widen_state(narrow.state_dict(), old, wide.state_dict()))
    return wide


@pytest.mark.parametrize("mode", ["none", "add", "add_skip_first", "inject_embeddings"])
@pytest.mark.parametrize(("dim", "n_heads", "hidden_dim"), [(48, 3, 128), (64, 4, 96), (32, 2, 160)])
def test_the_wider_model_computes_the_same_logits_at_every_loop(mode, dim, n_heads, hidden_dim):
    narrow = trained_looking(dataclasses.replace(NARROW, loop_mode=mode))
    wide = widened(narrow, dim, n_heads, hidden_dim)
    tokens = torch.randint(0, 256, (3, 17))
    with torch.no_grad():
        for loop, (a, b) in enumerate(zip(narrow.loop_logits(tokens), wide.loop_logits(tokens), strict=True)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), f"loop {loop + 1}: {(a - b).abs().max()}"


def test_without_scaling_eps_the_logits_would_drift():
    """The eps rescaling is needed (this is what the module docstring's eps remark is about)."""
    narrow = trained_looking(NARROW)
    wide = widened(narrow, 64, 4, 192)
    plain = LoopedTransformer(dataclasses.replace(wide.args, norm_eps=NARROW.norm_eps))
    plain.load_state_dict(wide.state_dict())
    tokens = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        assert not torch.allclose(narrow(tokens), plain(tokens), atol=1e-4, rtol=1e-4)


def test_every_new_weight_learns_from_the_first_step():
    narrow = trained_looking(NARROW)
    wide = widened(narrow, 48, 3, 128)
    tokens = torch.randint(0, 256, (4, 12))
    wide(tokens).logsumexp(-1).mean().backward()
    grads = {name: p.grad for name, p in wide.named_parameters()}
    new_channels = {"tok_embeddings.weight": grads["tok_embeddings.weight"][:, 32:]}
    for i in range(NARROW.n_layers):
        wo, w2 = grads[f"layers.{i}.attention.wo.weight"], grads[f"layers.{i}.feed_forward.w2.weight"]
        new_channels |= {f"wo {i} rows": wo[32:], f"w2 {i} rows": w2[32:]}
        new_channels |= {f"wo {i} new head": wo[:, 32:], f"w2 {i} new units": w2[:, 96:]}
    silent = [name for name, grad in new_channels.items() if not grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dim": 16, "n_heads": 1, "n_kv_heads": 1}, "at least as wide"),
        ({"dim": 48, "n_heads": 3, "n_kv_heads": 3, "n_layers": 3}, "n_layers"),
        ({"dim": 48, "n_heads": 2, "n_kv_heads": 2, "head_dim": 24}, "head_dim"),
        ({"dim": 64, "n_heads": 4, "n_kv_heads": 2}, "key/value head"),
        ({"dim": 64, "n_heads": 4, "n_kv_heads": 4}, "norm_eps"),  # eps left unscaled
    ],
)
def test_what_is_not_a_widening_is_refused(change, message):
    eps = {"norm_eps": grown_eps(NARROW, change["dim"])} if message != "norm_eps" else {}
    with pytest.raises(ValueError, match=message):
        check_widening(NARROW, dataclasses.replace(NARROW, **eps, **change))


def test_a_gated_loop_mode_is_refused():
    gated = dataclasses.replace(NARROW, loop_mode="gated")
    wide = dataclasses.replace(gated, dim=48, n_heads=3, n_kv_heads=3, norm_eps=grown_eps(gated, 48))
    with pytest.raises(ValueError, match="per-loop"):
        check_widening(gated, wide)


def test_attention_gates_read_from_a_checkpoint_are_refused(tmp_path):
    """read_checkpoint reads the gates off the tensors, as emojilm.load does, so they are not dropped."""
    gated = dataclasses.replace(NARROW, attn_gate="head")
    params = {"model": gated.to_lingua(), "emojilm": {"prompt_template": "{text}\t"}}
    saved = read_checkpoint(write_checkpoint(tmp_path / "gated", trained_looking(gated), params))
    assert saved.args.attn_gate == "head"
    wide = dataclasses.replace(saved.args, dim=48, n_heads=3, n_kv_heads=3, norm_eps=grown_eps(gated, 48))
    with pytest.raises(ValueError, match="plain blocks"):
        check_widening(saved.args, wide)
    # and widen_state alone does not drop tensors it has no place for
    fresh = LoopedTransformer(dataclasses.replace(wide, attn_gate="none")).state_dict()
    with pytest.raises(ValueError, match="wg"):
        widen_state(saved.state, saved.args, fresh)


@pytest.fixture
def narrow_folder(tmp_path):
    model = trained_looking(NARROW)
    params = {"model": NARROW.to_lingua(), "emojilm": {"prompt_template": "{text}\t", "trained_steps": 7}}
    return write_checkpoint(tmp_path / "narrow", model, params), model


def test_read_checkpoint_gives_the_weights_and_args(narrow_folder):
    folder, model = narrow_folder
    saved = read_checkpoint(folder)
    assert saved.args == NARROW
    assert all(torch.equal(saved.state[k], v) for k, v in model.state_dict().items())


def grow_config(out, data, narrow, **changes) -> TrainConfig:
    base = {"out": str(out), "data": str(data), "grow_from": str(narrow), "dim": 48, "n_heads": 3, "n_layers": 2,
            "n_loops": 3, "loop_mode": "inject_embeddings", "template": "tab", "steps": 4, "batch_size": 4,
            "warmup": 2, "eval_every": 0, "max_seqlen": 64, "device": "cpu", "lr": 1e-9}  # fmt: skip
    return TrainConfig(**{**base, **changes})


def test_training_grows_from_a_narrow_checkpoint_and_resumes(narrow_folder, tmp_path):
    folder, narrow = narrow_folder
    data = tmp_path / "pairs.csv"
    data.write_text("text,emoji,split\n" + "".join(f"{t},{e},train\n" for t, e in PAIRS), encoding="utf-8")
    out = train(grow_config(tmp_path / "wide", data, folder))
    params = json.loads((out / "params.json").read_text())
    assert params["model"]["dim"] == 48
    assert params["model"]["norm_eps"] == pytest.approx(NARROW.norm_eps * 32 / 48)
    wide = read_checkpoint(out)
    grown = LoopedTransformer(wide.args)
    grown.load_state_dict(wide.state)
    tokens = torch.randint(0, 256, (2, 11))
    with torch.no_grad():  # at lr 1e-9 the run has not moved the weights: the narrow model's logits still
        assert torch.allclose(narrow(tokens), grown(tokens), atol=1e-3, rtol=1e-3)
    # resuming with the same options continues; without --grow-from (so another norm eps) it is refused
    shutil.copytree(out, tmp_path / "again")
    train(grow_config(tmp_path / "again", data, folder, steps=6, resume=True))
    assert json.loads((tmp_path / "again" / "params.json").read_text())["emojilm"]["trained_steps"] == 6
    with pytest.raises(ValueError, match="another model"):
        train(dataclasses.replace(grow_config(tmp_path / "again", data, folder), grow_from="", steps=8, resume=True))
