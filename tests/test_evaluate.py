"""The natural evaluation: its hand-written set, how a row is scored, and the dictionary baseline."""

from __future__ import annotations

import pandas as pd
import pytest

from emojilm.evaluate import DictionaryLookup, emoji_units, load_eval, natural_table, score
from emojilm.space import EXAMPLES


@pytest.fixture(scope="module")
def natural() -> pd.DataFrame:
    return load_eval()


def test_the_set_has_what_the_card_claims(natural):
    sizes = natural.groupby("set").size()
    assert sizes["phrases"] >= 300 and sizes["words"] >= 300 and sizes["languages"] >= 120
    other = natural[natural["set"] == "languages"]
    assert other["lang"].nunique() >= 8 and "en" not in set(other["lang"])
    assert {"ru", "ja", "zh", "ko"} & set(other["lang"])  # non-Latin scripts
    # Unique within a set; a single word may be both an everyday phrase and one of the words.
    assert not natural.assign(key=natural["text"].str.casefold()).duplicated(["set", "key"]).any()
    assert (natural[natural["set"] == "words"]["text"].str.split().str.len() <= 3).all()


def test_every_row_lists_real_emoji(natural):
    for accept in natural["accept"]:
        assert 1 <= len(accept) <= 3
        for group in accept:
            assert group and all(len(emoji_units(e)) == 1 for e in group), group


def test_page_examples_are_not_evaluation_texts(natural):
    assert not {e.casefold() for e in EXAMPLES} & set(natural["text"].str.casefold())


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("🍕❤️", ["🍕", "❤"]),
        ("🇫🇷🇩🇪", ["🇫🇷", "🇩🇪"]),
        ("👍🏽 ok", ["👍🏽"]),
        ("👨‍👩‍👧!", ["👨\u200d👩\u200d👧"]),
        ("1️⃣#️⃣", ["1\u20e3", "#\u20e3"]),
        ("plain text", []),
    ],
)
def test_emoji_units_keep_one_picture_whole(text, units):
    assert emoji_units(text) == units


@pytest.mark.parametrize(
    ("output", "hit", "every", "precise"),
    [
        ("☕", True, False, True),
        ("☕🌅", True, True, True),
        ("☀☕", True, True, True),  # a missing variation selector is no mistake
        ("☕🍩", True, False, False),
        ("🍩", False, False, False),
        ("", False, False, False),
    ],
)
def test_score(output, hit, every, precise):
    assert score(output, [["☕"], ["🌅", "☀️"]]) == {"hit": hit, "all": every, "precise": precise}


def test_dictionary_lookup_finds_names_and_name_words():
    lookup = DictionaryLookup()
    # "love" is no name, but a word of "love hotel", the shortest name holding it
    assert lookup("I love pizza") == "🏩🍕"
    assert lookup("hot dog and dogs") == "🌭🐕"
    assert lookup("so tired") == "😫"
    assert lookup("Ich liebe Pizza", "de") == "🍕"
    assert lookup("ピザが好き", "ja") == "🍕"
    assert lookup("nothing at all") == ""


def test_natural_table_orders_loops_then_baseline():
    rows = [
        {"set": s, "model": m, "loops": k, "hit": h, "all": h, "precise": h}
        for s in ("phrases", "words")
        for m, k, h in (("2 loops", 2, 1.0), ("1 loops", 1, 0.0), ("dictionary lookup", 0, 0.5))
    ]
    table = natural_table(pd.DataFrame(rows))
    assert table["loops"].tolist() == [1, 1, 2, 2, 0, 0]
    assert table["n"].eq(1).all() and table["hit"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.5, 0.5]
