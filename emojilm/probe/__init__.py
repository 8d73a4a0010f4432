"""The variant probe: which loop mode and prompt template does a checkpoint expect?

The published checkpoint says `loop_residual: true` and nothing about its prompt
layout (docs/checkpoint.md, "Guessed"). A model run the way it was trained
predicts known answers far better than one run any other way, so we score
candidates by the log-likelihood of pairs whose answer is not in doubt.

`probe_variants` ranks a whole grid (the command line's table). `choose_variant`
is what loading uses (through emojilm.variant, which applies its clear picks): a
staged search (the template under the current mode, then the modes under that
template), pair by pair, that stops as soon as the verdict is settled, and says
whether each stage's pick wins clearly.

Everything here takes the model alone: its prompts are laid out with
emojilm.prompt and encoded with the byte tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch

from emojilm.model import LoopedTransformer
from emojilm.prompt import CANDIDATE_TEMPLATES, KNOWN_PAIRS, format_prompt, template_name
from emojilm.tokenizer import ByteTokenizer

# A pick is clear when the runner-up's loss (mean negative log p per answer byte) is at
# least CLEAR_RATIO times the winner's. A ratio, not a difference: a well-trained model's
# losses are tiny (a wrong residual reading costs ~0.01 nats/byte on tests/test_probe.py's tiny
# model, yet 1.5x or more), while random weights score ~ln 258 = 5.5 nats/byte for every variant (a ratio of ~1).
CLEAR_RATIO = 1.5

# What a load scores, cheapest first: a published-shape forward is slow on a CPU (prefill in
# docs/benchmarks.md), so a load scores short pairs one at a time (the card's example among them) and
# stops once the verdict is settled; the command line's full table scores all KNOWN_PAIRS.
LOADING_PAIRS = tuple(sorted((p for p in KNOWN_PAIRS if p[0] in ("I love pizza", "pizza", "my cat", "happy birthday")),
                             key=lambda pair: len(pair[0].encode()) + len(pair[1].encode())))  # fmt: skip
# A loading stage stops early when, after at least MIN_CLEAR_PAIRS pairs, one candidate wins
# clearly; or when, after any pair, every candidate's loss is within TIE_RATIO of the best:
# weights that cannot tell the variants apart (random ones score ~5.5 nats/byte everywhere)
# will not tell them apart on two more pairs, and the default stands either way.
MIN_CLEAR_PAIRS = 2
TIE_RATIO = 1.1

Progress = Callable[[int, int], None]  # (forwards run, forwards the search may run)


@torch.inference_mode()
def score_rows(model: LoopedTransformer, rows: Sequence[tuple[str, str, str]]) -> list[tuple[float, int, bool]]:
    """For each (template, text, answer) row, in one forward of the model as it is set:
    the summed log-probability of the answer bytes (EOS included), their number, and
    whether every one of them is the model's top choice under teacher forcing."""
    tok = ByteTokenizer()
    encoded = [(tok.encode(format_prompt(text, template), bos=True), tok.encode(answer, eos=True))
               for template, text, answer in rows]  # fmt: skip
    width = max(len(p) + len(a) for p, a in encoded)
    tokens = torch.full((len(encoded), width), tok.eos_id, dtype=torch.long)
    answer_mask = torch.zeros(len(encoded), width, dtype=torch.bool)
    for i, (prompt, answer) in enumerate(encoded):
        tokens[i, : len(prompt) + len(answer)] = torch.tensor(prompt + answer)
        answer_mask[i, len(prompt) : len(prompt) + len(answer)] = True
    device = model.tok_embeddings.weight.device
    tokens = tokens.to(device)
    logp = model(tokens).float().log_softmax(-1)[:, :-1]
    targets, mask = tokens[:, 1:], answer_mask[:, 1:].to(device)
    target_logp = torch.where(mask, logp.gather(-1, targets[..., None])[..., 0], 0.0)
    hit = (logp.argmax(-1) == targets) | ~mask
    return list(zip(target_logp.sum(-1).tolist(), mask.sum(-1).tolist(), hit.all(-1).tolist(), strict=True))


def score_pairs(model: LoopedTransformer, pairs: Sequence[tuple[str, str]], template: str) -> tuple[float, float]:
    """Mean log-probability per answer byte (EOS included) and the share of answers
    whose every byte is the model's top choice under teacher forcing."""
    scores = score_rows(model, [(template, text, answer) for text, answer in pairs])
    return sum(s[0] for s in scores) / sum(s[1] for s in scores), sum(s[2] for s in scores) / len(scores)


def probe_variants(
    model: LoopedTransformer,
    pairs: Sequence[tuple[str, str]] = KNOWN_PAIRS,
    modes: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score every candidate; a table ranked best first with columns
    loop_mode, template, score (mean log p per answer byte), exact, margin."""
    if modes is None:
        modes = model.loop_modes
    templates = list(templates or CANDIDATE_TEMPLATES)
    return _ranked([_score_variant(model, pairs, mode, name) for mode in modes for name in templates])


@contextmanager
def _in_mode(model: LoopedTransformer, mode: str) -> Iterator[None]:
    """Run the model in `mode` inside the block, then leave it as it was."""
    original = model.loop_mode
    try:
        model.set_loop_mode(mode)
        yield
    finally:
        model.set_loop_mode(original)


def _score_variant(model: LoopedTransformer, pairs, mode: str, template: str) -> dict:
    """One candidate's row: the model run in `mode` on `template` prompts."""
    with _in_mode(model, mode):
        score, exact = score_pairs(model, pairs, template)
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
    under: str = ""  # the other half of the variant it was scored under (a loop mode, or a template)

    def describe(self, what: str) -> str:
        verdict = "clear winner" if self.clear else "no clear winner"
        under = f" (under {self.under!r})" if self.under else ""
        return (f"{what} probe{under}: {verdict} {self.winner!r}, margin {self.margin:.3f} nats/byte "
                f"(runner-up loss {self.ratio:.2f}x; clear needs {CLEAR_RATIO}x)")  # fmt: skip

    def to_json(self) -> dict:
        return {"winner": self.winner, "clear": self.clear, "margin": self.margin, "ratio": min(self.ratio, 1e9),
                "under": self.under}  # fmt: skip


def choose_variant(
    model: LoopedTransformer,
    modes: Sequence[str] | None,
    probe_template: bool,
    *,
    mode: str,
    template: str,
    progress: Progress | None = None,
    pairs: Sequence[tuple[str, str]] = LOADING_PAIRS,
) -> dict[str, StageResult]:
    """Staged search from the variant (mode, template), a name or a literal:
    {"template": ..., "loop_mode": ...} for the stages that ran.

    The template is scored under `mode` (when probe_template), then `modes` (when
    given, at least two) under the template that won clearly, or `template`. When
    the templates had no clear winner and the modes have one other than `mode`, the
    templates are scored again under it: run in a wrong reading (a gate formula most
    of all), a model may tell no template apart. Each stage scores `pairs` one at a
    time and may stop early (MIN_CLEAR_PAIRS, TIE_RATIO). The model is left as it
    was found; applying a pick is the caller's (emojilm.variant).
    """
    template_names = list(CANDIDATE_TEMPLATES) if probe_template else []
    modes = list(modes or [])
    template = template_name(template)
    again = bool(template_names and modes)  # the templates may be scored a second time
    # A stage of templates runs one forward per pair (all templates at once), a stage of modes one per mode.
    search = _Search(model, pairs, progress, forwards=len(pairs) * (bool(template_names) + again + len(modes)))
    results = {}
    if template_names:
        results["template"] = _stage(search.stage([(mode, name) for name in template_names]), "template", mode)
        if results["template"].clear:
            template = results["template"].winner
    if modes:
        results["loop_mode"] = _stage(search.stage([(m, template) for m in modes]), "loop_mode", template)
        picked = results["loop_mode"]
        if again and not results["template"].clear and picked.clear and picked.winner != mode:
            table = search.stage([(picked.winner, name) for name in template_names])
            del results["template"]  # replaced, and listed after the stage it followed
            results["template"] = _stage(table, "template", picked.winner)
        elif again:
            search.expected -= len(pairs)  # the second template stage was not needed
    return results


class _Search:
    """Per-pair scores of (mode, template) candidates, each computed once, in as few forwards
    as the modes allow (candidates that share a mode share a forward)."""

    def __init__(
        self, model: LoopedTransformer, pairs: Sequence[tuple[str, str]], progress: Progress | None, forwards: int
    ) -> None:
        self.model, self.pairs, self.progress = model, list(pairs), progress
        self.scores: dict[tuple[str, str, tuple[str, str]], tuple[float, int, bool]] = {}
        self.done, self.expected = 0, forwards  # forwards run, and the most the search may still run in all

    def stage(self, candidates: list[tuple[str, str]]) -> pd.DataFrame:
        modes = list(dict.fromkeys(mode for mode, _ in candidates))
        planned, before = len(self.pairs) * len(modes), self.done
        for k, pair in enumerate(self.pairs, start=1):
            for mode in modes:
                self._score(mode, [t for m, t in candidates if m == mode and (m, t, pair) not in self.scores], pair)
            table = self._table(candidates, self.pairs[:k])
            if (k >= MIN_CLEAR_PAIRS and is_clear_winner(table)) or loss_ratio(table) < TIE_RATIO:
                break
        self.expected -= planned - (self.done - before)  # what this stage did not need
        return table

    def _score(self, mode: str, templates: list[str], pair: tuple[str, str]) -> None:
        if not templates:
            return
        with _in_mode(self.model, mode):
            rows = score_rows(self.model, [(template, *pair) for template in templates])
        self.scores.update({(mode, template, pair): row for template, row in zip(templates, rows, strict=True)})
        self.done += 1
        if self.progress:
            self.progress(self.done, max(self.expected, self.done))

    def _table(self, candidates: list[tuple[str, str]], pairs: list[tuple[str, str]]) -> pd.DataFrame:
        records = []
        for mode, template in candidates:
            rows = [self.scores[mode, template, pair] for pair in pairs]
            score = sum(r[0] for r in rows) / sum(r[1] for r in rows)
            records.append({"loop_mode": mode, "template": template, "score": score,
                            "exact": sum(r[2] for r in rows) / len(rows), "pairs": len(rows)})  # fmt: skip
        return _ranked(records)


def _ranked(records: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(records).sort_values("score", ascending=False, ignore_index=True)
    table["margin"] = table["score"].iloc[0] - table["score"]
    return table


def _stage(table: pd.DataFrame, column: str, under: str) -> StageResult:
    margin = float(table["margin"].iloc[1]) if len(table) > 1 else float("inf")
    return StageResult(str(table[column].iloc[0]), is_clear_winner(table), margin, loss_ratio(table), under)
