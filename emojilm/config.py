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

from emojilm.request import Limits
from emojilm.tokenizer import VOCAB_SIZE

log = logging.getLogger(__name__)

# Readings of a learned per-loop tensor (loop_gates): gate formulas, or per-loop embeddings.
GATE_MODES = ("gated", "gated_update", "gated_inject", "gated_mix", "loop_embed")
# How the state is carried from one loop to the next (see LoopedTransformer).
LOOP_MODES = ("none", "add", "add_skip_first", "inject_embeddings", *GATE_MODES)
# What `loop_residual: true` means when a checkpoint does not say more (docs/checkpoint.md, "Guessed"),
# and the readings of it the variant probe may choose between (emojilm.variant decides).
DEFAULT_TRUE_MODE = "add"
TRUE_READINGS = ("add", "add_skip_first", "inject_embeddings")
# What a per-loop tensor means when the config does not name a mode: the authors' lab describes
# `use_residual` as a "learned zero-init per-iteration residual gate across loop iterations".
DEFAULT_GATE_MODE = "gated"
# Other spellings of a field, as the authors' lab (chili-lab/LT2) and the model card write them.
SPELLINGS = {"n_loops": ("n_loops", "loop_count", "num_loops"), "loop_residual": ("loop_residual", "use_residual")}
# Fields read here, besides ModelArgs' own, the spellings above and RUNNABLE's.
READ = ("multiple_of", "ffn_dim_multiplier", "gated_attn")
# Fields that only steer training (initialisation, seeds): they cannot change what trained weights compute.
TRAINING_ONLY = ("seed", "init_base_std", "init_std_factor")
# Fields that change the computation, with the values this runtime runs; another value is refused.
RUNNABLE = {
    "shared_layers": (True,),  # one set of n_layers blocks applied in every loop
    "mixer": ("attention", "attn", "softmax"),  # e.g. "gdn" (gated delta net) is another sequence mixer
    "qk_norm": (False,),
}
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
    sliding_window: int | None = None  # each position attends to itself and the window - 1 before it
    # What the state dict holds beyond lingua's core (`layout.read_layout` sets these):
    attn_gate: str = "none"  # attention output gates: "none", "head" (one per head) or "element" (one per element)
    loop_gate_shape: tuple[int, ...] = ()  # the per-loop tensor: [L] or [L, dim], L = n_loops or n_loops - 1

    @property
    def loop_modes(self) -> tuple[str, ...]:
        """The loop modes weights of this shape can run: the gate readings exactly when there is a
        per-loop tensor (loop_embed only when it has a row of dim values per loop)."""
        if self.loop_mode not in GATE_MODES and not self.loop_gate_shape:
            return tuple(mode for mode in LOOP_MODES if mode not in GATE_MODES)
        shape = self.loop_gate_shape or (self.n_loops, self.dim)
        return tuple(mode for mode in GATE_MODES if mode != "loop_embed" or len(shape) == 2)

    @property
    def max_loops(self) -> int:
        """The largest loop count a call may use (emojilm.request.Limits)."""
        return self.limits.max_loops

    @property
    def limits(self) -> Limits:
        """What a request may ask of this model."""
        return Limits(self.n_loops, self.max_seqlen)

    def differences(self, other: ModelArgs, names: tuple[str, ...] | None = None) -> list[str]:
        """For each field (of `names`, default all) where `other` differs: "name mine → other's"."""
        names = names or tuple(f.name for f in fields(self))
        return [f"{name} {getattr(self, name)} → {getattr(other, name)}" for name in names
                if getattr(self, name) != getattr(other, name)]  # fmt: skip

    def to_lingua(self) -> dict[str, Any]:
        """The "model" section of a params.json that reproduces these args exactly (with the
        checkpoint's tensors, which say what attn_gate and loop_gate_shape are)."""
        out = asdict(self)
        out["loop_residual"] = out.pop("loop_mode")
        out["gated_attn"] = out.pop("attn_gate") != "none"
        del out["loop_gate_shape"]
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


@dataclass(frozen=True)
class ConfigFields:
    """What each field of params.json's model section does here (the model panel lists them)."""

    used: dict[str, Any]  # read, under the spelling the checkpoint uses
    training: dict[str, Any]  # ignored: they only steer training
    unknown: dict[str, Any]  # ignored: not known here
    refused: dict[str, str]  # field -> why this runtime cannot run it

    def value(self, name: str) -> Any:
        """A read field's value under any of its spellings (None when absent)."""
        return next((self.used[s] for s in SPELLINGS.get(name, (name,)) if self.used.get(s) is not None), None)


def model_section(params: dict[str, Any]) -> dict[str, Any]:
    """The "model" section of a whole lingua config (or the section itself)."""
    section = params.get("model", params)
    if not isinstance(section, dict):
        raise ValueError("params.json has no 'model' section")
    return section


def config_fields(params: dict[str, Any]) -> ConfigFields:
    """Sort the model section's fields into used, ignored (training only, unknown) and refused; never raises
    for a field's value (args_from_params checks those)."""
    section = model_section(params)
    derived = {"loop_mode", "attn_gate", "loop_gate_shape"}  # set from other fields or from the tensors
    read = {f.name for f in fields(ModelArgs)} - derived | set(READ) | set(RUNNABLE)
    read |= {spelling for spellings in SPELLINGS.values() for spelling in spellings}
    refused = {}
    for key, runnable in RUNNABLE.items():
        value = section.get(key)
        if value is not None and not any(type(value) is type(ok) and value == ok for ok in runnable):
            refused[key] = (
                f"{key}={value!r} cannot run here (this runtime runs {key} = {' or '.join(map(repr, runnable))})"
            )
    for name, spellings in SPELLINGS.items():
        given = {s: section[s] for s in spellings if section.get(s) is not None}
        if len({json.dumps(v, sort_keys=True) for v in given.values()}) > 1:
            refused[name] = f"the spellings of {name} disagree: " + ", ".join(f"{k}={v!r}" for k, v in given.items())
    return ConfigFields(
        used={k: v for k, v in section.items() if k in read and k not in refused},
        training={k: v for k, v in section.items() if k in TRAINING_ONLY},
        unknown={k: v for k, v in section.items() if k not in read and k not in TRAINING_ONLY},
        refused=refused,
    )


def _spelling(section: dict[str, Any], name: str) -> str:
    """The spelling of `name` the section uses (the first one given), or `name` itself."""
    return next((s for s in SPELLINGS[name] if section.get(s) is not None), name)


def _int(section: dict[str, Any], key: str, default: int | None, limit: str | None = None) -> int | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"params.json model.{key} must be a positive integer, got {value!r}")
    _check_limit(limit or key, value, name=key)
    return value


def _check_limit(key: str, value: int, how: str = "", name: str | None = None) -> None:
    if key in LIMITS and value > LIMITS[key]:
        raise ValueError(
            f"params.json model.{name or key}={value}{how} is larger than this runtime allows ({LIMITS[key]})"
        )


def _float(section: dict[str, Any], key: str, default: float | None) -> float | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"params.json model.{key} must be a positive number, got {value!r}")
    return float(value)


def args_from_params(params: dict[str, Any]) -> ModelArgs:
    """Build ModelArgs from a whole lingua config (or from its "model" section alone).

    Unknown fields are ignored (config_fields lists them); a field that would change the
    computation in a way this runtime cannot run is refused, naming it.
    """
    section = model_section(params)
    report = config_fields(params)
    if report.refused:
        raise ValueError("params.json model: " + "; ".join(report.refused.values()))
    if report.unknown:
        log.debug("params.json model keys ignored: %s", ", ".join(report.unknown))

    vocab = _int(section, "vocab_size", VOCAB_SIZE)
    if vocab != VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab}, but the byte tokenizer has {VOCAB_SIZE} ids")
    if section.get("gated_attn") not in (True, False, None):
        raise ValueError(f"params.json model.gated_attn must be true or false, got {section['gated_attn']!r}")

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
        n_loops=_int(section, _spelling(section, "n_loops"), 1, limit="n_loops"),
        loop_mode=loop_mode_from(report.value("loop_residual")),
        sliding_window=_int(section, "sliding_window", None),
    )


def read_params(path: str | Path) -> dict[str, Any]:
    try:
        params = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(params, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return params
