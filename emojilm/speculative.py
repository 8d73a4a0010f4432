"""Self-speculative decoding: the first loops draft, all the loops verify.

Loop k of a byte never depends on the loops after it, so the first
`draft_loops` loops of the model are a complete smaller model that shares
everything with it, keys and values included. Each round drafts a few bytes
one at a time with those loops only, then runs the remaining loops on all the
drafted bytes in one pass, carrying on from the draft's own states: no loop of
any byte is computed twice. The model keeps the longest drafted prefix it
agrees with, plus its own next byte, so every round yields at least one byte.

Greedy output is exactly plain greedy decoding. When sampling, a drafted byte
is kept with probability min(1, p/q) and otherwise replaced by a draw from
max(0, p - q) renormalized (p: all loops, q: the draft), the standard rule that
leaves the output distributed exactly as the full model's (Leviathan et al.,
2023). It draws other random numbers than plain sampling, so a seed gives
another (equally likely) answer.

How long a draft grows is the draft's own call: it goes on while it is sure of
its bytes (most of an emoji's bytes follow from its first), up to DRAFT_LENGTH.
Every round ends with a pass of all the remaining loops, so long rounds pay
where drafts are kept; where the draft is unsure, rounds shrink to one byte and
cost what a plain step costs. A draft can be sure and still wrong (random
weights are), so rounds also stay at one byte while the share of drafted bytes
the full model kept is below the break-even share (`break_even_share`, which
counts the measured extra cost of verifying two positions instead of one):
drafting then costs what plain decoding costs, never more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from emojilm.kvcache import KVCache
from emojilm.model import LoopedTransformer
from emojilm.sampling import SamplingParams, filtered_probs, sample
from emojilm.step import prefill, step

DRAFT_LENGTH = 8  # the most bytes one round drafts: two 4-byte emoji, or one with its 3-byte variation selector
DRAFT_CONFIDENCE = 0.5  # a draft ends after a byte to which its read-out gave less probability than this
# What a pass over two positions costs beyond a pass over one, as a share of it: "step of 2 positions
# / step of 1 row" at the published shape in docs/benchmarks.md, less one (0.19 when set, rounded up).
SECOND_POSITION_COST = 0.2


@dataclass
class DraftStats:
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        """Share of drafted bytes the full model kept."""
        return self.accepted / self.drafted if self.drafted else 0.0


def default_draft_loops(n_loops: int) -> int:
    """Draft loops for a run of n_loops: a quarter of them, at least one (0 means no drafting)."""
    return max(1, n_loops // 4) if n_loops > 1 else 0


def break_even_share(draft_loops: int, n_loops: int, second_position_cost: float = SECOND_POSITION_COST) -> float:
    """The share of drafted bytes kept above which drafting a second byte pays for itself.

    A round of one byte costs what a plain step costs (n_loops loop passes over one
    position). A round of two costs two draft passes of draft_loops loops plus one pass
    of the other loops over two positions (1 + second_position_cost times a one-position
    pass), and yields one byte more than a one-byte round when its first drafted byte is
    kept: in plain steps, that is worth it when the kept share exceeds the extra cost.
    """
    two_bytes = (2 * draft_loops + (n_loops - draft_loops) * (1 + second_position_cost)) / n_loops
    return two_bytes - 1


def worth_drafting_ahead(stats: DraftStats, break_even: float) -> bool:
    """Whether a round should draft past its first byte: while the share of drafted bytes kept
    so far (one kept in two assumed before any) is at least `break_even` (`break_even_share`)."""
    return (stats.accepted + 1) / (stats.drafted + 2) >= break_even


def judge(
    drafted: torch.Tensor,
    draft_logits: torch.Tensor,
    full_logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator,
) -> tuple[int, int | None]:
    """How many drafted ids [G] to keep, and the id that replaces the first one rejected (None if all kept).

    draft_logits and full_logits [G, V] are each model's logits for the drafted positions.
    """
    if params.greedy:
        choice = full_logits.argmax(-1)
        disagree = (choice != drafted).nonzero()
        if len(disagree) == 0:
            return len(drafted), None
        first = int(disagree[0])
        return first, int(choice[first])
    p = filtered_probs(full_logits, params).double().cpu()
    q = filtered_probs(draft_logits, params).double().cpu()
    for i, a in enumerate(drafted.tolist()):
        u = torch.rand(1, generator=generator, dtype=torch.float64).item()
        if u * q[i, a] < p[i, a]:  # u < p/q without dividing by a zero q
            continue
        residual = (p[i] - q[i]).clamp_min(0.0)
        if residual.sum() <= 0:  # p == q up to rounding: any draw from p is right
            residual = p[i]
        return i, int(torch.multinomial(residual, 1, generator=generator))
    return len(drafted), None


@torch.inference_mode()
def speculative_tokens(
    model: LoopedTransformer,
    prompt: torch.Tensor,
    n_loops: int,
    draft_loops: int,
    params: SamplingParams,
    max_new_tokens: int,
    generator: torch.Generator,
    stats: DraftStats,
    draft_length: int = DRAFT_LENGTH,  # the most bytes drafted in one round
    min_confidence: float = DRAFT_CONFIDENCE,  # 0: always draft draft_length bytes; above 1: one
    cache: KVCache | None = None,
    stop_id: int | None = None,
    break_even: float | None = None,  # worth_drafting_ahead's share; None: break_even_share, 0: always
) -> Iterator[int]:
    """Yield up to max_new_tokens ids continuing prompt [1, T]; the caller stops at EOS.

    A drafted `stop_id` (EOS) ends its round's draft: nothing after it would be used.

    The cache (if given, room for T + max_new_tokens) ends up holding the prompt and
    every yielded id but the last at every loop: a rejected draft's keys/values lie
    only at positions that the next round writes again.
    """
    if not 1 <= draft_loops < n_loops:
        raise ValueError(f"draft_loops must be from 1 to {n_loops - 1} for {n_loops} loops, got {draft_loops}")
    length = prompt.shape[1]
    if break_even is None:
        break_even = break_even_share(draft_loops, n_loops)
    if cache is None:
        cache = model.new_cache(n_loops, 1, length + max_new_tokens)
    token = sample(model.readout(prefill(model, prompt, n_loops, cache)[-1][:, -1]), params, [generator])
    yield int(token)
    done = 1
    while done < max_new_tokens:
        position = length + done - 1  # where `token`, the last id yielded, goes
        ahead = worth_drafting_ahead(stats, break_even)
        steps = min(draft_length if ahead else 1, max_new_tokens - done)
        fed, states, draft_logits = [token], [], []
        for i in range(steps):
            h = step(model, fed[-1][:, None], cache, position + i, [draft_loops]).hidden
            states.append(h)
            draft_logits.append(model.readout(h[:, -1]))
            fed.append(sample(draft_logits[-1], params, [generator]))
            chosen = int(fed[-1])
            if chosen == stop_id or draft_logits[-1][0].float().softmax(-1)[chosen] < min_confidence:
                break
        steps = len(states)
        h = step(model, torch.cat(fed[:-1])[None], cache, position, [n_loops],
                 first_loop=draft_loops, state=torch.cat(states, dim=1)).hidden  # fmt: skip
        drafted = torch.cat(fed[1:])
        kept, replacement = judge(drafted, torch.cat(draft_logits), model.readout(h)[0], params, generator)
        stats.rounds, stats.drafted, stats.accepted = stats.rounds + 1, stats.drafted + steps, stats.accepted + kept
        new = drafted[:kept].tolist() + ([] if replacement is None else [replacement])
        yield from new
        done += len(new)
        token = torch.tensor([new[-1]], device=prompt.device)
