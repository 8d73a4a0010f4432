"""Finding, converting, validating and loading checkpoints in lingua's layout."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import emojilm
from emojilm import CheckpointError, checkpoint
from tests.conftest import hub_snapshot, random_tokens, tiny_params

TOKENS = random_tokens(2, 10, seed=0)
W2 = "layers.1.feed_forward.w2.weight"  # [dim 32, hidden 96] in tiny_params()


def load(source, **kwargs):
    return emojilm.load(source, device="cpu", probe=False, **kwargs)


@torch.no_grad()
def logits(lm):
    return lm.model(TOKENS)


def loaded_state(lm):
    return lm.model.state_dict()  # parameters only: the RoPE table is a non-persistent buffer


def with_nan(shape, where=(3, 4)):
    tensor = torch.randn(shape)
    tensor[where] = float("nan")
    return tensor


def converted_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("converted/*/model.safetensors"))


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize("nested", [True, False])
def test_loads_exactly_the_written_weights(make_checkpoint, nested):
    folder, state = make_checkpoint(nested=nested)
    lm = load(folder)
    assert loaded_state(lm).keys() == state.keys()
    for key, tensor in loaded_state(lm).items():
        assert torch.equal(tensor, state[key]), key
    assert (lm.n_loops, lm.info.loop_mode, lm.info.mode_source) == (3, "add", "config")
    assert "consolidated.pth" in lm.info.weights


def test_conversion_is_cached_and_reused(make_checkpoint, isolated_caches, monkeypatch):
    folder, _ = make_checkpoint()
    first = load(folder)
    [converted] = converted_files(isolated_caches)
    assert str(converted) in first.info.weights

    def no_second_read(path):
        raise AssertionError(f"{path} was read again instead of the cached conversion")

    monkeypatch.setattr(checkpoint, "read_consolidated", no_second_read)
    second = load(folder)
    assert "cached conversion" in second.info.weights
    assert torch.equal(logits(first), logits(second))


def test_conversion_follows_changes_to_the_pth(make_checkpoint, tmp_path):
    folder, _ = make_checkpoint(seed=0)
    before = logits(load(folder))
    (tmp_path / "other").mkdir()
    make_checkpoint(seed=1)[0].joinpath("consolidated.pth").replace(folder / "consolidated.pth")
    assert not torch.equal(logits(load(folder)), before)


def test_safetensors_only_folder(make_checkpoint, tmp_path, isolated_caches):
    pth_folder, state = make_checkpoint()
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "params.json").write_text((pth_folder / "params.json").read_text())
    save_file(state, folder / "model.safetensors")
    lm = load(folder)
    assert lm.info.weights == "model.safetensors"
    assert converted_files(isolated_caches) == []
    assert torch.equal(logits(lm), logits(load(pth_folder)))


@pytest.mark.parametrize("garbage", [b"", b"not safetensors at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_conversion_cache_is_rebuilt(make_checkpoint, isolated_caches, garbage):
    folder, _ = make_checkpoint()
    expected = logits(load(folder))
    [converted] = converted_files(isolated_caches)
    converted.write_bytes(garbage)
    lm = load(folder)
    assert "converted to" in lm.info.weights
    assert torch.equal(logits(lm), expected)
    assert "cached conversion" in load(folder).info.weights  # repaired for next time


# ----------------------------------------------------------------------------- quirks accepted


def per_loop_copies(state, n_layers=2, n_loops=3):
    """The shared layers stored once per loop: layers.{i + loop * n_layers}."""
    return {
        key.replace(f"layers.{i}.", f"layers.{i + loop * n_layers}.", 1): tensor.clone()
        for key, tensor in state.items()
        for i in range(n_layers)
        if key.startswith(f"layers.{i}.")
        for loop in range(1, n_loops)
    }


def test_identical_per_loop_layer_copies_accepted(make_checkpoint):
    plain, state = make_checkpoint(seed=0)
    copies, _ = make_checkpoint(seed=0, state_override=per_loop_copies(state))
    assert torch.equal(logits(load(copies)), logits(load(plain)))


@pytest.mark.parametrize("shared_storage", [True, False])
def test_tied_head_stored_as_output_weight_accepted(make_checkpoint, shared_storage):
    params = tiny_params(weight_tying=True)
    plain, state = make_checkpoint(params)
    embeddings = state["tok_embeddings.weight"]
    # lingua ties by assigning the embedding Parameter to output.weight: torch.save keeps them one storage.
    head = embeddings if shared_storage else embeddings.clone()
    stored, _ = make_checkpoint(params, state_override={"tok_embeddings.weight": embeddings, "output.weight": head})
    assert torch.equal(logits(load(stored)), logits(load(plain)))


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_wrapper_prefixes_accepted(make_checkpoint, prefix):
    plain, state = make_checkpoint()
    renamed = {prefix + k: v for k, v in state.items()}
    prefixed, _ = make_checkpoint(state_override={k: None for k in state} | renamed)
    assert torch.equal(logits(load(prefixed)), logits(load(plain)))


@pytest.mark.parametrize("name", ["loop_gates", "gates", "loop_gate.weight", "_orig_mod.loop_gates"])
def test_gate_keys_switch_to_gated(make_checkpoint, name):
    folder, _ = make_checkpoint(tiny_params(loop_residual=True), state_override={name: torch.rand(3)})
    lm = load(folder)  # the documented reading of a per-loop tensor (the probe is off here)
    assert (lm.model.loop_mode, lm.info.loop_mode, lm.info.mode_source) == ("gated", "gated", "default")
    plain = load(make_checkpoint(tiny_params(loop_residual=True))[0])
    assert plain.model.loop_mode == "add"
    assert not torch.allclose(logits(lm), logits(plain))


# ----------------------------------------------------------------------------- refused checkpoints

# name -> (state_override, params changes, fragments the one error message must hold)
BROKEN_STATES = {
    "wrong shape": ({W2: torch.zeros(32, 95)}, {}, [W2, "(32, 95)", "(32, 96)"]),
    "missing and unexpected": (
        {
            "norm.weight": None,
            "layers.1.ffn_norm.weight": None,
            "layers.0.attention.wq.bias": torch.zeros(32),
            "layers.4.attention.wq.bias": torch.zeros(32),  # a per-loop "copy" of an unknown key
        },
        {},
        ["missing keys (2)", "norm.weight", "layers.1.ffn_norm.weight", "unexpected keys (2)", "wq.bias"],
    ),
    "everything at once": (
        {W2: torch.zeros(32, 95), "output.weight": None, "extra.weight": torch.zeros(1)},
        {},
        [W2, "(32, 95)", "missing keys (1): output.weight", "unexpected keys (1): extra.weight"],
    ),
    "NaN": ({"layers.0.attention.wk.weight": with_nan((16, 32))}, {}, ["layers.0.attention.wk.weight", "NaN"]),
    "inf": ({"norm.weight": torch.full((32,), float("inf"))}, {}, ["norm.weight", "infinite"]),
    "integer weights": ({"norm.weight": torch.ones(32, dtype=torch.int64)}, {}, ["norm.weight", "dtype"]),
    "layer copy differs": (
        {"layers.2.attention.wq.weight": torch.randn(32, 32)},
        {},
        ["layers.2.attention.wq.weight", "layers.0.attention.wq.weight", "differs"],
    ),
    "tied head differs": (
        {"output.weight": torch.randn(258, 32)},
        {"weight_tying": True},
        ["output.weight", "tok_embeddings.weight", "differs"],
    ),
    "untied head missing": ({"output.weight": None}, {}, ["missing keys (1): output.weight"]),
    "gates of a gated model missing": ({}, {"loop_residual": "gated"}, ["loop_gates"]),
}


@pytest.mark.parametrize("case", BROKEN_STATES)
def test_broken_state_dict_refused_with_one_clear_error(make_checkpoint, case):
    override, changes, fragments = BROKEN_STATES[case]
    folder, _ = make_checkpoint(tiny_params(**changes), state_override=override)
    with pytest.raises(CheckpointError) as caught:
        load(folder)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("keep", [0, 100, 0.5, -100])
def test_truncated_pth_refused(make_checkpoint, keep):
    folder, _ = make_checkpoint()
    pth = folder / "consolidated.pth"
    data = pth.read_bytes()
    pth.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(folder)


class CreatesFile:
    """Unpickling this creates a file: a stand-in for a hostile payload."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_payload_is_live(tmp_path):
    pickle.loads(pickle.dumps(CreatesFile(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()


# name -> how consolidated.pth is written, given a marker path
NOT_LINGUA = {
    "object in torch.save": lambda pth, marker: torch.save({"model": CreatesFile(marker), "optim": {}}, pth),
    "raw pickle": lambda pth, marker: pth.write_bytes(pickle.dumps({"model": CreatesFile(marker)})),
    "plain list": lambda pth, marker: torch.save([torch.zeros(2), 3], pth),
    "non-tensor values": lambda pth, marker: torch.save({"model": {"tok_embeddings.weight": [0.0]}}, pth),
}


@pytest.mark.parametrize("case", NOT_LINGUA)
def test_non_lingua_pickles_refused_without_running_code(make_checkpoint, tmp_path, case):
    folder, _ = make_checkpoint()
    marker = tmp_path / "marker"
    NOT_LINGUA[case](folder / "consolidated.pth", marker)
    with pytest.raises(CheckpointError, match=r"consolidated\.pth"):
        load(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"dim": 10**9}, "dim"), ({"n_layers": 10**6}, "n_layers"), ({"dim": 16384, "n_layers": 256}, "layers.255")],
)
def test_absurd_params_refused_quickly(make_checkpoint, changes, key):
    """A params.json promising a giant model next to small weights fails fast, allocating nothing."""
    folder, _ = make_checkpoint()
    params = json.loads((folder / "params.json").read_text())
    params["model"] |= changes
    (folder / "params.json").write_text(json.dumps(params))
    started = time.perf_counter()
    with pytest.raises(ValueError, match=key):
        load(folder)
    assert time.perf_counter() - started < 5


def test_optimizer_state_is_not_returned(make_checkpoint):
    folder, state = make_checkpoint()
    assert checkpoint.read_consolidated(folder / "consolidated.pth").keys() == state.keys()


# Loads a small checkpoint first (the first load costs ~80 MB of one-off torch set-up),
# then prints by how much loading the second one raised the peak resident memory, in MB.
RSS_PROBE = """
import sys, emojilm
def status_mb(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) / 1024
emojilm.load(sys.argv[1], device="cpu", probe=False)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current use
before = status_mb("VmRSS")
emojilm.load(sys.argv[2], device="cpu", probe=False)
print(status_mb("VmHWM") - before)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's peak-memory reset")
def test_optimizer_state_is_never_read_into_memory(make_checkpoint):
    optim_mb = 100
    big_optim = {"state": {0: {"exp_avg": torch.ones(optim_mb * 2**18)}}, "param_groups": []}
    warm_up, _ = make_checkpoint(seed=1)
    folder, state = make_checkpoint()
    torch.save({"model": state, "optim": big_optim}, folder / "consolidated.pth")
    del big_optim
    command = [sys.executable, "-c", RSS_PROBE, str(warm_up), str(folder)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    assert float(run.stdout) < optim_mb / 4, f"loading raised peak memory by {run.stdout.strip()} MB"


# ----------------------------------------------------------------------------- sources


@pytest.mark.parametrize("weights", ["consolidated.pth", "model.safetensors"])
@pytest.mark.parametrize("revision", [None, "main", "c0ffee" * 6 + "abcd"])
def test_hub_repo_resolved_from_the_local_cache_offline(make_checkpoint, hf_cache, tmp_path, weights, revision):
    folder, state = make_checkpoint()
    if weights == "model.safetensors":
        save_file(state, folder / weights)
    commit = "c0ffee" * 6 + "abcd"
    files = {name: (folder / name).read_bytes() for name in ("params.json", weights)}
    hub_snapshot(hf_cache, "chili-lab/Tiny-ByteLM", files, commit)
    lm = load("chili-lab/Tiny-ByteLM", revision=revision)
    assert (lm.info.source, lm.info.revision) == ("chili-lab/Tiny-ByteLM", commit)
    named = {None: "revision main, ", "main": "revision main, ", commit: ""}[revision]
    assert lm.info.note == (
        f"using the cached copy of chili-lab/Tiny-ByteLM ({named}commit c0ffeec0ffee): the Hub is offline "
        "(HF_HUB_OFFLINE is set)"
    )
    assert weights in lm.info.weights
    assert torch.equal(logits(lm), logits(load(folder)))


@pytest.mark.parametrize(
    ("repo", "revision"), [("nobody/No-Such-Model", None), ("chili-lab/Tiny-ByteLM", "0123456789" * 4)]
)
def test_hub_repo_not_in_cache_offline_is_a_clear_error(make_checkpoint, hf_cache, repo, revision):
    folder, _ = make_checkpoint()
    files = {name: (folder / name).read_bytes() for name in ("params.json", "consolidated.pth")}
    hub_snapshot(hf_cache, "chili-lab/Tiny-ByteLM", files, "c0ffee" * 6 + "abcd")
    where = f"{repo!r} (revision {revision or 'main'})"
    with pytest.raises(CheckpointError) as caught:
        load(repo, revision=revision)
    assert str(caught.value) == (
        f"the Hub is offline (HF_HUB_OFFLINE is set), and {where} is not in the local Hugging Face cache ({hf_cache})"
    )


def test_hub_repo_without_weights_in_cache_is_a_clear_error(make_checkpoint, hf_cache):
    folder, _ = make_checkpoint()
    hub_snapshot(hf_cache, "chili-lab/Tiny-ByteLM", {"params.json": (folder / "params.json").read_bytes()}, "a" * 40)
    with pytest.raises(CheckpointError, match="Tiny-ByteLM"):
        load("chili-lab/Tiny-ByteLM")


def test_missing_bundled_model(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint, "BUNDLED_DIR", tmp_path / "assets" / "bundled")
    with pytest.raises(CheckpointError, match="bundled model is missing"):
        load("bundled")


@pytest.mark.parametrize(
    ("source", "message"),
    [("no/such/place", "neither a folder"), ("just-a-name", "neither a folder"), ("params.json", "is a file")],
)
def test_unusable_sources(make_checkpoint, monkeypatch, source, message):
    folder, _ = make_checkpoint()
    monkeypatch.chdir(folder)
    with pytest.raises(CheckpointError, match=message):
        load(source)


def test_folder_without_weights(make_checkpoint):
    folder, _ = make_checkpoint()
    (folder / "consolidated.pth").unlink()
    with pytest.raises(CheckpointError, match="holds neither"):
        load(folder)


def test_folder_without_params(make_checkpoint):
    folder, _ = make_checkpoint()
    (folder / "params.json").unlink()
    with pytest.raises(ValueError, match=r"params\.json"):
        load(folder)
