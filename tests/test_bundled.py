"""The bundled demo model: it loads, it translates, and its model card's numbers reproduce."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import emojilm
from emojilm.checkpoint import BUNDLED_DIR
from emojilm.evaluate import accuracy_by_loops


@pytest.fixture(scope="module")
def lm():
    return emojilm.load("bundled")


def test_variant_is_recorded_not_guessed(lm):
    assert lm.info.mode_source == "recorded" and lm.info.template_source == "recorded"


def test_translates_the_model_card_example(lm):
    assert "🍕" in lm.translate("I love pizza").text


def test_card_accuracy_table_reproduces(lm):
    heldout = pd.read_json(BUNDLED_DIR / "heldout.jsonl", lines=True)
    card = pd.DataFrame(json.loads((BUNDLED_DIR / "eval.json").read_text()))
    table = accuracy_by_loops(lm, heldout, card["loops"].tolist())
    # Greedy decoding on CPU in fp32 is deterministic; allow a phrase or two for other CPUs' rounding.
    assert (table["hit"] - card["hit"]).abs().max() <= 2 / len(heldout)
    assert table["n"].tolist() == card["n"].tolist()


def test_more_loops_help(lm):
    card = pd.DataFrame(json.loads((BUNDLED_DIR / "eval.json").read_text())).set_index("loops")
    assert card.loc[1, "hit"] < card.loc[lm.n_loops, "hit"]
