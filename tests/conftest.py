"""Shared helpers: tiny random checkpoints in lingua's real on-disk layout.

The state dict is built here from lingua's key names and shapes as documented
(docs/checkpoint.md, "Known"), never from emojilm's model class,
so a naming or shape mistake in emojilm cannot hide behind the helper.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from emojilm.space import keep_loopback_off_proxies

# The tests talk to their own servers on loopback, whatever proxy this machine's environment names.
keep_loopback_off_proxies()

# The tests use tiny tensors: one thread is as fast, and a second one only adds
# synchronization that gets very slow when the machine's cores are busy.
torch.set_num_threads(1)


def pytest_terminal_summary(terminalreporter) -> None:
    """The CPU the run saw, last (quiet runs print no header): kernels, and with them rounding and
    timing, differ from one CPU to another."""
    from emojilm import native

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    capability = torch.backends.cpu.get_cpu_capability()
    terminalreporter.write_line(f"CPU: {model}; torch's vectors: {capability}; emojilm's AMX kernel: {native.amx()}")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


VOCAB = 258

# A tiny model exercising every size rule: GQA, FFN rounding, three trained loops.
TINY = {
    "dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "multiple_of": 16,
    "max_seqlen": 48,
    "n_loops": 3,
    "loop_residual": "add",
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "vocab_size": VOCAB,
    "weight_tying": False,
}


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Every test gets its own conversion cache and an offline, empty Hub cache."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("EMOJILM_CACHE", str(tmp_path / "emojilm-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "emojilm-cache"


def tiny_params(**changes: Any) -> dict[str, Any]:
    """The TINY model section with some keys changed (a value of None removes the key)."""
    params = {**TINY, **changes}
    return {k: v for k, v in params.items() if v is not None}


def lingua_sizes(model: dict[str, Any]) -> dict[str, int]:
    """Sizes as lingua derives them from a params.json model section."""
    dim, n_heads = model["dim"], model["n_heads"]
    hidden = int(2 * 4 * dim / 3)
    if model.get("ffn_dim_multiplier") is not None:
        hidden = int(model["ffn_dim_multiplier"] * hidden)
    multiple_of = model.get("multiple_of", 256)
    return {
        "dim": dim,
        "head_dim": model.get("head_dim") or dim // n_heads,
        "n_heads": n_heads,
        "n_kv_heads": model.get("n_kv_heads") or n_heads,
        "hidden": multiple_of * math.ceil(hidden / multiple_of),
    }


def lingua_shapes(model: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every key of a lingua LMTransformer state dict with its shape."""
    s = lingua_sizes(model)
    dim, q_dim, kv_dim, hidden = s["dim"], s["n_heads"] * s["head_dim"], s["n_kv_heads"] * s["head_dim"], s["hidden"]
    shapes = {"tok_embeddings.weight": (VOCAB, dim), "norm.weight": (dim,)}
    for i in range(model["n_layers"]):
        p = f"layers.{i}."
        shapes |= {
            p + "attention.wq.weight": (q_dim, dim),
            p + "attention.wk.weight": (kv_dim, dim),
            p + "attention.wv.weight": (kv_dim, dim),
            p + "attention.wo.weight": (dim, q_dim),
            p + "feed_forward.w1.weight": (hidden, dim),
            p + "feed_forward.w2.weight": (dim, hidden),
            p + "feed_forward.w3.weight": (hidden, dim),
            p + "attention_norm.weight": (dim,),
            p + "ffn_norm.weight": (dim,),
        }
    if not model.get("weight_tying"):
        shapes["output.weight"] = (VOCAB, dim)
    return shapes


def random_state_dict(model: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random fp32 weights: matrices scaled by 1/sqrt(fan_in), norm weights around 1 (not 1)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in lingua_shapes(model).items():
        if len(shape) == 1:
            state[key] = 1.0 + 0.3 * torch.randn(shape, generator=gen)
        elif key == "tok_embeddings.weight":
            state[key] = torch.randn(shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
    return state


def fake_adam_state(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What torch.optim.AdamW.state_dict() looks like for these parameters."""
    return {
        "state": {
            i: {"step": torch.tensor(1000.0), "exp_avg": torch.randn(t.shape), "exp_avg_sq": torch.rand(t.shape)}
            for i, t in enumerate(state.values())
        },
        "param_groups": [
            {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1, "params": list(range(len(state)))}
        ],
    }


def lingua_params(model: dict[str, Any], seed: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole lingua training config (params.json) around a model section."""
    params = {
        "name": "emoji_bytelm_tiny",
        "dump_dir": "/checkpoint/emoji/tiny",
        "seed": seed,
        "steps": 1000,
        "grad_acc_steps": 1,
        "model": model,
        "data": {"root_dir": "/data", "sources": {"text2emoji": 1.0}, "seq_len": 64, "tokenizer": {"name": "bytes"}},
        "optim": {"lr": 3e-4, "weight_decay": 0.1, "warmup": 100, "scheduler": "cosine"},
        "distributed": {"fsdp_type": "full_shard", "compile": True},
        "checkpoint": {"dump": {"every": 1000, "keep": 3}},
        "a_key_from_a_future_lingua": {"anything": [1, 2, 3]},
    }
    return params | (extra or {})


def write_lingua_checkpoint(
    folder: Path,
    params_model: dict[str, Any],
    *,
    seed: int,
    state_override: dict[str, torch.Tensor | None] | None = None,
    nested: bool = True,
    extra_params: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Write params.json + consolidated.pth the way lingua does; return the model state written.

    `state_override` replaces or adds tensors (None deletes a key); `nested=False`
    writes the bare state dict instead of {"model": ..., "optim": ...}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = random_state_dict(params_model, seed)
    for key, tensor in (state_override or {}).items():
        if tensor is None:
            state.pop(key, None)
        else:
            state[key] = tensor
    params = lingua_params(params_model, seed, extra_params)
    (folder / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
    payload = {"model": state, "optim": fake_adam_state(state)} if nested else state
    torch.save(payload, folder / "consolidated.pth")
    return state


def random_tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def make_checkpoint(tmp_path):
    """write_lingua_checkpoint into a fresh folder under tmp_path; returns (folder, state)."""
    counter = iter(range(1000))

    def make(params_model: dict[str, Any] | None = None, *, seed: int = 0, **kwargs):
        folder = tmp_path / f"ckpt{next(counter)}"
        state = write_lingua_checkpoint(folder, params_model or tiny_params(), seed=seed, **kwargs)
        return folder, state

    return make


def hub_snapshot(hf_cache: Path, repo_id: str, files: dict[str, bytes], commit: str) -> None:
    """Lay files out as huggingface_hub's cache does: blobs, refs/main, snapshots/<commit>/ links."""
    repo = hf_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (repo / "snapshots" / commit / name).symlink_to(Path("../..") / "blobs" / blob.name)


@pytest.fixture
def hf_cache(isolated_caches):
    return isolated_caches.parent / "hf-cache"
