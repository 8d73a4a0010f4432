"""The training corpus: its table, determinism, held-out split and targets, and load_pairs."""

from __future__ import annotations

import re

import emoji
import pandas as pd
import pytest
from emojis.db.db import EMOJI_DB

from emojilm.corpus import COLUMNS, PHRASES, TOPIC_STARTS, build_corpus, load_pairs, main

LANGUAGES = ["en", "de", "ja"]


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return build_corpus(seed=0, languages=LANGUAGES)


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).split())


def test_columns_and_values(corpus):
    assert list(corpus.columns) == COLUMNS
    for column in COLUMNS:
        assert pd.api.types.is_string_dtype(corpus[column]), column
        assert corpus[column].notna().all() and (corpus[column] != "").all(), column
    assert set(corpus["kind"]) == {"name", "phrase", "combo", "sentence"}
    assert set(corpus["split"]) == {"train", "heldout"}
    assert set(corpus["lang"]) == set(LANGUAGES)
    assert 100_000 < len(corpus) < 300_000
    assert corpus["text"].str.encode("utf-8").str.len().max() <= 120
    # One target per text, even ignoring case and punctuation.
    assert corpus["text"].map(normalised).is_unique


def test_same_seed_same_corpus(corpus):
    assert build_corpus(seed=0, languages=LANGUAGES).equals(corpus)


def test_other_seed_other_order_same_split():
    first, second = (build_corpus(seed=seed, languages=["fr", "ko"]) for seed in (0, 1))
    assert not first.equals(second)
    # The split depends on the text only, so no seed moves a text across it.
    both = first.merge(second, on="text", suffixes=("", "_other"))
    assert len(both) > 1_000 and (both["split"] == both["split_other"]).all()


def test_model_card_example(corpus):
    loves_pizza = corpus[corpus["text"].str.casefold().str.contains("love pizza")]
    assert "🍕❤️" in set(loves_pizza["emoji"])
    assert corpus["emoji"][corpus["text"] == "pizza"].tolist() == ["🍕"]


def test_targets_are_one_to_four_emoji(corpus):
    counts = {}
    for target in corpus["emoji"].unique():
        found = [match["emoji"] for match in emoji.emoji_list(target)]
        assert "".join(found) == target, f"{target!r} is not only emoji"
        counts[target] = len(found)
    assert corpus["emoji"].map(counts).between(1, 4).all()
    assert (corpus["emoji"][corpus["kind"] == "combo"].map(counts) >= 2).all()


def test_no_skin_tones_and_few_flags(corpus):
    targets = "".join(corpus["emoji"])
    assert not any(0x1F3FB <= ord(c) <= 0x1F3FF for c in targets)
    flags = {e for e in set(corpus["emoji"]) if all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in e)}
    assert 20 < len(flags) < 100


def test_heldout_is_disjoint_from_train(corpus):
    train = corpus[corpus["split"] == "train"]
    heldout = corpus[corpus["split"] == "heldout"]
    assert not set(train["text"]) & set(heldout["text"])
    assert not set(train["text"].map(normalised)) & set(heldout["text"].map(normalised))
    assert (heldout["kind"] != "name").all()
    generated = corpus[corpus["kind"] != "name"]
    assert 0.02 < len(heldout) / len(generated) < 0.04


def test_heldout_is_everyday_english_about_known_emoji(corpus):
    heldout = corpus[corpus["split"] == "heldout"]
    assert (heldout["lang"] == "en").sum() >= 1_000
    assert set(heldout["kind"]) == {"phrase", "combo", "sentence"}
    # Every emoji a held-out row asks for has a name in train.
    named = set(corpus["emoji"][corpus["kind"] == "name"])
    assert {m["emoji"] for target in heldout["emoji"].unique() for m in emoji.emoji_list(target)} <= named


def test_names_are_all_in_train(corpus):
    names = corpus[corpus["kind"] == "name"]
    assert (names["split"] == "train").all()
    assert {"pizza", "hot beverage", "coffee", "hundegesicht", "ピザ"} <= set(names["text"])


def test_several_languages_get_phrases(corpus):
    phrases = corpus[corpus["kind"] == "phrase"]
    assert {"en", "de"} <= set(phrases["lang"])
    assert any(text.casefold().startswith("ich liebe") for text in phrases["text"][phrases["lang"] == "de"])


def test_every_topic_has_templates_and_a_start():
    gemoji = {entry.emoji for entry in EMOJI_DB}
    assert set(TOPIC_STARTS) <= gemoji
    assert {topic for topic in TOPIC_STARTS.values() if topic} <= set(PHRASES)


def test_max_pairs_and_unknown_language():
    assert len(build_corpus(seed=0, languages=["ko"], max_pairs=500)) == 500
    with pytest.raises(ValueError, match="xx"):
        build_corpus(languages=["en", "xx"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_load_pairs_round_trip(tmp_path, suffix):
    table = pd.DataFrame(
        {
            "text": ["  I love pizza ", "100", "", "null", "   "],
            "emoji": ["🍕❤️", " 💯", "🙂", "🤷", "🙂"],
            "source": ["a", "b", "c", "d", "e"],
        }
    )
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    pairs = load_pairs(path)
    assert pairs.to_dict("list") == {
        "text": ["I love pizza", "100", "null"],
        "emoji": ["🍕❤️", "💯", "🤷"],
        "source": ["a", "b", "d"],
    }


def test_load_pairs_needs_text_and_emoji(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"text": ["hi"], "target": ["👋"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="emoji"):
        load_pairs(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_cli_writes_what_load_pairs_reads(tmp_path, capsys, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / "data" / f"corpus{suffix}"
    main(["--out", str(out), "--languages", "fr,ko", "--seed", "3", "--stats"])
    assert "wrote" in capsys.readouterr().out
    written = load_pairs(out)
    assert list(written.columns) == COLUMNS
    pd.testing.assert_frame_equal(written, build_corpus(seed=3, languages=["fr", "ko"]))
