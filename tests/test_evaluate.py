"""The natural evaluation: its hand-written sets, how a row is scored, and the dictionary baseline."""

from __future__ import annotations

import json
import unicodedata

import pandas as pd
import pytest

from emojilm.evaluate import (
    EVAL_DIR,
    FRESH_SET,
    DictionaryLookup,
    emoji_units,
    fresh_table,
    load_eval,
    natural_table,
    score,
)
from emojilm.space import EXAMPLES


@pytest.fixture(scope="module")
def natural() -> pd.DataFrame:
    return load_eval()


@pytest.fixture(scope="module")
def fresh() -> pd.DataFrame:
    return load_eval(sets=(FRESH_SET,))


def plain(text: str) -> str:
    """No case, punctuation or extra spaces: "Pizza!!" and "pizza" are the same text."""
    kept = "".join(c if unicodedata.category(c)[0] in "LNZ" else " " for c in text.casefold())
    return " ".join(kept.split())


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


def test_page_examples_are_not_evaluation_texts(natural, fresh):
    assert not {plain(e) for e in EXAMPLES} & set(pd.concat([natural, fresh])["text"].map(plain))


def test_the_fresh_set_is_its_own_set_in_the_natural_sets_languages(natural, fresh):
    assert len(fresh) == 150 and set(fresh["set"]) == {FRESH_SET} and FRESH_SET not in set(natural["set"])
    sizes = fresh.groupby("lang").size()
    other = natural[natural["set"] == "languages"]
    assert set(sizes.index) == set(other["lang"]) | {"en"} and len(sizes) >= 11
    assert sizes["en"] >= 80 and (sizes.drop("en") >= 5).all()
    assert fresh["topic"].notna().all() and (fresh["text"].str.strip() != "").all()
    # Rows as the natural set writes them: other languages carry their English meaning.
    for line in (EVAL_DIR / f"{FRESH_SET}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        assert set(row) == {"text", "lang", "accept", "topic"} | ({"english"} if row["lang"] != "en" else set()), row


def test_fresh_rows_list_real_emoji(fresh):
    emoji = pytest.importorskip("emoji")
    for text, accept in zip(fresh["text"], fresh["accept"], strict=True):
        assert 1 <= len(accept) <= 3, text
        for group in accept:
            assert group and len(group) == len(set(group)), (text, group)
            for e in group:
                assert len(emoji_units(e)) == 1 and emoji.is_emoji(e), (text, e)
                assert emoji.EMOJI_DATA[e]["status"] == emoji.STATUS["fully_qualified"], (text, e)


def test_no_fresh_text_repeats_another_hand_written_text(natural, fresh):
    texts = fresh["text"].map(plain)
    assert texts.is_unique
    assert not set(texts) & set(natural["text"].map(plain))


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


def test_fresh_table_keeps_english_and_other_languages_apart():
    rows = [
        {"set": FRESH_SET, "lang": lang, "model": m, "loops": k, "hit": h, "all": h, "precise": h}
        for lang, h in (("en", 1.0), ("de", 0.0), ("ja", 0.5))
        for m, k in (("1 loops", 1), ("dictionary lookup", 0))
    ]
    table = fresh_table(pd.DataFrame(rows))
    assert table[["loops", "set", "part", "n"]].values.tolist() == [
        [1, FRESH_SET, "en", 1],
        [1, FRESH_SET, "other", 2],
        [0, FRESH_SET, "en", 1],
        [0, FRESH_SET, "other", 2],
    ]
    assert table["hit"].tolist() == [1.0, 0.25, 1.0, 0.25]


def test_main_reports_the_fresh_set_apart(natural, monkeypatch, tmp_path, capsys):
    """The command's tables and JSON, with a stand-in for the model: the natural set's as before, the fresh set's
    after them, by part."""
    import emojilm
    from emojilm import evaluate

    class Stub:
        n_loops = 2

    monkeypatch.setattr(emojilm, "load", lambda *args, **kwargs: Stub())
    monkeypatch.setattr(evaluate, "greedy_by_loops", lambda lm, texts, loops: [["🍕"] * len(loops) for _ in texts])
    evaluate.main(["--json", str(tmp_path / "results.json")])
    printed = capsys.readouterr().out
    assert f"natural set: {len(natural)} hand-written texts" in printed
    assert "fresh set: 150 hand-written texts" in printed
    tables = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert {row["set"] for row in tables["by_set"]} == {"phrases", "words", "languages"}
    parts = pd.DataFrame(tables["fresh"]["by_part"])
    assert parts[["loops", "part"]].values.tolist() == [
        [1, "en"],
        [1, "other"],
        [2, "en"],
        [2, "other"],
        [0, "en"],
        [0, "other"],
    ]
    assert parts.groupby("loops")["n"].sum().eq(150).all() and set(parts["set"]) == {FRESH_SET}
    assert len({row["lang"] for row in tables["fresh"]["by_language"]}) >= 11


def test_natural_table_orders_loops_then_baseline():
    rows = [
        {"set": s, "model": m, "loops": k, "hit": h, "all": h, "precise": h}
        for s in ("phrases", "words")
        for m, k, h in (("2 loops", 2, 1.0), ("1 loops", 1, 0.0), ("dictionary lookup", 0, 0.5))
    ]
    table = natural_table(pd.DataFrame(rows))
    assert table["loops"].tolist() == [1, 1, 2, 2, 0, 0]
    assert table["n"].eq(1).all() and table["hit"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.5, 0.5]
