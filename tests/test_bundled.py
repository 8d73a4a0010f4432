"""The bundled demo model: it loads, and its model card's tables reproduce."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import emojilm
from emojilm.evaluate import (
    FRESH_SET,
    accuracy_by_loops,
    emoji_units,
    fresh_table,
    load_eval,
    natural_outputs,
    natural_table,
)
from emojilm.paths import BUNDLED_DIR, EVAL_DIR
from emojilm.space import EXAMPLES


@pytest.fixture(scope="module")
def lm():
    return emojilm.load("bundled")


def test_variant_is_recorded_not_guessed(lm):
    assert lm.info.mode_source == "recorded" and lm.info.template_source == "recorded"


def test_files_the_app_loads_stay_small():
    loaded = [BUNDLED_DIR / "model.safetensors", BUNDLED_DIR / "params.json"]
    assert sum(path.stat().st_size for path in loaded) <= 25 * 2**20


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((EVAL_DIR / "results.json").read_text(encoding="utf-8"))


def test_card_natural_table_reproduces(lm, card):
    expected = pd.DataFrame(card["by_set"])
    loops = sorted(set(expected["loops"]) - {0})
    table = natural_table(natural_outputs(lm, load_eval(), loops))
    assert table[["loops", "model", "set", "n"]].equals(expected[["loops", "model", "set", "n"]])
    # Greedy decoding on CPU in fp32 is deterministic; allow a row or two for other CPUs' rounding.
    for column in ("hit", "all", "precise"):
        assert ((table[column] - expected[column]).abs() <= 2 / table["n"] + 1e-9).all(), column


def test_card_fresh_table_reproduces(lm, card):
    """The fresh set's columns of the card: its English texts and other languages apart."""
    expected = pd.DataFrame(card["fresh"]["by_part"])
    loops = sorted(set(expected["loops"]) - {0})
    table = fresh_table(natural_outputs(lm, load_eval(sets=(FRESH_SET,)), loops))
    assert table[["loops", "part", "n"]].equals(expected[["loops", "part", "n"]])
    for column in ("hit", "all", "precise"):
        assert ((table[column] - expected[column]).abs() <= 2 / table["n"] + 1e-9).all(), column


def test_card_template_table_reproduces(lm):
    heldout = pd.read_json(BUNDLED_DIR / "heldout.jsonl", lines=True)
    card = pd.DataFrame(json.loads((BUNDLED_DIR / "heldout.json").read_text()))
    table = accuracy_by_loops(lm, heldout, card["loops"].tolist())
    assert table["n"].tolist() == card["n"].tolist()
    assert (table["hit"] - card["hit"]).abs().max() <= 2 / len(heldout)


# What a person would accept for each page example (written here, not taken from the model).
SENSIBLE = {
    "I love pizza": "🍕❤️😍",
    "It is raining again and I am so sad": "🌧️☔💧😢😭☹️😞🙁",
    "Happy birthday to my dog": "🎂🎉🥳🎁🐶🐕",
    "We won the football game!": "⚽🏈🏆🥇🎉",
    "what a sunny day": "☀️🌞😎🌤️⛅",
    "I need coffee": "☕",
    "going for a run": "🏃🏃‍♀️🏃‍♂️👟",
    "time for bed": "🛏️😴💤🌙🛌",
    "so much snow": "❄️☃️⛄🌨️",
    "Ich liebe Pizza": "🍕❤️",
}


def test_the_loops_visibly_refine_most_page_examples(lm):
    """At least half of the page's examples answer otherwise after one loop than after all of them."""
    changed = [text for text in EXAMPLES if lm.translate(text, n_loops=1).text != lm.translate(text).text]
    assert len(changed) >= len(EXAMPLES) / 2, changed


def test_every_page_example_gets_a_sensible_answer(lm):
    assert set(SENSIBLE) == set(EXAMPLES)
    for text in EXAMPLES:
        answer = lm.translate(text, max_new_tokens=32).text
        assert set(emoji_units(answer)) & set(emoji_units(SENSIBLE[text])), (text, answer)
