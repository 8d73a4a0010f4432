"""Choosing the next byte from logits: greedy, temperature, top-k, top-p.

Each request (batch row) draws from its own `torch.Generator`, one uniform
number per step, so a seeded request gives the same answer alone, in a batch,
or beside other users' requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GREEDY_BELOW = 1e-3  # smaller temperatures are greedy: dividing logits by them overflows to inf - inf = NaN


@dataclass(frozen=True)
class SamplingParams:
    """How a request picks its bytes (its ranges are checked where the request is made: emojilm.request)."""

    temperature: float = 0.0  # 0 (or anything below GREEDY_BELOW) means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def generator(self) -> torch.Generator:
        gen = torch.Generator(device="cpu")
        if self.seed is None:
            gen.seed()  # fresh entropy; torch.seed() would reseed (and so disturb) the global RNG
        else:
            gen.manual_seed(self.seed)
        return gen


def filtered_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities [B, V] after temperature, top-k and top-p (nucleus) filtering."""
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_k:
        kth = probs.topk(params.top_k, dim=-1).values[..., -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)  # top-p then applies to the renormalized top-k
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first byte always stays).
        before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return probs / probs.sum(-1, keepdim=True)


def step_uniform(generator: torch.Generator) -> torch.Tensor:
    """The one uniform number [1] a sampling step draws from its request's generator.

    The trace replays a seeded request's steps by drawing these in the same order.
    """
    return torch.rand(1, generator=generator, dtype=torch.float64)


def sample(logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator]) -> torch.Tensor:
    """Next ids [B] from logits [B, V]; row b draws from generators[b]."""
    if params.greedy:
        return logits.argmax(-1)
    probs = filtered_probs(logits, params).cpu()
    uniform = torch.cat([step_uniform(g) for g in generators])
    # Inverse CDF: the first id whose cumulative mass exceeds the row's uniform draw.
    cdf = probs.double().cumsum(-1)
    ids = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).clamp_max(probs.shape[-1] - 1)
    return ids[:, 0].to(logits.device)
