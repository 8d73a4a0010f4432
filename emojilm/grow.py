"""Widen a trained model without changing what it computes, to go on training it at the larger size.

A model of width `dim` becomes one of width `new.dim`, with more heads of the
same head_dim and a wider feed-forward (Net2Net's idea, done with zeros):

- the new residual channels start at zero and stay there, because everything
  that writes the residual stream (the embedding, each block's wo and w2) has
  zero rows for them;
- the new heads and feed-forward units read the stream with fresh random rows,
  but their outputs are multiplied by zero columns of wo and w2, so they are silent;
- RMSNorm divides by sqrt(mean square over all channels + eps); the silent
  channels lower the mean square by dim / new.dim. Scaling eps by the same
  factor, and every norm weight by its square root, undoes that exactly (eps
  matters here: a small model's embeddings have a mean square near 1e-3).

So the widened model's logits equal the old one's (up to rounding), while every
new weight gets a gradient from the first step: the zero rows and columns are
multiplied by activations that are not zero.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from emojilm.checkpoint import PARAMS, read_state_dict
from emojilm.config import GATE_MODES, ModelArgs, args_from_params, config_fields, read_params
from emojilm.layout import Layout, read_layout

# Matrices that write the residual stream: their new rows (channels) start at zero.
WRITERS = ("tok_embeddings.weight", "attention.wo.weight", "feed_forward.w2.weight")
# Matrices whose inputs are the outputs of new heads or feed-forward units: those new columns start at zero.
SILENCERS = ("attention.wo.weight", "feed_forward.w2.weight")


def check_widening(old: ModelArgs, new: ModelArgs) -> None:
    """Raise ValueError unless `new` is `old` made wider in dim, heads and feed-forward, and nothing else."""
    same = ("n_layers", "head_dim", "n_loops", "loop_mode", "vocab_size", "weight_tying", "rope_theta")
    differ = old.differences(new, same)
    if differ:
        raise ValueError(f"widening keeps everything but the width; these change: {', '.join(differ)}")
    if old.n_kv_heads != old.n_heads or new.n_kv_heads != new.n_heads:
        raise ValueError("widening needs one key/value head per query head (no grouped-query attention)")
    if old.loop_mode in GATE_MODES or old.attn_gate != "none" or old.sliding_window != new.sliding_window:
        raise ValueError("widening supports plain blocks and the loop modes without per-loop tensors")
    if not math.isclose(new.norm_eps, grown_eps(old, new.dim)):
        raise ValueError(f"norm_eps {new.norm_eps} would change the logits; widening to {new.dim} needs "
                         f"{grown_eps(old, new.dim)} (grown_eps)")  # fmt: skip
    narrower = [name for name in ("dim", "n_heads", "hidden_dim") if getattr(new, name) < getattr(old, name)]
    if narrower:
        raise ValueError(f"the new model must be at least as wide; narrower in {', '.join(narrower)}")


def widen_state(state: dict[str, torch.Tensor], old: ModelArgs, fresh: dict[str, torch.Tensor]) -> dict:
    """The weights `state` (of a model with args `old`) placed into `fresh`, a freshly initialised wider
    model's state dict, so that the wider model computes the same logits (see the module docstring)."""
    new_dim = fresh["norm.weight"].shape[0]
    norm_scale = math.sqrt(old.dim / new_dim)
    unknown = sorted(set(state) - set(fresh))
    if unknown:  # dropping them would change the logits
        raise ValueError(f"widening does not know what to do with {', '.join(unknown)}")
    widened = {}
    for name, target in fresh.items():
        if name not in state:
            raise ValueError(f"the narrow checkpoint has no {name}")
        source = state[name].to(target.dtype)
        grown = target.detach().clone()
        if source.dim() == 1:  # an RMSNorm weight: rescaled, new channels at the old weights' mean
            grown.fill_(float(source.mean()) * norm_scale)
            grown[: source.shape[0]] = source * norm_scale
        else:
            if name.endswith(WRITERS):
                axis = 1 if name == "tok_embeddings.weight" else 0  # the channel axis: the embedding is [vocab, dim]
                grown.narrow(axis, source.shape[axis], grown.shape[axis] - source.shape[axis]).zero_()
            if name.endswith(SILENCERS):
                grown[:, source.shape[1] :] = 0
            grown[: source.shape[0], : source.shape[1]] = source
        widened[name] = grown
    return widened


def grown_eps(old: ModelArgs, dim: int) -> float:
    """The norm eps of `old` widened to `dim` channels (see the module docstring)."""
    return old.norm_eps * old.dim / dim


def read_checkpoint(folder: str | Path) -> Layout:
    """A lingua-layout folder's weights under our names and the args they imply, read and checked
    as `emojilm.load` reads them (so an attention gate or a per-loop tensor shows in the args)."""
    folder = Path(folder)
    params = read_params(folder / PARAMS)
    state, _ = read_state_dict(folder)
    return read_layout(state, args_from_params(params), config_fields(params))
