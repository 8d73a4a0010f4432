"""The hand-written data in emojilm/data/, read back as the corpus builder uses it (no CLDR or WordNet needed)."""

from __future__ import annotations

import re

import pytest

from emojilm import handwritten
from emojilm.handwritten import everyday_words, inventory_choices, phrasing

# Per language: emoji lines, words and templates in its files, as the tables moved out of
# Python (tests/test_corpus.py checks that the corpus they build did not change). Update them
# with the data.
COUNTS = {
    "en": (537, 1430, 115), "fr": (262, 1225, 20), "de": (263, 1097, 20), "es": (263, 1336, 20), "it": (262, 1271, 20),
    "pt": (263, 1371, 20), "nl": (263, 1127, 20), "ru": (263, 1212, 20), "ja": (260, 1169, 20), "zh": (262, 1248, 20),
    "ko": (260, 1189, 20), "pl": (263, 1368, 16), "sv": (262, 1220, 16), "tr": (263, 1141, 16),
}  # fmt: skip


def test_every_language_has_its_files():
    folders = {entry.name for entry in handwritten.DATA.iterdir() if entry.is_dir()}
    assert folders == set(COUNTS)


@pytest.mark.parametrize("lang", COUNTS)
def test_files_read_back_whole(lang):
    words, templates = everyday_words(lang), phrasing(lang)["templates"]
    flat = [t for ts in templates.values() for t in ts] if lang == "en" else templates
    assert (len(words), sum(map(len, words.values())), len(flat)) == COUNTS[lang]
    # Lines keep their order, whole words, first word first; headings are no lines.
    assert next(iter(words)) == "😂"
    for char, listed in words.items():
        assert listed and char.strip() == char and not char.startswith("#"), (lang, char)
        assert all(word == word.strip() and word and not {"|", "\t"} & set(word) for word in listed), (lang, char)
    # A template places the word.
    assert all("{x}" in template or "{a}" in template for template in flat), lang


@pytest.mark.parametrize("lang", COUNTS)
def test_scenes_name_two_or_three_things(lang):
    scenes = phrasing(lang)["scenes"]
    assert len(scenes) >= 20 and len(set(scenes)) == len(scenes), lang
    for scene in scenes:
        slots = set(re.findall(r"\{(\w*)\}", scene))
        # x, y, z in order (a, b, c: the same with an article, in English), and no stray braces.
        named = {"xyzabc".index(slot) % 3 for slot in slots & set("xyzabc")}
        assert slots <= set("xyzabc" if lang == "en" else "xyz") and named in ({0, 1}, {0, 1, 2}), (lang, scene)
        assert scene.count("{") == scene.count("}") == len(re.findall(r"\{\w\}", scene)), (lang, scene)


def test_spot_entries():
    english = everyday_words("en")
    assert english["🍟"] == ["fries", "french fries", "chips"] and english["😂"][0] == "lol"
    assert list(english.items())[-1] == ("🆘", ["sos", "help"])
    assert everyday_words("fr")["😂"][:2] == ["mdr", "ptdr"] and everyday_words("ja")["🍕"] == ["ピザ"]
    assert everyday_words("ru")["🐶"][:2] == ["собака", "собаку"] and "ㅋㅋㅋ" in everyday_words("ko")["😂"]
    en = phrasing("en")
    assert {k: len(v) for k, v in en["templates"].items()} == {"thing": 61, "feel": 24, "any": 30}
    assert en["templates"]["thing"][1] == "I [love:❤️] {x}" and en["prefixes"][:4] == ["", "", "", "lol "]
    assert en["connectors"][0] == " and " and en["separator"] == " "
    french = phrasing("fr")
    assert french["templates"][0] == "j'[adore:❤️] {x}" and french["connectors"].count(" et ") == 2
    assert phrasing("ja")["separator"] == phrasing("zh")["separator"] == "" and phrasing("ko")["separator"] == " "


def test_inventory_choices():
    choices = inventory_choices()
    assert len(choices["categories"]) == 7 and "Food & Drink" in choices["categories"]
    assert len(choices["symbols"]) == 33 and {"🔥", "💯", "⚠️"} <= set(choices["symbols"])
    assert len(choices["countries"]) == 52 and choices["countries"][:3] == ["US", "GB", "CA"]
    assert all(len(code) == 2 and code.isupper() for code in choices["countries"])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("emoji words\n😂\tlol\n", "header"),
        ("emoji\twords\n# faces\n😂 lol | haha\n", r"xx/words.tsv:3: want an emoji, one tab"),
        ("emoji\twords\n😂\tlol\n\n😂\thaha\n", r"xx/words.tsv:4: 😂 has a line already"),
    ],
)
def test_a_bad_line_is_named(tmp_path, monkeypatch, text, error):
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "words.tsv").write_text(text, encoding="utf-8")
    monkeypatch.setattr(handwritten, "DATA", tmp_path)
    with pytest.raises(ValueError, match=error):
        everyday_words("xx")
