"""Model arguments read from a lingua `params.json`.

lingua writes the whole training config to params.json; the model's arguments
are its "model" section. We keep the fields we understand, derive the sizes the
way lingua's code does, and refuse settings we cannot run.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from emojilm.tokenizer import VOCAB_SIZE

log = logging.getLogger(__name__)

# How the state is carried from one loop to the next (see LoopedTransformer).
LOOP_MODES = ("none", "add", "add_skip_first", "inject_embeddings", "gated")
# What `loop_residual: true` means when a checkpoint does not say more (DESIGN.md, unknown 1).
DEFAULT_TRUE_MODE = "add"
# Loops a caller may ask for: extrapolation beyond the trained count is allowed up to this.
MAX_LOOPS_FACTOR = 4
# Sizes beyond these are refused before anything is allocated (a hostile params.json).
LIMITS = {
    "dim": 16384,
    "n_layers": 256,
    "n_heads": 256,
    "n_kv_heads": 256,
    "head_dim": 16384,
    "hidden_dim": 131072,
    "n_loops": 128,
    "max_seqlen": 65536,
}


@dataclass(frozen=True)
class ModelArgs:
    dim: int = 512
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 8
    head_dim: int = 64
    hidden_dim: int = 1536
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seqlen: int = 1024
    vocab_size: int = VOCAB_SIZE
    weight_tying: bool = False
    n_loops: int = 1
    loop_mode: str = "none"

    @property
    def max_loops(self) -> int:
        """The largest loop count a call may use (trained count × MAX_LOOPS_FACTOR)."""
        return max(1, self.n_loops) * MAX_LOOPS_FACTOR

    def to_lingua(self) -> dict[str, Any]:
        """The "model" section of a params.json that reproduces these args exactly."""
        out = asdict(self)
        out["loop_residual"] = self.loop_mode
        del out["loop_mode"]
        return out


def ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """lingua's FeedForward size: 2/3 of 4·dim, optionally scaled, rounded up to multiple_of."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * math.ceil(hidden / multiple_of)


def loop_mode_from(value: Any) -> str:
    """Map params.json's `loop_residual` (bool or a mode name) to a loop mode."""
    if value is True:
        return DEFAULT_TRUE_MODE
    if value in (False, None):
        return "none"
    if isinstance(value, str) and value in LOOP_MODES:
        return value
    raise ValueError(f"loop_residual={value!r} is not understood; expected true/false or one of {LOOP_MODES}")


def _int(section: dict[str, Any], key: str, default: int | None) -> int | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"params.json model.{key} must be a positive integer, got {value!r}")
    _check_limit(key, value)
    return value


def _check_limit(key: str, value: int, how: str = "") -> None:
    if key in LIMITS and value > LIMITS[key]:
        raise ValueError(f"params.json model.{key}={value}{how} is larger than this runtime allows ({LIMITS[key]})")


def _float(section: dict[str, Any], key: str, default: float | None) -> float | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"params.json model.{key} must be a positive number, got {value!r}")
    return float(value)


def args_from_params(params: dict[str, Any]) -> ModelArgs:
    """Build ModelArgs from a whole lingua config (or from its "model" section alone)."""
    section = params.get("model", params)
    if not isinstance(section, dict):
        raise ValueError("params.json has no 'model' section")

    known = {f.name for f in fields(ModelArgs)} | {
        "loop_residual",
        "multiple_of",
        "ffn_dim_multiplier",
        "sliding_window",
        "init_base_std",
        "init_std_factor",
        "seed",
    }
    unknown = sorted(set(section) - known)
    if unknown:
        log.debug("params.json model keys ignored: %s", ", ".join(unknown))

    if section.get("sliding_window") is not None:
        raise ValueError("sliding_window attention is not supported by this runtime")
    vocab = _int(section, "vocab_size", VOCAB_SIZE)
    if vocab != VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab}, but the byte tokenizer has {VOCAB_SIZE} ids")

    dim = _int(section, "dim", 512)
    n_heads = _int(section, "n_heads", None)
    head_dim = _int(section, "head_dim", None)
    if n_heads is None and head_dim is None:
        raise ValueError("params.json model needs n_heads or head_dim")
    head_dim = head_dim or dim // n_heads
    n_heads = n_heads or dim // head_dim
    if head_dim < 2 or head_dim % 2 or n_heads < 1:
        raise ValueError(
            f"params.json model: head_dim={head_dim} with n_heads={n_heads} (dim={dim}); "
            "head_dim must be a positive even number for rotary embeddings"
        )
    n_kv_heads = _int(section, "n_kv_heads", None) or n_heads
    if n_heads % n_kv_heads:
        raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")

    multiple_of = _int(section, "multiple_of", 256)
    multiplier = _float(section, "ffn_dim_multiplier", None)
    hidden_dim = _int(section, "hidden_dim", None)
    if hidden_dim is None:
        hidden_dim = ffn_hidden_dim(dim, multiple_of, multiplier)
        _check_limit("hidden_dim", hidden_dim, " (from dim, multiple_of and ffn_dim_multiplier)")

    n_loops = _int(section, "n_loops", 1)
    return ModelArgs(
        dim=dim,
        n_layers=_int(section, "n_layers", 8),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        hidden_dim=hidden_dim,
        norm_eps=_float(section, "norm_eps", 1e-5),
        rope_theta=_float(section, "rope_theta", 10000.0),
        max_seqlen=_int(section, "max_seqlen", 1024),
        weight_tying=bool(section.get("weight_tying", False)),
        n_loops=n_loops,
        loop_mode=loop_mode_from(section.get("loop_residual", False)),
    )


def read_params(path: str | Path) -> dict[str, Any]:
    try:
        params = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(params, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return params
