"""Build the text -> emoji training corpus for the bundled Emoji-ByteLM model.

Training-time only: the app never imports this module. Every pair is derived
from two emoji databases that ship as Python packages, so the corpus builds
offline and is the same for the same seed:

* ``emoji``: CLDR names in 14 languages, and English aliases;
* ``emojis``: gemoji aliases, tags and categories, listed in Unicode order.

Four kinds of pairs:

* ``name``: every emoji under each of its names, e.g. "pizza" -> "🍕";
* ``phrase``: a short template around one everyday concept, e.g. "I love pizza" -> "🍕❤️";
* ``combo``: two or three concepts, e.g. "pizza and beer" -> "🍕🍺";
* ``sentence``: a feeling and one or two concepts,
  e.g. "I am so happy, we are going to the beach" -> "😊🏖️".

Each word stands for one emoji only, so no two rows contradict each other.
Rows are held out by a hash of their normalised text, so a held-out phrase is
never seen in training, not even with other capitals or punctuation.

Usage: python -m emojilm.corpus --out data/corpus.parquet [--seed 0] [--languages en,de] [--stats]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import emoji
import pandas as pd
from emojis.db.db import EMOJI_DB

COLUMNS = ["text", "emoji", "lang", "kind", "split"]
HELDOUT_FRACTION = 0.03
MAX_TEXT_BYTES = 120
# Combos and sentences: at most this many distinct fillings per pattern.
FILLINGS_PER_PATTERN = 8_000

# Gemoji lists emoji in Unicode order, so a topic is the run of emoji from its
# start up to the next start. The topic picks an emoji's templates; emoji in
# no topic (None) only get "name" rows.
TOPIC_STARTS: dict[str, str | None] = {
    "😀": None,
    "🏃": "activity",
    "🕴️": None,  # levitating suit, bunny ears, steamy room
    "🧗": "activity",
    "🧘": None,
    "🐵": "animal",
    "💐": "plant",
    "🍇": "food",
    "🍼": None,
    "🥛": "drink",
    "🫖": None,  # teapot
    "🍵": "drink",
    "🍻": None,  # clinking mugs and glasses
    "🥃": "drink",
    "🫗": None,  # pouring liquid
    "🥤": "drink",
    "🥢": None,
    "🏔️": "place",
    "🧱": None,
    "🛖": "place",
    "🌁": None,
    "🎠": "place",
    "🚂": "vehicle",
    "🦽": None,
    "🛺": "vehicle",
    "🚏": None,
    "⛵": "vehicle",
    "🛫": None,
    "🚁": "vehicle",
    "🛰️": None,
    "🚀": "vehicle",
    "🛎️": None,
    "🧳": "thing",
    "⌛": None,
    "⌚": "thing",
    "🕛": None,
    "🌂": "thing",  # umbrellas
    "⚡": None,
    "🎃": "thing",
    "⚽": "sport",
    "🥊": "thing",
    "⛳": "sport",
    "⛸️": "thing",
    "♠️": None,
    "♟️": "thing",
    "👓": "clothing",
    "🔇": None,
    "🎙️": "thing",
    "🎷": "instrument",
    "📱": "thing",
    "🗡️": None,
    "🪚": "thing",
    "🚬": None,
}

# There are 258 flags; spend the model on well-known countries only.
# fmt: off
COUNTRY_CODES = [
    "US", "GB", "CA", "AU", "NZ", "IE", "FR", "DE", "ES", "IT", "PT", "NL", "BE", "CH", "AT", "SE", "NO", "DK",
    "FI", "IS", "PL", "CZ", "GR", "TR", "RU", "UA", "JP", "CN", "KR", "IN", "ID", "TH", "VN", "PH", "SG", "MY",
    "BR", "AR", "MX", "CL", "CO", "PE", "CU", "JM", "ZA", "EG", "NG", "KE", "MA", "IL", "SA", "AE",
]
# fmt: on

# Feelings and weather matter most, and their everyday words are mostly gemoji
# tags shared by several emoji, so they are listed by hand (as topics).
TOPIC_WORDS: dict[str, dict[str, str]] = {
    "good": {
        "happy": "😊",
        "glad": "😊",
        "excited": "🤩",
        "amazed": "🤩",
        "in love": "😍",
        "loved": "🥰",
        "chill": "😎",
        "relaxed": "😌",
        "calm": "😌",
        "proud": "😌",
        "silly": "🤪",
        "grateful": "🙏",
        "thankful": "🙏",
        "lucky": "🍀",
    },
    "bad": {
        "sad": "😢",
        "upset": "😞",
        "disappointed": "😞",
        "angry": "😠",
        "mad": "😡",
        "furious": "😡",
        "tired": "😫",
        "stressed": "😫",
        "exhausted": "😩",
        "sleepy": "😪",
        "bored": "😒",
        "sick": "🤒",
        "scared": "😱",
        "afraid": "😨",
        "nervous": "😬",
        "worried": "😟",
        "confused": "😕",
        "surprised": "😮",
        "embarrassed": "😳",
        "lonely": "😔",
        "hungry": "😋",
        "cold": "🥶",
        "hot": "🥵",
    },
    "weather": {
        "rain": "🌧️",
        "snow": "❄️",
        "sun": "☀️",
        "sunshine": "☀️",
        "wind": "🌬️",
        "storm": "⛈️",
        "thunder": "⛈️",
        "lightning": "⚡",
        "fog": "🌫️",
        "clouds": "☁️",
        "rainbow": "🌈",
        "tornado": "🌪️",
    },
}
# Everyday words that no database gives their emoji; they join the emoji's topic.
EXTRA_WORDS = {
    "milk": "🥛",
    "wine": "🍷",
    "juice": "🧃",
    "soda": "🥤",
    "whiskey": "🥃",
    "chocolate": "🍫",
    "soup": "🍲",
    "salad": "🥗",
    "steak": "🥩",
    "donut": "🍩",
    "honey": "🍯",
    "kiwi": "🥝",
    "noodles": "🍜",
    "puppy": "🐶",
    "kitten": "🐱",
    "kitty": "🐱",
    "bunny": "🐰",
    "flower": "🌸",
    "tree": "🌳",
    "skiing": "⛷️",
    "dancing": "💃",
    "plane": "✈️",
    "subway": "🚇",
    "park": "🏞️",
    "museum": "🏛️",
    "store": "🏪",
    "shop": "🏪",
    "wallet": "👛",
    "bag": "👜",
    "shoes": "👟",
    "jacket": "🧥",
}
# Gemoji tags are search keywords; these are moods, verbs or loose associations
# rather than names, and read wrongly in templates ("look at that speed").
# fmt: off
LOOSE_TAGS = {
    "speed", "thanksgiving", "spring", "autumn", "spicy", "sweet", "bubbly", "vacation", "launch", "morning",
    "festival", "shiny", "contest", "play", "fortune", "gambling", "design", "formal", "sport", "classy",
    "education", "college", "university", "engaged", "king", "queen", "sing", "incoming", "save", "search", "zoom",
    "idea", "cream", "subscription", "shipping", "directory", "stats", "private", "password", "science",
    "laboratory", "investigate", "signal", "united", "french", "british", "skating",
}
# fmt: on

# Templates format _Concept objects: {0.word} is the concept's word, {0.a} the
# word with an article, {0.be} "is" or "are", {0.emoji} its emoji. Words that
# carry their own meaning add that emoji after the concept's, as in the model
# card's "I love pizza" -> "🍕❤️".
Template = tuple[str, str]
PHRASES: dict[str, list[Template]] = {
    "food": [
        ("I love {0.word}", "{0.emoji}❤️"),
        ("I like {0.word}", "{0.emoji}"),
        ("let's eat {0.word}", "{0.emoji}"),
        ("{0.word} for dinner", "{0.emoji}"),
        ("{0.word} for breakfast", "{0.emoji}"),
        ("I'm craving {0.word}", "{0.emoji}"),
        ("the {0.word} {0.be} delicious", "{0.emoji}😋"),
        ("who wants {0.word}?", "{0.emoji}"),
        ("making {0.word} tonight", "{0.emoji}"),
        ("I had {0.word} for lunch", "{0.emoji}"),
        ("can I have some {0.word}?", "{0.emoji}"),
        ("I ate too much {0.word}", "{0.emoji}"),
    ],
    "drink": [
        ("a cup of {0.word}", "{0.emoji}"),
        ("a glass of {0.word}", "{0.emoji}"),
        ("I love {0.word}", "{0.emoji}❤️"),
        ("let's drink {0.word}", "{0.emoji}"),
        ("I need {0.word}", "{0.emoji}"),
        ("time for {0.word}", "{0.emoji}"),
        ("want some {0.word}?", "{0.emoji}"),
        ("I'd like {0.word}, please", "{0.emoji}"),
        ("{0.word} in the morning", "{0.emoji}"),
    ],
    "animal": [
        ("look at that {0.word}", "{0.emoji}"),
        ("my {0.word} {0.be} so cute", "{0.emoji}😍"),
        ("I love my {0.word}", "{0.emoji}❤️"),
        ("I saw {0.a} today", "{0.emoji}"),
        ("there is {0.a} in the garden", "{0.emoji}"),
        ("feeding the {0.word}", "{0.emoji}"),
        ("a picture of {0.a}", "{0.emoji}"),
        ("I want {0.a}", "{0.emoji}"),
        ("the {0.word} {0.be} sleeping", "{0.emoji}"),
        ("we saw {0.a} at the zoo", "{0.emoji}"),
    ],
    "plant": [
        ("look at the {0.word}", "{0.emoji}"),
        ("{0.a} in the garden", "{0.emoji}"),
        ("I planted {0.a}", "{0.emoji}"),
        ("I love this {0.word}", "{0.emoji}❤️"),
        ("I got you {0.a}", "{0.emoji}"),
        ("smell the {0.word}", "{0.emoji}"),
        ("don't forget to water the {0.word}", "{0.emoji}"),
    ],
    "place": [
        ("going to the {0.word}", "{0.emoji}"),
        ("let's meet at the {0.word}", "{0.emoji}"),
        ("we are at the {0.word}", "{0.emoji}"),
        ("on my way to the {0.word}", "{0.emoji}"),
        ("I love the {0.word}", "{0.emoji}❤️"),
        ("see you at the {0.word}", "{0.emoji}"),
        ("the {0.word} {0.be} closed today", "{0.emoji}"),
    ],
    "vehicle": [
        ("a trip by {0.word}", "{0.emoji}"),
        ("let's take the {0.word}", "{0.emoji}"),
        ("I'm on the {0.word}", "{0.emoji}"),
        ("waiting for the {0.word}", "{0.emoji}"),
        ("going by {0.word}", "{0.emoji}"),
        ("I missed the {0.word}", "{0.emoji}"),
        ("the {0.word} {0.be} late again", "{0.emoji}"),
    ],
    "sport": [
        ("let's play {0.word}", "{0.emoji}"),
        ("I love {0.word}", "{0.emoji}❤️"),
        ("{0.word} practice today", "{0.emoji}"),
        ("watching {0.word} tonight", "{0.emoji}"),
        ("who wants to play {0.word}?", "{0.emoji}"),
        ("we played {0.word} all day", "{0.emoji}"),
        ("I'm good at {0.word}", "{0.emoji}"),
    ],
    "activity": [
        ("let's go {0.word}", "{0.emoji}"),
        ("I love {0.word}", "{0.emoji}❤️"),
        ("{0.word} this weekend", "{0.emoji}"),
        ("time for {0.word}", "{0.emoji}"),
        ("I went {0.word} today", "{0.emoji}"),
        ("do you like {0.word}?", "{0.emoji}"),
        ("I'm going {0.word} tomorrow", "{0.emoji}"),
    ],
    "thing": [
        ("I need {0.a}", "{0.emoji}"),
        ("where {0.be} my {0.word}?", "{0.emoji}"),
        ("I can't find my {0.word}", "{0.emoji}"),
        ("I love my new {0.word}", "{0.emoji}❤️"),
        ("I bought {0.a} today", "{0.emoji}"),
        ("do you have {0.a}?", "{0.emoji}"),
        ("can I borrow your {0.word}?", "{0.emoji}"),
        ("I lost my {0.word}", "{0.emoji}"),
    ],
    "clothing": [
        ("I'm wearing my {0.word}", "{0.emoji}"),
        ("where {0.be} my {0.word}?", "{0.emoji}"),
        ("I love my new {0.word}", "{0.emoji}❤️"),
        ("I forgot my {0.word}", "{0.emoji}"),
        ("do you like my {0.word}?", "{0.emoji}"),
        ("I lost my {0.word}", "{0.emoji}"),
    ],
    "instrument": [
        ("I play the {0.word}", "{0.emoji}"),
        ("learning the {0.word}", "{0.emoji}"),
        ("I love the {0.word}", "{0.emoji}❤️"),
        ("listen to that {0.word}", "{0.emoji}"),
        ("she plays the {0.word}", "{0.emoji}"),
    ],
    "country": [
        ("a trip to {0.word}", "{0.emoji}"),
        ("I'm from {0.word}", "{0.emoji}"),
        ("greetings from {0.word}", "{0.emoji}"),
        ("I love {0.word}", "{0.emoji}❤️"),
        ("flying to {0.word} tomorrow", "{0.emoji}✈️"),
        ("we are moving to {0.word}", "{0.emoji}"),
        ("visiting {0.word} this summer", "{0.emoji}"),
    ],
    "weather": [
        ("so much {0.word} today", "{0.emoji}"),
        ("look at the {0.word}", "{0.emoji}"),
        ("I love the {0.word}", "{0.emoji}❤️"),
        ("{0.word} all day today", "{0.emoji}"),
        ("the {0.word} is back", "{0.emoji}"),
        ("there will be {0.word} tomorrow", "{0.emoji}"),
    ],
    "feeling": [
        ("I am so {0.word}", "{0.emoji}"),
        ("feeling {0.word} today", "{0.emoji}"),
        ("I feel {0.word}", "{0.emoji}"),
        ("I'm really {0.word} right now", "{0.emoji}"),
        ("why am I so {0.word}?", "{0.emoji}"),
        ("we are {0.word}", "{0.emoji}"),
        ("she is so {0.word}", "{0.emoji}"),
        ("are you {0.word}?", "{0.emoji}"),
        ("today I'm {0.word}", "{0.emoji}"),
    ],
}

# Other languages get food and drink templates that read well with a bare
# noun, filled with that language's one-word CLDR names.
FOREIGN_TOPICS = ("food", "drink")
FOREIGN_PHRASES: dict[str, list[Template]] = {
    "de": [
        ("Ich liebe {0.word}", "{0.emoji}❤️"),
        ("Ich mag {0.word}", "{0.emoji}"),
        ("Lust auf {0.word}?", "{0.emoji}"),
        ("{0.word} zum Abendessen", "{0.emoji}"),
    ],
    "fr": [
        ("j'adore {0.word}", "{0.emoji}❤️"),
        ("j'aime {0.word}", "{0.emoji}"),
        ("je veux {0.word}", "{0.emoji}"),
        ("{0.word} pour le dîner", "{0.emoji}"),
    ],
    "es": [
        ("me encanta {0.word}", "{0.emoji}❤️"),
        ("me gusta {0.word}", "{0.emoji}"),
        ("quiero {0.word}", "{0.emoji}"),
        ("{0.word} para cenar", "{0.emoji}"),
    ],
    "it": [
        ("adoro {0.word}", "{0.emoji}❤️"),
        ("mi piace {0.word}", "{0.emoji}"),
        ("voglio {0.word}", "{0.emoji}"),
        ("{0.word} per cena", "{0.emoji}"),
    ],
    "pt": [
        ("eu amo {0.word}", "{0.emoji}❤️"),
        ("eu gosto de {0.word}", "{0.emoji}"),
        ("quero {0.word}", "{0.emoji}"),
        ("{0.word} no jantar", "{0.emoji}"),
    ],
}

# Combos and sentences take one concept per listed topic and name their emoji
# in order of mention. "good" and "bad" are feelings of that mood, so the mood
# fits the story; "feeling" is either.
Pattern = tuple[str, str, tuple[str, ...]]
COMBOS: list[Pattern] = [
    ("{0.word} and {1.word}", "{0.emoji}{1.emoji}", ("food", "food")),
    ("{0.word} and {1.word}", "{0.emoji}{1.emoji}", ("food", "drink")),
    ("{0.word} with {1.word}", "{0.emoji}{1.emoji}", ("food", "food")),
    ("{0.word} with {1.word}", "{0.emoji}{1.emoji}", ("drink", "food")),
    ("{0.word}, {1.word} and {2.word}", "{0.emoji}{1.emoji}{2.emoji}", ("food", "food", "drink")),
    ("{0.word}, {1.word} and {2.a}", "{0.emoji}{1.emoji}{2.emoji}", ("drink", "food", "thing")),
    ("{0.a} and {1.a}", "{0.emoji}{1.emoji}", ("animal", "animal")),
    ("{0.a} in the {1.word}", "{0.emoji}{1.emoji}", ("animal", "weather")),
    ("{0.a} at the {1.word}", "{0.emoji}{1.emoji}", ("animal", "place")),
    ("{0.word} and {1.word}", "{0.emoji}{1.emoji}", ("weather", "weather")),
    ("{0.word} at the {1.word}", "{0.emoji}{1.emoji}", ("food", "place")),
    ("{0.word} in {1.word}", "{0.emoji}{1.emoji}", ("food", "country")),
    ("by {0.word} to the {1.word}", "{0.emoji}{1.emoji}", ("vehicle", "place")),
    ("{0.word} in the {1.word}", "{0.emoji}{1.emoji}", ("activity", "weather")),
    ("{0.word} and {1.word}", "{0.emoji}{1.emoji}", ("sport", "sport")),
    ("{0.a} and {1.a}", "{0.emoji}{1.emoji}", ("thing", "thing")),
    ("my {0.word} and my {1.word}", "{0.emoji}{1.emoji}", ("clothing", "clothing")),
    ("{0.word} and {1.word}", "{0.emoji}{1.emoji}", ("plant", "plant")),
]
SENTENCES: list[Pattern] = [
    ("I am so {0.word}, we are going to the {1.word}", "{0.emoji}{1.emoji}", ("good", "place")),
    ("{0.word} again today and I feel {1.word}", "{0.emoji}{1.emoji}", ("weather", "feeling")),
    ("feeling {0.word} because of the {1.word}", "{0.emoji}{1.emoji}", ("feeling", "weather")),
    (
        "we had {0.word} and {1.word} tonight, I am so {2.word}",
        "{0.emoji}{1.emoji}{2.emoji}",
        ("food", "drink", "good"),
    ),
    ("my {0.word} {0.be} broken and I am so {1.word}", "{0.emoji}{1.emoji}", ("thing", "bad")),
    ("we won the {0.word} game, I am so {1.word}", "{0.emoji}{1.emoji}", ("sport", "good")),
    ("so much {0.word} outside, let's stay home and eat {1.word}", "{0.emoji}🏠{1.emoji}", ("weather", "food")),
    ("I saw my {0.word} again and I am so {1.word}", "{0.emoji}{1.emoji}", ("animal", "good")),
    ("{0.word} today, don't forget your {1.word}", "{0.emoji}{1.emoji}", ("weather", "clothing")),
    (
        "we are taking the {0.word} to the {1.word}, I am so {2.word}",
        "{0.emoji}{1.emoji}{2.emoji}",
        ("vehicle", "place", "good"),
    ),
    ("I feel {0.word} after {1.word}", "{0.emoji}{1.emoji}", ("feeling", "activity")),
    ("I'm {0.word}, can we get {1.word}?", "{0.emoji}{1.emoji}", ("feeling", "food")),
    ("my {0.word} is eating {1.word}", "{0.emoji}{1.emoji}", ("animal", "food")),
    ("I am {0.word}, my {1.word} {1.be} gone", "{0.emoji}{1.emoji}", ("bad", "thing")),
    (
        "I went {0.word} in {1.word} and I am so {2.word}",
        "{0.emoji}{1.emoji}{2.emoji}",
        ("activity", "country", "good"),
    ),
    ("we are so {0.word}, we are flying to {1.word}", "{0.emoji}{1.emoji}✈️", ("good", "country")),
    ("my {0.word} loves the {1.word}", "{0.emoji}{1.emoji}❤️", ("animal", "weather")),
]

# An English concept word is 3+ letters (spaces, hyphens, apostrophes allowed),
# at most three words, and names a thing rather than describing the picture.
_CONCEPT_WORD = re.compile(r"[a-z][a-z' -]+[a-z]")
_DESCRIPTIVE = re.compile(r"\b(face|button|sign|symbol|mark|flag|oncoming|with|person|people|man|woman|men|women)\b")
# Per-topic checks so templates read naturally: "let's go surfing", "let's
# play baseball" (not "soccer ball"), "a cup of tea" (not "of cheers" or "of cup").
_TOPIC_WORD_OK = {
    "activity": lambda word: word.endswith("ing"),
    "sport": lambda word: not word.endswith(" ball"),
    "drink": lambda word: " " not in word and not word.endswith("s") and word not in ("cup", "bottle"),
}


@dataclass
class _Emoji:
    char: str
    topic: str | None
    names: dict[str, str]  # language -> CLDR name
    aliases: list[str]
    tags: list[str]


class _Word(NamedTuple):
    text: str
    emoji: str
    lang: str
    source: str  # "name", "alias", "curated", "tag" or "head", best first
    topic: str | None


class _Concept(NamedTuple):
    """A word and the emoji it stands for, as the templates see them."""

    word: str
    emoji: str

    @property
    def plural(self) -> bool:
        """A rough English test: "glasses", "fries" and "jeans" are plural; "bus", "dress" and "tennis" not."""
        word = self.word
        return word.endswith("sses") or (word.endswith("s") and not word.endswith(("ss", "us", "is")))

    @property
    def a(self) -> str:
        """The word with an indefinite article, if it takes one: "a cat", "an owl", "glasses"."""
        if self.plural:
            return self.word
        vowel = self.word[0].lower() in "aeiou" and not self.word.lower().startswith("uni")
        return f"{'an' if vowel else 'a'} {self.word}"

    @property
    def be(self) -> str:
        return "are" if self.plural else "is"


class _Row(NamedTuple):
    text: str
    emoji: str
    lang: str
    kind: str


def _clean(name: str) -> str:
    """':hot_beverage:' -> 'hot beverage', with a typable apostrophe."""
    return name.strip(":").replace("_", " ").replace("’", "'").strip()


def _flag(country_code: str) -> str:
    return "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in country_code)


def _is_regional_flag(char: str) -> bool:
    return all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char)


def _has_skin_tone(char: str) -> bool:
    return any(0x1F3FB <= ord(c) <= 0x1F3FF for c in char)


def _inventory(languages: Sequence[str]) -> list[_Emoji]:
    """Fully-qualified emoji without skin-tone variants, in Unicode order."""
    emoji.config.load_language(list(languages))
    countries = {_flag(code) for code in COUNTRY_CODES}
    gemoji = {entry.emoji: entry for entry in EMOJI_DB}
    # A tag shared by several emoji ("happy", "fruit") names none of them.
    tag_counts: dict[str, int] = {}
    for entry in EMOJI_DB:
        for tag in entry.tags:
            tag_counts[tag] = tag_counts.get(tag, 0) + 1

    topics: dict[str, str | None] = {}
    topic = None
    for entry in EMOJI_DB:
        topic = TOPIC_STARTS.get(entry.emoji, topic)
        topics[entry.emoji] = topic

    items = []
    for char in [*gemoji, *(c for c in emoji.EMOJI_DATA if c not in gemoji)]:
        data = emoji.EMOJI_DATA.get(char)
        if data is None or data["status"] != emoji.STATUS["fully_qualified"]:
            continue
        if _has_skin_tone(char) or (_is_regional_flag(char) and char not in countries):
            continue
        entry = gemoji.get(char)
        aliases = data.get("alias", []) + (entry.aliases if entry else [])
        tags = [t for t in entry.tags if tag_counts[t] == 1 and t not in LOOSE_TAGS] if entry else []
        items.append(
            _Emoji(
                char=char,
                topic="country" if char in countries else topics.get(char),
                names={lang: _clean(data[lang]) for lang in languages if lang in data},
                aliases=list(dict.fromkeys(_clean(alias) for alias in aliases)),
                tags=[_clean(tag) for tag in tags],
            )
        )
    return items


def _head_words(name: str) -> list[str]:
    """Short forms of an English name: 'beach with umbrella' -> 'beach', 'person surfing' -> 'surfing'."""
    heads = []
    if " with " in name:
        heads.append(name.split(" with ")[0])
    if name.startswith("person "):
        heads.append(name.removeprefix("person "))
    return heads


def _candidate_words(items: list[_Emoji], languages: Sequence[str]) -> Iterator[_Word]:
    """Every (word, emoji) the databases offer, best sources first."""
    by_char = {item.char: item for item in items}
    for lang in languages:
        yield from (_Word(i.names[lang], i.char, lang, "name", i.topic) for i in items if lang in i.names)
        if lang != "en":
            continue
        yield from (_Word(alias, i.char, lang, "alias", i.topic) for i in items for alias in i.aliases)
        for topic, words in TOPIC_WORDS.items():
            yield from (_Word(word, char, lang, "curated", topic) for word, char in words.items())
        yield from (_Word(word, char, lang, "curated", by_char[char].topic) for word, char in EXTRA_WORDS.items())
        yield from (_Word(tag, i.char, lang, "tag", i.topic) for i in items for tag in i.tags)
        yield from (_Word(head, i.char, lang, "head", i.topic) for i in items for head in _head_words(i.names[lang]))


def _words(items: list[_Emoji], languages: Sequence[str]) -> list[_Word]:
    """The candidate words each kept only for the emoji that claimed it first.

    E.g. "dog" is the CLDR name of 🐕, so 🐶's alias "dog" is dropped.
    """
    candidates = [word for word in _candidate_words(items, languages) if word.text]
    owner: dict[str, str] = {}
    for word in candidates:
        owner.setdefault(word.text.casefold(), word.emoji)
    return [word for word in candidates if owner[word.text.casefold()] == word.emoji]


def _is_concept_word(word: _Word) -> bool:
    if word.lang != "en":
        return word.topic in FOREIGN_TOPICS and word.lang in FOREIGN_PHRASES and " " not in word.text
    text = word.text.casefold()
    return (
        bool(_CONCEPT_WORD.fullmatch(text))
        and not _DESCRIPTIVE.search(text)
        and len(text.split()) <= 3
        and _TOPIC_WORD_OK.get(word.topic, lambda _: True)(text)
    )


def _concepts(words: list[_Word]) -> dict[tuple[str, str], list[_Concept]]:
    """(language, topic) -> the concepts that fill that topic's templates.

    Spelling variants ("woman's sandal", "womans sandal") count as one word,
    and the best source's spelling decides whether it is used at all.
    """
    pools: dict[tuple[str, str], dict[str, _Concept | None]] = {}
    for word in words:
        if word.topic is None:
            continue
        pool = pools.setdefault((word.lang, word.topic), {})
        variant = re.sub(r"\W", "", word.text.casefold())
        if variant in pool:
            continue
        text = word.text.capitalize() if word.lang == "de" else word.text  # German nouns have capitals
        pool[variant] = _Concept(text, word.emoji) if _is_concept_word(word) else None
    concepts = {key: kept for key, pool in pools.items() if (kept := [c for c in pool.values() if c])}
    if ("en", "good") in concepts:
        concepts[("en", "feeling")] = concepts[("en", "good")] + concepts[("en", "bad")]
    return concepts


def _phrases(concepts: dict[tuple[str, str], list[_Concept]]) -> Iterator[_Row]:
    """Every template of a topic with every concept of that topic."""
    for (lang, topic), pool in concepts.items():
        templates = PHRASES.get(topic, []) if lang == "en" else FOREIGN_PHRASES[lang]
        for text, target in templates:
            yield from (_Row(text.format(c), target.format(c), lang, "phrase") for c in pool)


def _sampled(
    patterns: list[Pattern], concepts: dict[tuple[str, str], list[_Concept]], kind: str, rng: random.Random
) -> Iterator[_Row]:
    """Distinct random fillings of each pattern, each with different emoji.

    A pattern gets FILLINGS_PER_PATTERN of them, or 3/4 of all its possible
    fillings if that is fewer, so that random draws still find new ones fast.
    """
    for text, target, topics in patterns:
        pools = [concepts[("en", topic)] for topic in topics]
        wanted = min(FILLINGS_PER_PATTERN, math.prod(len(pool) for pool in pools) * 3 // 4)
        filled: set[str] = set()
        for _ in range(4 * wanted):
            chosen = [rng.choice(pool) for pool in pools]
            row = _Row(text.format(*chosen), target.format(*chosen), "en", kind)
            if row.text not in filled and len({c.emoji for c in chosen}) == len(chosen):
                filled.add(row.text)
                yield row
                if len(filled) == wanted:
                    break


def _vary(text: str, rng: random.Random) -> str:
    """Vary capitals and final punctuation the way people type."""
    style = rng.random()
    if style < 0.3:
        text = text.lower()
    elif style < 0.6:
        text = text[0].upper() + text[1:]
    if text[-1] not in "?!":
        text += rng.choice(["", "", "", "!", "."])
    return text


def _split_key(text: str) -> str:
    """The text with case, punctuation and spacing normalised away."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).split())


def _is_heldout(key: str) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") < HELDOUT_FRACTION * 2**64


def build_corpus(seed: int = 0, languages: Sequence[str] | None = None, max_pairs: int | None = None) -> pd.DataFrame:
    """Build the corpus as a table with columns text, emoji, lang, kind and split, in random order.

    `languages` defaults to all 14 that `emoji` supports; phrases, combos and
    sentences in English need "en". `max_pairs` keeps that many random rows.
    """
    languages = list(languages or emoji.LANGUAGES)
    unknown = sorted(set(languages) - set(emoji.LANGUAGES))
    if unknown:
        raise ValueError(f"unsupported languages {unknown}; choose from {emoji.LANGUAGES}")
    rng = random.Random(seed)

    words = _words(_inventory(languages), languages)
    concepts = _concepts(words)
    names = [_Row(w.text, w.emoji, w.lang, "name") for w in words if w.source in ("name", "alias")]
    generated = list(_phrases(concepts))
    if "en" in languages:
        generated += _sampled(COMBOS, concepts, "combo", rng)
        generated += _sampled(SENTENCES, concepts, "sentence", rng)

    # Names go first so no generated text can take a name's place, and each
    # normalised text is kept once, so held-out and train never share one.
    records = []
    seen: set[str] = set()
    for row in [*names, *(row._replace(text=_vary(row.text, rng)) for row in generated)]:
        key = _split_key(row.text)
        if key in seen or len(row.text.encode()) > MAX_TEXT_BYTES:
            continue
        seen.add(key)
        heldout = row.kind != "name" and _is_heldout(key)
        records.append((*row, "heldout" if heldout else "train"))

    corpus = pd.DataFrame.from_records(records, columns=COLUMNS)
    return corpus.sample(frac=1.0, random_state=seed).iloc[:max_pairs].reset_index(drop=True)


def load_pairs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table with `text` and `emoji` columns from .csv, .parquet or .jsonl/.json (JSON lines).

    Whitespace is stripped, rows with an empty text or emoji are dropped, and
    other columns are kept as they are.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix == ".parquet":
        table = pd.read_parquet(path)
    elif suffix in (".jsonl", ".json"):
        table = pd.read_json(path, lines=True, dtype=False)
    else:
        raise ValueError(f"{path}: unknown table format {suffix!r}; use .csv, .parquet or .jsonl")

    missing = [column for column in ("text", "emoji") if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    table = table.dropna(subset=["text", "emoji"])
    for column in ("text", "emoji"):
        table[column] = table[column].astype(str).str.strip()
    return table[(table["text"] != "") & (table["emoji"] != "")].reset_index(drop=True)


def _write(corpus: pd.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        try:
            corpus.to_parquet(path, index=False)
        except ImportError as error:
            raise SystemExit(f"writing {path} needs pyarrow (pip install pyarrow), or write .csv/.jsonl") from error
    elif suffix == ".csv":
        corpus.to_csv(path, index=False)
    else:
        corpus.to_json(path, orient="records", lines=True, force_ascii=False)


def _print_stats(corpus: pd.DataFrame, seed: int) -> None:
    print(pd.crosstab(corpus["kind"], corpus["split"], margins=True), end="\n\n")
    print(pd.crosstab(corpus["lang"], corpus["split"], margins=True), end="\n\n")
    for split, rows in corpus.groupby("split"):
        print(f"{split} samples:")
        for row in rows.sample(n=min(8, len(rows)), random_state=seed).itertuples():
            print(f"  [{row.lang} {row.kind}] {row.text!r} -> {row.emoji}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the text -> emoji training corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output file: .parquet, .csv or .jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--languages", help="comma-separated language codes, e.g. en,de (default: all 14)")
    parser.add_argument("--stats", action="store_true", help="print counts per kind, language and split, and samples")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in (".parquet", ".csv", ".jsonl", ".json"):
        parser.error("--out must end in .parquet, .csv or .jsonl")

    start = time.perf_counter()
    corpus = build_corpus(seed=args.seed, languages=args.languages.split(",") if args.languages else None)
    seconds = time.perf_counter() - start
    _write(corpus, args.out)
    print(f"wrote {len(corpus):,} pairs to {args.out} (built in {seconds:.1f} s)")
    if args.stats:
        _print_stats(corpus, args.seed)


if __name__ == "__main__":
    main()
