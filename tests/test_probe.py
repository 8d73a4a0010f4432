"""The variant probe recovers the loop mode and prompt template a checkpoint was trained with.

A tiny looped model is trained here, in a known mode and template, on a toy
text→emoji mapping that includes the probe's KNOWN_PAIRS, then saved the way the
published checkpoint is: `loop_residual: true` and no template on record.

Why the true mode is "add_skip_first": tiny models memorize their answers so well
that the residual carries (add, add_skip_first, inject_embeddings) give nearly the
same function, and the gaps between them are small in absolute terms (~0.01 nats
per answer byte). add_skip_first was the most clearly separated of them in trials
(over seeds 0-3 the runner-up, inject_embeddings, lost ≥ 1.5× the true mode's
log-loss), and it is not the default reading of `true` ("add"), so the probe has
to overrule the default to pass.

Models trained with a per-loop tensor (each gate formula of emojilm.model) are saved
the same way, their gates under a name the loader has never seen.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import emojilm
import emojilm.probe
from emojilm.config import DEFAULT_GATE_MODE, DEFAULT_TRUE_MODE, GATE_MODES, TRUE_READINGS, args_from_params
from emojilm.model import LoopedTransformer
from emojilm.probe import LOADING_PAIRS
from emojilm.prompt import DEFAULT_TEMPLATE, KNOWN_PAIRS
from tests.conftest import TINY, random_tokens, write_lingua_checkpoint
from tests.test_model import reference_loop_logits

TRUE_MODE, TRUE_TEMPLATE = "add_skip_first", "tab"
MODEL = {"dim": 32, "n_layers": 2, "n_heads": 4, "multiple_of": 16, "max_seqlen": 64, "n_loops": 3}
PAIRS = [
    *KNOWN_PAIRS,
    ("the sun", "☀️"),
    ("a dog", "🐶"),
    ("fire", "🔥"),
    ("good night", "🌙"),
    ("I am sad", "😢"),
    ("music", "🎵"),
    ("a red apple", "🍎"),
    ("go to the beach", "🏖️"),
    ("thank you", "🙏"),
    ("money", "💰"),
]


def training_batch():
    """BOS + text + TAB + answer + EOS per pair (laid out by hand), and a mask of the answer bytes."""
    rows = [([256, *f"{text}\t".encode()], [*answer.encode(), 257]) for text, answer in PAIRS]
    width = max(len(p) + len(a) for p, a in rows)
    tokens = torch.full((len(rows), width), 257)
    answer = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (prompt, reply) in enumerate(rows):
        tokens[i, : len(prompt) + len(reply)] = torch.tensor(prompt + reply)
        answer[i, len(prompt) : len(prompt) + len(reply)] = True
    return tokens, answer


@pytest.fixture(scope="module")
def trained_state():
    """Weights of a model trained in TRUE_MODE on TRUE_TEMPLATE prompts (seconds on one CPU thread)."""
    torch.manual_seed(0)
    return train(LoopedTransformer(args_from_params({**MODEL, "loop_residual": TRUE_MODE})))


def train(model: LoopedTransformer) -> dict[str, torch.Tensor]:
    """Train on the toy mapping until it is learnt; the weights."""
    tokens, answer = training_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits[answer[:, 1:]], tokens[:, 1:][answer[:, 1:]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, "the toy model did not learn its mapping"
    return {k: v.detach() for k, v in model.state_dict().items()}


def write_trained(folder, state, loop_residual=True):
    """The trained weights as a lingua checkpoint that records no template."""
    write_lingua_checkpoint(folder, {**MODEL, "loop_residual": loop_residual}, seed=0, state_override=state)
    return folder


def test_probe_ranks_the_true_variant_first(trained_state, tmp_path):
    lm = emojilm.load(write_trained(tmp_path / "ckpt", trained_state), probe=False)
    assert (lm.info.loop_mode, lm.info.mode_source, lm.info.template_source) == ("add", "default", "default")
    table = emojilm.probe.probe_variants(lm.model)
    best = table.iloc[0]
    assert (best["loop_mode"], best["template"]) == (TRUE_MODE, TRUE_TEMPLATE), table.head(6).to_string()
    assert best["exact"] == 1.0
    assert len(table) == 4 * 8  # every non-gated mode × every candidate template
    other_templates = table[table["template"] != TRUE_TEMPLATE]
    assert other_templates["margin"].min() > 0.1  # the template is not a close call
    assert lm.model.loop_mode == "add"  # the probe leaves the model as it found it


def count_probe_forwards(monkeypatch) -> list[str]:
    """Record the loop mode of every forward the probe runs."""
    modes = []
    score = emojilm.probe.score_rows

    def counted(model, *args, **kwargs):
        modes.append(model.loop_mode)
        return score(model, *args, **kwargs)

    monkeypatch.setattr(emojilm.probe, "score_rows", counted)
    return modes


def test_load_applies_the_probe_once(trained_state, tmp_path, monkeypatch):
    folder = write_trained(tmp_path / "ckpt", trained_state)
    forwards = count_probe_forwards(monkeypatch)
    first = emojilm.load(folder)
    assert (first.info.loop_mode, first.info.mode_source) == (TRUE_MODE, "probe")
    assert (first.info.template, first.info.template_source) == (TRUE_TEMPLATE, "probe")
    assert first.model.loop_mode == TRUE_MODE
    # staged: the templates under the default reading, all of them in one forward per pair; then
    # the other two readings of `true` under the winner ("add" under it is scored already)
    templates_stage = forwards[: forwards.index("add_skip_first")]
    assert templates_stage == ["add"] * len(templates_stage) and 1 <= len(templates_stage) <= len(LOADING_PAIRS)
    modes_stage = forwards[len(templates_stage) :]
    assert set(modes_stage) == {"add_skip_first", "inject_embeddings"}
    assert len(forwards) <= len(LOADING_PAIRS) * len(TRUE_READINGS)
    assert "clear winner 'tab'" in first.info.probe_note and "clear winner 'add_skip_first'" in first.info.probe_note

    forwards.clear()
    second = emojilm.load(folder)
    assert forwards == [], "the probe ran again instead of using its cached choice"
    assert (second.model.loop_mode, second.info.mode_source, second.info.template) == (TRUE_MODE, "probe", "tab")


@pytest.fixture
def recorded_wrong_mode(trained_state, tmp_path):
    """The trained weights with a wrong loop mode in the config (and still no template)."""
    return emojilm.load(write_trained(tmp_path / "ckpt", trained_state, loop_residual="none"))


def test_configured_mode_is_kept_and_only_the_template_probed(recorded_wrong_mode):
    lm = recorded_wrong_mode
    assert (lm.model.loop_mode, lm.info.loop_mode, lm.info.mode_source) == ("none", "none", "config")
    assert (lm.info.template, lm.info.template_source) == (TRUE_TEMPLATE, "probe")
    assert "mode probe" not in lm.info.probe_note


def test_progress_counts_forwards_up_to_a_shrinking_total(trained_state, tmp_path):
    lm = emojilm.load(write_trained(tmp_path / "ckpt", trained_state), probe=False)
    reports = []
    stages = emojilm.probe.choose_variant(
        lm.model, TRUE_READINGS, True, mode=lm.model.loop_mode, template=lm.template,
        progress=lambda done, total: reports.append((done, total)),
    )  # fmt: skip
    assert stages["template"].winner == TRUE_TEMPLATE and stages["loop_mode"].winner == TRUE_MODE
    assert [done for done, _ in reports] == list(range(1, len(reports) + 1))
    totals = [total for _, total in reports]
    # at most: the templates, the readings, the templates again (not needed here: the template won clearly)
    assert totals == sorted(totals, reverse=True) and totals[0] <= len(LOADING_PAIRS) * (2 + len(TRUE_READINGS))
    assert all(done <= total for done, total in reports)


def test_explicit_choice_skips_the_probe(trained_state, tmp_path, monkeypatch):
    forwards = count_probe_forwards(monkeypatch)
    lm = emojilm.load(write_trained(tmp_path / "ckpt", trained_state), loop_mode="inject_embeddings", template="colon")
    assert forwards == []
    assert (lm.model.loop_mode, lm.info.mode_source) == ("inject_embeddings", "override")
    assert (lm.info.template, lm.info.template_source) == ("colon", "override")


def test_pinned_template_probes_only_the_mode(trained_state, tmp_path, monkeypatch):
    forwards = count_probe_forwards(monkeypatch)
    lm = emojilm.load(write_trained(tmp_path / "ckpt", trained_state), template=TRUE_TEMPLATE)
    assert set(forwards) == set(TRUE_READINGS) and len(forwards) % len(TRUE_READINGS) == 0  # a pair = 3 forwards
    assert (lm.model.loop_mode, lm.info.mode_source) == (TRUE_MODE, "probe")


# ----------------------------------------------------------------------------- plain lingua checkpoints

RANDOM_MODEL = {**TINY, "n_loops": 2}


@pytest.mark.parametrize("loop_residual", [False, "absent"])
def test_false_or_absent_loop_residual_runs_plain_blocks_without_a_mode_probe(tmp_path, monkeypatch, loop_residual):
    section = {**RANDOM_MODEL, "loop_residual": loop_residual}
    if loop_residual == "absent":
        del section["loop_residual"]
    state = write_lingua_checkpoint(tmp_path / "ckpt", section, seed=3)
    forwards = count_probe_forwards(monkeypatch)
    pinned = emojilm.load(tmp_path / "ckpt", template="tab")
    assert forwards == [], "a pinned template and a mode the config states leave nothing to probe"
    assert (pinned.model.loop_mode, pinned.info.mode_source) == ("none", "config")

    tokens = random_tokens(2, 11, seed=4)
    expected = reference_loop_logits(state, section, "none", tokens, RANDOM_MODEL["n_loops"])[-1]
    torch.testing.assert_close(pinned.model(tokens).double(), expected, rtol=1e-4, atol=1e-4)

    unpinned = emojilm.load(tmp_path / "ckpt")
    assert forwards and set(forwards) == {"none"}, "only the template is probed, under the configured mode"
    assert unpinned.model.loop_mode == "none"


def test_random_weights_with_true_keep_the_default_and_say_why(tmp_path, monkeypatch):
    write_lingua_checkpoint(tmp_path / "ckpt", {**RANDOM_MODEL, "loop_residual": True}, seed=5)
    forwards = count_probe_forwards(monkeypatch)
    lm = emojilm.load(tmp_path / "ckpt")
    # every variant ties on the first pair, so each stage stops there: one forward for all
    # templates, then one per other reading of `true`
    assert forwards == ["add", "add_skip_first", "inject_embeddings"]
    assert (lm.model.loop_mode, lm.info.mode_source) == (DEFAULT_TRUE_MODE, "default")
    assert (lm.info.template, lm.info.template_source) == (DEFAULT_TEMPLATE, "default")
    note = lm.info.probe_note
    assert note.count("no clear winner") == 2, note
    margin = float(note.split("margin ")[1].split(" nats")[0])
    assert 0 <= margin < 0.5  # random weights cannot tell the variants apart


def test_clear_winner_is_a_loss_ratio():
    table = pd.DataFrame({"score": [-0.010, -0.016, -0.5]})
    assert emojilm.probe.loss_ratio(table) == pytest.approx(1.6)
    assert emojilm.probe.is_clear_winner(table)
    close = pd.DataFrame({"score": [-5.50, -5.52]})
    assert not emojilm.probe.is_clear_winner(close)
    assert emojilm.probe.is_clear_winner(pd.DataFrame({"score": [0.0, -0.1]}))  # a perfect winner


# ----------------------------------------------------------------------------- per-loop tensors

# Gates drawn from [-1, 1] at the start of training: with gates near one value the tiny model's
# readings come out nearly interchangeable (a runner-up within 1.2-1.7x in trials), while with
# signs that differ loop to loop each formula computes its own function (runner-up 6-590x over
# seeds 0-2, the true reading first every time).
GATE_INIT = (-1.0, 1.0)


@pytest.fixture(scope="module", params=GATE_MODES)
def gate_trained(request):
    """(gate mode, weights of a model trained in it on TRUE_TEMPLATE prompts, its gates [3, dim])."""
    torch.manual_seed(0)
    args = dataclasses.replace(args_from_params({**MODEL, "loop_residual": request.param}), loop_gate_shape=(3, 32))
    model = LoopedTransformer(args)
    with torch.no_grad():
        model.loop_gates.uniform_(*GATE_INIT)
    state = train(model)
    return request.param, state, state.pop("loop_gates")


def test_the_probe_recovers_the_gate_formula_a_model_was_trained_with(gate_trained, tmp_path):
    mode, state, gates = gate_trained
    stored = state | {f"res_gates.{t}": gates[t] for t in range(len(gates))}  # a ParameterList, name unknown
    write_lingua_checkpoint(tmp_path / "ckpt", {**MODEL, "use_residual": True}, seed=0, state_override=stored)
    lm = emojilm.load(tmp_path / "ckpt")
    assert lm.info.anatomy.candidates == GATE_MODES
    assert (lm.info.loop_mode, lm.info.mode_source, lm.model.loop_mode) == (mode, "probe", mode), lm.info.probe_note
    assert f"clear winner {mode!r}" in lm.info.probe_note
    assert lm.info.template == TRUE_TEMPLATE  # scored again under the reading found, where the default's told nothing


def test_random_weights_with_a_per_loop_tensor_keep_the_default_gate_and_say_why(tmp_path):
    gates = {f"loop_scale.{t}": torch.rand(32, generator=torch.Generator().manual_seed(t)) for t in range(2)}
    write_lingua_checkpoint(tmp_path / "ckpt", {**RANDOM_MODEL, "loop_residual": True}, seed=5, state_override=gates)
    lm = emojilm.load(tmp_path / "ckpt")
    assert (lm.model.loop_mode, lm.info.mode_source) == (DEFAULT_GATE_MODE, "default")
    assert lm.info.anatomy.candidates == GATE_MODES
    assert "loop mode probe (under 'newline'): no clear winner" in lm.info.probe_note
