"""The variant probe: which loop mode and prompt template does a checkpoint expect?

The published checkpoint says `loop_residual: true` and nothing about its prompt
layout (DESIGN.md, unknowns 1 and 3). A model run the way it was trained
predicts known answers far better than one run any other way, so we score
candidates by the log-likelihood of pairs whose answer is not in doubt.

`probe_variants` ranks a whole grid (the command line's table). `choose_variant`
is what loading uses: a staged search (the template under the current mode,
then the modes under that template: 8 + 3 forwards instead of 32) that accepts
a pick only when it wins clearly, and otherwise keeps the documented default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from emojilm.config import LOOP_MODES
from emojilm.prompt import CANDIDATE_TEMPLATES, KNOWN_PAIRS, format_prompt

# A pick is clear when the runner-up's loss (mean negative log p per answer byte) is at
# least CLEAR_RATIO times the winner's. A ratio, not a difference: a well-trained model's
# losses are tiny (a wrong residual reading costs ~0.01 nats/byte on a tiny model, yet
# 1.5x or more), while random weights score ~5.5 nats/byte for every variant (ratio ~1.0).
CLEAR_RATIO = 1.5
# Readings of `loop_residual: true` the probe may choose between (gated needs gate tensors).
TRUE_READINGS = ("add", "add_skip_first", "inject_embeddings")

Progress = Callable[[int, int], None]  # (candidates scored, candidates in all)


@torch.no_grad()
def score_pairs(lm, pairs: Sequence[tuple[str, str]], template: str) -> tuple[float, float]:
    """Mean log-probability per answer byte (EOS included) and the share of answers
    whose every byte is the model's top choice under teacher forcing."""
    tok = lm.tokenizer
    rows = []
    for text, answer in pairs:
        prompt = tok.encode(format_prompt(text, template), bos=True)
        rows.append((prompt, tok.encode(answer, eos=True)))
    width = max(len(p) + len(a) for p, a in rows)
    tokens = torch.full((len(rows), width), tok.eos_id, dtype=torch.long)
    answer_mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (prompt, answer) in enumerate(rows):
        tokens[i, : len(prompt) + len(answer)] = torch.tensor(prompt + answer)
        answer_mask[i, len(prompt) : len(prompt) + len(answer)] = True
    tokens = tokens.to(lm.device)
    logp = lm.model(tokens).float().log_softmax(-1)[:, :-1]
    targets, mask = tokens[:, 1:], answer_mask[:, 1:].to(lm.device)
    target_logp = logp.gather(-1, targets[..., None])[..., 0]
    hit = (logp.argmax(-1) == targets) | ~mask
    return float(target_logp[mask].mean()), float(hit.all(-1).float().mean())


def probe_variants(
    lm,
    pairs: Sequence[tuple[str, str]] = KNOWN_PAIRS,
    modes: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score every candidate; a table ranked best first with columns
    loop_mode, template, score (mean log p per answer byte), exact, margin."""
    if modes is None:
        has_gates = hasattr(lm.model, "loop_gates")
        modes = [m for m in LOOP_MODES if (m == "gated") == has_gates]
    templates = list(templates or CANDIDATE_TEMPLATES)
    return _ranked([_score_variant(lm, pairs, mode, name) for mode in modes for name in templates])


def _score_variant(lm, pairs, mode: str, template: str) -> dict:
    """One candidate's row: the model run in `mode` on `template` prompts, then left as it was."""
    original = lm.model.loop_mode
    try:
        lm.model.set_loop_mode(mode)
        score, exact = score_pairs(lm, pairs, template)
    finally:
        lm.model.set_loop_mode(original)
    return {"loop_mode": mode, "template": template, "score": score, "exact": exact}


def loss_ratio(table: pd.DataFrame) -> float:
    """The runner-up's loss over the winner's (inf when the winner is perfect or alone)."""
    if len(table) < 2:
        return float("inf")
    best, runner_up = -float(table["score"].iloc[0]), -float(table["score"].iloc[1])
    return runner_up / best if best > 0 else float("inf")


def is_clear_winner(table: pd.DataFrame) -> bool:
    return loss_ratio(table) >= CLEAR_RATIO


@dataclass
class StageResult:
    """One stage of the search: the winner, whether it is clear, and by how much."""

    winner: str
    clear: bool
    margin: float  # nats per answer byte between winner and runner-up
    ratio: float  # runner-up's loss / winner's loss

    def describe(self, what: str) -> str:
        verdict = "clear winner" if self.clear else "no clear winner"
        return (f"{what} probe: {verdict} {self.winner!r}, margin {self.margin:.3f} nats/byte "
                f"(runner-up loss {self.ratio:.2f}x; clear needs {CLEAR_RATIO}x)")  # fmt: skip

    def to_json(self) -> dict:
        return {"winner": self.winner, "clear": self.clear, "margin": self.margin, "ratio": min(self.ratio, 1e9)}


def choose_variant(
    lm,
    modes: Sequence[str] | None,
    probe_template: bool,
    progress: Progress | None = None,
    pairs: Sequence[tuple[str, str]] = KNOWN_PAIRS,
) -> dict[str, StageResult]:
    """Staged search: {"template": ..., "loop_mode": ...} for the stages that ran.

    The template is scored under the model's current loop mode (when probe_template),
    then `modes` (when given, at least two) under the template that won clearly, or
    the current one. The model is left as it was found; applying a pick is the caller's.
    """
    template_names = list(CANDIDATE_TEMPLATES) if probe_template else []
    modes = list(modes or [])
    total, done = len(template_names) + len(modes), 0
    current = lm.template

    def scored(mode: str, template: str) -> dict:
        nonlocal done
        record = _score_variant(lm, pairs, mode, template)
        done += 1
        if progress:
            progress(done, total)
        return record

    results = {}
    if template_names:
        table = _ranked([scored(lm.model.loop_mode, name) for name in template_names])
        results["template"] = _stage(table, "template")
        if results["template"].clear:
            current = results["template"].winner
    if modes:
        table = _ranked([scored(mode, current) for mode in modes])
        results["loop_mode"] = _stage(table, "loop_mode")
    return results


def _ranked(records: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(records).sort_values("score", ascending=False, ignore_index=True)
    table["margin"] = table["score"].iloc[0] - table["score"]
    return table


def _stage(table: pd.DataFrame, column: str) -> StageResult:
    margin = float(table["margin"].iloc[1]) if len(table) > 1 else float("inf")
    return StageResult(str(table[column].iloc[0]), is_clear_winner(table), margin, loss_ratio(table))


if __name__ == "__main__":  # python -m emojilm.probe SOURCE: the ranked table (the command line is in emojilm.cli)
    import sys

    from emojilm.cli import probe_main, run

    sys.exit(run(probe_main))
