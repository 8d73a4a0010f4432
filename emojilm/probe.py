"""The variant probe: which loop mode and prompt template does a checkpoint expect?

The published checkpoint says `loop_residual: true` and nothing about its prompt
layout (DESIGN.md, unknowns 1 and 3). A model run the way it was trained
predicts known answers far better than one run any other way, so we score every
(loop mode × template) candidate by the log-likelihood of pairs whose answer is
not in doubt, and rank them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from emojilm.config import LOOP_MODES
from emojilm.prompt import CANDIDATE_TEMPLATES, KNOWN_PAIRS, format_prompt

# A model trained one way should beat the runner-up by a clear margin; below it we say so.
CLEAR_MARGIN = 0.5  # nats per answer byte


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
    original = lm.model.loop_mode
    records = []
    try:
        for mode in modes:
            lm.model.set_loop_mode(mode)
            for name in templates:
                score, exact = score_pairs(lm, pairs, name)
                records.append({"loop_mode": mode, "template": name, "score": score, "exact": exact})
    finally:
        lm.model.set_loop_mode(original)
    table = pd.DataFrame(records).sort_values("score", ascending=False, ignore_index=True)
    table["margin"] = table["score"].iloc[0] - table["score"]
    return table


def is_clear_winner(table: pd.DataFrame) -> bool:
    return len(table) < 2 or bool(table["margin"].iloc[1] >= CLEAR_MARGIN)


if __name__ == "__main__":  # python -m emojilm.probe SOURCE: the ranked table (the command line is in emojilm.cli)
    import sys

    from emojilm.cli import probe_main, run

    sys.exit(run(probe_main))
