"""The corpus's hand-written data, read from the package's files in emojilm/data/.

Per language, ``<lang>/words.tsv`` (everyday words per emoji) and ``<lang>/phrases.json``
(templates, connectors); ``inventory.json`` chooses the emoji. Someone who knows a
language edits them without touching Python: data/README.md describes the formats.
Training-time only, like the rest of the lexicon.
"""

from __future__ import annotations

import json
from importlib.resources import files

DATA = files("emojilm") / "data"
WORDS_HEADER = ["emoji", "words"]


def _read(*parts: str) -> str:
    return DATA.joinpath(*parts).read_text(encoding="utf-8")


def everyday_words(lang: str) -> dict[str, list[str]]:
    """emoji -> its everyday words in `lang`, first line and first word first (<lang>/words.tsv).

    A row is an emoji, a tab and its words between " | "; blank lines and lines
    starting with "# " (headings) are skipped. No quoting: a cell is what lies between tabs.
    """
    name = f"{lang}/words.tsv"
    header, *lines = _read(lang, "words.tsv").splitlines()
    if header.split("\t") != WORDS_HEADER:
        raise ValueError(f"{name}: the first line must be the header {'<tab>'.join(WORDS_HEADER)}, not {header!r}")
    table: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=2):
        if not line.strip() or line.startswith("# "):
            continue
        cells = line.split("\t")
        if len(cells) != len(WORDS_HEADER):
            raise ValueError(f"{name}:{number}: want an emoji, one tab and its words, got {line!r}")
        char, words = cells[0].strip(), cells[1]
        if char in table:  # else the later line would silently replace the earlier one
            raise ValueError(f"{name}:{number}: {char} has a line already; put all its words on one line")
        table[char] = [word.strip() for word in words.split("|") if word.strip()]
    return table


def phrasing(lang: str) -> dict:
    """`lang`'s phrase templates, connectors and word separator (<lang>/phrases.json)."""
    return json.loads(_read(lang, "phrases.json"))


def inventory_choices() -> dict[str, list[str]]:
    """The emoji categories, extra symbols and country flags the corpus covers (inventory.json)."""
    return json.loads(_read("inventory.json"))
