"""emojilm.variant: the order in which each half of the variant is decided, and the probe's cache.

The order is checked with a stand-in probe that reports chosen verdicts (tests/test_probe.py
checks the real probe on trained models); the cache with the real probe on a tiny random model.
"""

from __future__ import annotations

import pytest

import emojilm
import emojilm.variant
from emojilm.config import DEFAULT_GATE_MODE, DEFAULT_TRUE_MODE, GATE_MODES, TRUE_READINGS, ModelArgs
from emojilm.layout import Layout
from emojilm.probe import StageResult
from emojilm.prompt import CANDIDATE_TEMPLATES, DEFAULT_TEMPLATE
from emojilm.variant import Variant, cached_probe, check_pins, configured_variant, decide_variant
from tests.conftest import tiny_params
from tests.tiny_lms import tiny_lm

NEWLINE, TAB, COLON = (CANDIDATE_TEMPLATES[name] for name in ("newline", "tab", "colon"))
OURS = {"emojilm": {"prompt_template": TAB}}  # what this project's training writes into params.json


def layout(loop_mode: str, open_modes: tuple[str, ...] = ()) -> Layout:
    """What read_layout gives the variant: the loop mode it read, and what it left open."""
    return Layout({}, ModelArgs(loop_mode=loop_mode), [], open_modes)


class StandIn:
    """A probe that reports the verdicts given (half -> (winner, clear)) for the halves left open,
    and keeps the variants it was asked about."""

    def __init__(self, **verdicts: tuple[str, bool]) -> None:
        self.verdicts, self.asked = verdicts, []

    def __call__(self, variant: Variant) -> dict[str, StageResult]:
        self.asked.append(variant)
        open_halves = {"template": variant.open_template, "loop_mode": bool(variant.open_modes)}
        return {
            half: StageResult(winner, clear, 0.2 if clear else 0.01, 2.0 if clear else 1.05)
            for half, (winner, clear) in self.verdicts.items()
            if open_halves[half]
        }


def sources(variant: Variant) -> tuple[str, str, str, str]:
    return variant.loop_mode, variant.mode_source, variant.template, variant.template_source


def test_open_halves_are_the_default_then_the_probes_clear_picks():
    configured = configured_variant({}, layout(DEFAULT_TRUE_MODE, TRUE_READINGS))
    assert sources(configured) == (DEFAULT_TRUE_MODE, "default", NEWLINE, "default")
    assert (configured.open_modes, configured.open_template) == (TRUE_READINGS, True)

    probe = StandIn(template=("tab", True), loop_mode=("inject_embeddings", True))
    variant = decide_variant(configured, probe=probe)
    assert sources(variant) == ("inject_embeddings", "probe", TAB, "probe")
    assert probe.asked == [configured]  # scored from the default, every open half at once
    assert "template probe: clear winner 'tab'" in variant.probe_note
    assert "loop mode probe: clear winner 'inject_embeddings'" in variant.probe_note


def test_a_pin_beats_everything_and_is_what_the_probe_scores_the_other_half_under():
    configured = configured_variant({}, layout(DEFAULT_TRUE_MODE, TRUE_READINGS))
    probe = StandIn(template=("tab", True), loop_mode=("inject_embeddings", True))
    variant = decide_variant(configured, loop_mode="none", probe=probe)
    assert sources(variant) == ("none", "override", TAB, "probe")
    [asked] = probe.asked
    assert (asked.loop_mode, asked.open_modes, asked.open_template) == ("none", (), True)

    both = StandIn(template=("tab", True), loop_mode=("inject_embeddings", True))
    pinned = decide_variant(configured, loop_mode="add_skip_first", template="colon", probe=both)
    assert sources(pinned) == ("add_skip_first", "override", COLON, "override")
    assert both.asked == [] and pinned.probe_note == ""  # nothing left open: the probe is not asked


def test_what_params_json_says_beats_the_probe():
    probe = StandIn(template=("tab", True), loop_mode=("inject_embeddings", True))
    stated = decide_variant(configured_variant({}, layout("add_skip_first")), probe=probe)
    assert sources(stated) == ("add_skip_first", "config", TAB, "probe")  # only the template was open
    assert probe.asked[0].open_modes == ()

    # Our own checkpoints: their mode and template are recorded, a mode the config leaves open
    # keeps the default (they were trained in the mode they load in), and nothing is probed.
    probe = StandIn(template=("colon", True), loop_mode=("inject_embeddings", True))
    assert sources(decide_variant(configured_variant(OURS, layout("add")), probe=probe)) == (
        "add", "recorded", TAB, "recorded"
    )  # fmt: skip
    open_mode = decide_variant(configured_variant(OURS, layout(DEFAULT_GATE_MODE, GATE_MODES[:4])), probe=probe)
    assert sources(open_mode) == (DEFAULT_GATE_MODE, "default", TAB, "recorded")
    assert probe.asked == []


def test_an_unclear_probe_keeps_the_default_and_says_why():
    configured = configured_variant({}, layout(DEFAULT_GATE_MODE, GATE_MODES[:4]))
    probe = StandIn(template=("tab", False), loop_mode=("gated_mix", False))
    variant = decide_variant(configured, probe=probe)
    assert sources(variant) == (DEFAULT_GATE_MODE, "default", NEWLINE, "default")
    lines = variant.probe_note.splitlines()
    assert len(lines) == 2 and all("no clear winner" in line and "clear needs 1.5x" in line for line in lines)
    assert "'gated_mix'" in variant.probe_note  # the runner-up that did not win clearly is named

    skipped = decide_variant(configured, probe=None)  # probe=False in load
    assert sources(skipped) == sources(variant) and skipped.probe_note == ""


def test_pins_are_checked_before_anything_else():
    check_pins(None, None)
    check_pins("gated", "{text} ~ ")
    with pytest.raises(ValueError, match="loop_mode must be one of"):
        check_pins("sideways", None)
    with pytest.raises(ValueError, match="exactly once"):
        check_pins(None, "no slot")
    with pytest.raises(ValueError, match="loop_mode must be one of"):
        emojilm.load("no-such/model-anywhere", loop_mode="sideways")  # refused before any download


def test_the_probe_runs_once_per_weights_and_search(make_checkpoint, monkeypatch):
    folder, _ = make_checkpoint(tiny_params(loop_residual=True))
    model = emojilm.load(folder, probe=False).model
    runs = []
    choose = emojilm.variant.choose_variant

    def counted(*args, **kwargs):
        runs.append(kwargs["mode"])
        return choose(*args, **kwargs)

    monkeypatch.setattr(emojilm.variant, "choose_variant", counted)
    configured = configured_variant({}, layout(DEFAULT_TRUE_MODE, TRUE_READINGS))
    first = decide_variant(configured, probe=cached_probe(model, folder))
    again = decide_variant(configured, probe=cached_probe(model, folder))
    assert runs == [DEFAULT_TRUE_MODE], "the second decision did not read the first one's cached stages"
    assert again == first and "no clear winner" in first.probe_note  # random weights tell no variant apart
    assert model.loop_mode == DEFAULT_TRUE_MODE  # the probe leaves the model as it found it

    decide_variant(configured, loop_mode="none", probe=cached_probe(model, folder))
    assert runs == [DEFAULT_TRUE_MODE, "none"]  # a pin makes another search

    cached = emojilm.variant._cache_path(folder, configured)
    assert cached.is_file()
    cached.write_text("not json")
    assert decide_variant(configured, probe=cached_probe(model, folder)) == first
    assert runs == [DEFAULT_TRUE_MODE, "none", DEFAULT_TRUE_MODE]  # an unreadable cache: probed again


def test_set_variant_pins_in_place_and_with_variant_pins_a_twin():
    lm = tiny_lm("add")
    twin = lm.with_variant("add_skip_first", "tab")
    assert (twin.model.loop_mode, twin.info.mode_source, twin.info.template, twin.template) == (
        "add_skip_first", "override", "tab", TAB
    )  # fmt: skip
    assert (lm.model.loop_mode, lm.info.mode_source, lm.info.template) == ("add", "test", DEFAULT_TEMPLATE)
    assert twin.model.layers is lm.model.layers  # the weights are shared
    lm.set_variant(template="colon")
    assert (lm.model.loop_mode, lm.info.mode_source) == ("add", "test")
    assert (lm.template, lm.info.template, lm.info.template_source) == (COLON, "colon", "override")
