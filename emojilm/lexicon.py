"""Which words people use for which emoji, per language: the training corpus's vocabulary.

Training-time only: the app never imports this module. The sources, best first:

* everyday words written by hand, per language, for the emoji people use most
  ("fries" -> 🍟, "xmas" -> 🎄, "lol" -> 😂; "mdr", "с днём рождения", "ㅋㅋㅋ"),
  which no database lists (emojilm/data/<lang>/words.tsv; EVERYDAY is English's);
* CLDR annotations (Debian ``unicode-cldr-core``): a short name and keywords for
  every emoji in ~147 locales ("Pizza | Pizzastück | Pizzeria");
* the ``emoji`` package's names and aliases, and gemoji's aliases and tags (``emojis``);
* WordNet 3.0 (Debian ``wordnet-base``): synonyms of one-word English names
  ("automobile" for 🚗) and irregular plurals ("mice", "geese");
* ``wordfreq``: how often people use each word, which sets how often it is trained.

Each word stands for one emoji: the first source to claim it keeps it, so no two
rows of the corpus contradict each other. Keywords that CLDR gives to many emoji
("face", "animal") name none of them.

Install the data once: apt-get install unicode-cldr-core wordnet-base fortunes;
pip install wordfreq emoji emojis.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import emoji
from emojis.db.db import EMOJI_DB

from emojilm.handwritten import everyday_words, inventory_choices

CLDR_DIR = Path("/usr/share/unicode/cldr/common")
WORDNET_DIR = Path("/usr/share/wordnet")
VS16 = "\ufe0f"

# Languages the corpus covers besides English (CLDR annotations and wordfreq lists for each,
# hand-written words and phrases in emojilm/data/<lang>/).
OTHER_LANGUAGES = ("fr", "de", "es", "it", "pt", "nl", "ru", "ja", "zh", "ko", "pl", "sv", "tr")

# A CLDR keyword shared by more emoji than this names none of them...
MAX_KEYWORD_SHARE = 2
# ...unless it names a small family ("кот": the cat and its ten faces): then, in the
# languages without hand-written everyday words, it goes to the family's first
# everyday emoji, after every other source has had its say.
MAX_FAMILY_SHARE = 12

# Everyday English words for the emoji people use most, written by hand (data/en/words.tsv):
# chat words, plain names, plurals and verb forms that the databases lack. First word first.
EVERYDAY = everyday_words("en")


@dataclass
class Lexicon:
    """One language's words: word (case-folded) -> emoji, and how often people use each word."""

    lang: str
    emoji_of: dict[str, str] = field(default_factory=dict)
    source_of: dict[str, str] = field(default_factory=dict)
    frequency: dict[str, float] = field(default_factory=dict)  # wordfreq's Zipf scale, 0 (unknown) to ~7

    def claim(self, word: str, char: str, source: str) -> None:
        key = " ".join(word.casefold().replace("’", "'").split())
        # A word has a letter and at least two characters (CJK: one): "4" names no clock.
        wordlike = any(c.isalpha() for c in key) and (len(key) >= 2 or ord(key[0]) > 0x2E80)
        if wordlike and key not in self.emoji_of and len(key) <= 40:
            self.emoji_of[key] = char
            self.source_of[key] = source

    def __len__(self) -> int:
        return len(self.emoji_of)


def unqualified(char: str) -> str:
    return char.replace(VS16, "")


@cache
def inventory() -> dict[str, str]:
    """The emoji the corpus uses: fully-qualified emoji keyed by their form without U+FE0F.

    Everyday categories, no skin tones, no gendered or family ZWJ variants,
    a few symbols and the flags of well-known countries.
    """
    choices = inventory_choices()  # data/inventory.json: where the model spends its capacity
    categories, symbols = set(choices["categories"]), set(choices["symbols"])
    countries = {"".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code) for code in choices["countries"]}
    kept = {}
    for entry in EMOJI_DB:
        char = entry.emoji
        data = emoji.EMOJI_DATA.get(char)
        if data is None or data["status"] != emoji.STATUS["fully_qualified"]:
            continue
        if any(0x1F3FB <= ord(c) <= 0x1F3FF for c in char) or ("\u200d" in char and char not in EVERYDAY):
            continue
        if 0x1F550 <= ord(char[0]) <= 0x1F567:  # clock faces: their keywords are bare numbers
            continue
        if entry.category in categories or char in symbols or char in countries:
            kept[unqualified(char)] = char
    for char in EVERYDAY:
        if char in emoji.EMOJI_DATA:
            kept.setdefault(unqualified(char), char)
    return kept


def _cldr_annotations(lang: str) -> Iterable[tuple[str, str, list[str]]]:
    """(emoji, short name, keywords) from CLDR's annotations and derived annotations for `lang`."""
    for folder in ("annotations", "annotationsDerived"):
        path = CLDR_DIR / folder / f"{lang}.xml"
        if not path.is_file():
            continue
        names: dict[str, str] = {}
        keywords: dict[str, list[str]] = {}
        for node in ET.parse(path).getroot().iter("annotation"):
            text = (node.text or "").strip()
            if not text or text == "↑↑↑":
                continue
            if node.get("type") == "tts":
                names[node.get("cp")] = text
            else:
                keywords[node.get("cp")] = [k.strip() for k in text.split("|") if k.strip()]
        for cp in dict.fromkeys([*names, *keywords]):  # document order: a set's order changes per process
            yield cp, names.get(cp, ""), keywords.get(cp, [])


def _short_forms(name: str) -> list[str]:
    """The everyday part of a CLDR name: 'flag: France' -> 'France', 'pile of poo' stays."""
    if ":" in name:  # "flag: France", "Flagge: Frankreich", "drapeau : France"
        head, _, tail = name.partition(":")
        return [tail.strip()] if "flag" in head.casefold() or len(head) < 12 else [name]
    return [name]


def _clean_alias(alias: str) -> str:
    return alias.strip(":").replace("_", " ").strip()


@cache
def _wordnet_nouns() -> tuple[dict[str, list[str]], dict[str, str]]:
    """WordNet 3.0: lemma -> synonyms in its first (most common) sense, and irregular plural -> singular."""
    first_sense: dict[str, int] = {}
    for line in (WORDNET_DIR / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        parts = line.split()
        synset_count, pointer_count = int(parts[2]), int(parts[3])
        offsets = parts[6 + pointer_count :]
        if synset_count:
            first_sense[parts[0]] = int(offsets[0])
    data = (WORDNET_DIR / "data.noun").read_bytes()
    synonyms = {}
    for lemma, offset in first_sense.items():
        line = data[offset : data.index(b"\n", offset)].decode("latin-1").split()
        count = int(line[3], 16)
        words = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in line[4 : 4 + 2 * count : 2]]
        synonyms[lemma.replace("_", " ")] = words
    plurals = {}
    for line in (WORDNET_DIR / "noun.exc").read_text(encoding="latin-1").splitlines():
        plural, singular, *_ = line.split()
        plurals.setdefault(singular.replace("_", " "), plural.replace("_", " "))
    return synonyms, plurals


def plural(noun: str) -> str:
    """English plural: WordNet's irregular forms, else the spelling rules."""
    irregular = _wordnet_nouns()[1].get(noun)
    if irregular:
        return irregular
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


@cache
def _frequencies(lang: str) -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict(lang)


def _zipf(word: str, lang: str) -> float:
    """Zipf frequency (log10 per billion words) of the rarest of its words; a plain lookup,
    so no tokenizer (MeCab, jieba) is needed for Japanese, Chinese or Korean."""
    table = _frequencies(lang)
    rarest = min(table.get(part, 0.0) for part in word.split()) if word.split() else 0.0
    return math.log10(rarest * 1e9) if rarest > 0 else 0.0


def build_lexicon(lang: str) -> Lexicon:
    """Every word of `lang` the sources give for the inventory's emoji, each owned by one emoji."""
    kept = inventory()
    lexicon = Lexicon(lang)
    annotations = [(kept[unqualified(cp)], name, kws) for cp, name, kws in _cldr_annotations(lang)
                   if unqualified(cp) in kept]  # fmt: skip
    for char, words in everyday_words(lang).items():
        for word in words:
            lexicon.claim(word, char, "everyday")
    for char, name, _ in annotations:
        for form in _short_forms(name):
            lexicon.claim(form, char, "cldr-name")
    if lang in emoji.LANGUAGES and lang != "en":
        emoji.config.load_language(lang)
    for char in kept.values():
        data = emoji.EMOJI_DATA.get(char, {})
        if lang in data:
            lexicon.claim(_clean_alias(data[lang]), char, "emoji-name")
    if lang == "en":
        gemoji = {entry.emoji: entry for entry in EMOJI_DB}
        for char in kept.values():
            aliases = emoji.EMOJI_DATA.get(char, {}).get("alias", []) + (gemoji[char].aliases if char in gemoji else [])
            for alias in aliases:
                lexicon.claim(_clean_alias(alias), char, "alias")
    # Keywords and tags: only those few emoji share.
    shared: dict[str, set[str]] = {}
    for char, _, keywords in annotations:
        for keyword in keywords:
            shared.setdefault(keyword.casefold(), set()).add(char)
    if lang == "en":
        for entry in EMOJI_DB:
            if unqualified(entry.emoji) in kept:
                for tag in entry.tags:
                    shared.setdefault(_clean_alias(tag).casefold(), set()).add(kept[unqualified(entry.emoji)])
    for char, _, keywords in annotations:
        for keyword in keywords:
            if len(shared[keyword.casefold()]) <= MAX_KEYWORD_SHARE:
                lexicon.claim(keyword, char, "cldr-keyword")
    if lang == "en":
        for entry in EMOJI_DB:
            char = kept.get(unqualified(entry.emoji))
            for tag in entry.tags if char else []:
                if len(shared[_clean_alias(tag).casefold()]) <= MAX_KEYWORD_SHARE:
                    lexicon.claim(_clean_alias(tag), char, "tag")
        _add_wordnet_forms(lexicon)
    if lang != "en":
        _add_family_keywords(lexicon, annotations, shared)
    lexicon.frequency = {word: _zipf(word, lang) for word in lexicon.emoji_of}
    return lexicon


def _add_family_keywords(lexicon: Lexicon, annotations: list, shared: dict[str, set[str]]) -> None:
    """Keywords a few emoji share, for the first of them (CLDR order) that people use every day."""
    for char, _, keywords in annotations:
        for keyword in keywords:
            family = shared[keyword.casefold()]
            if MAX_KEYWORD_SHARE < len(family) <= MAX_FAMILY_SHARE and char in EVERYDAY:
                lexicon.claim(keyword, char, "family-keyword")


def _add_wordnet_forms(lexicon: Lexicon) -> None:
    """Synonyms of one-word names in their first WordNet sense, and plurals of every one-word noun."""
    synonyms, _ = _wordnet_nouns()
    for word, char in list(lexicon.emoji_of.items()):
        if " " in word or lexicon.source_of[word] not in ("everyday", "cldr-name", "emoji-name"):
            continue
        for synonym in synonyms.get(word, []):
            if synonym != word and _zipf(synonym, "en") >= 2.5:
                lexicon.claim(synonym, char, "wordnet")
    for word, char in list(lexicon.emoji_of.items()):
        if word.isalpha() and word in synonyms and len(word) > 2 and not word.endswith("s"):
            lexicon.claim(plural(word), char, "plural")
