"""Build the text -> emoji training corpus for the bundled Emoji-ByteLM model.

Training-time only: the app never imports this module. The words come from
emojilm.lexicon (hand-written everyday words, CLDR in 14 languages, the emoji
databases, WordNet); this module puts them in context, the way people type:

* ``word``: a word alone, as typed ("Pizza!", "pizzas", "PUPPY");
* ``phrase``: one word in a hand-written template ("I'm craving {x}", "ich hätte gern {x}";
  emojilm/data/<lang>/phrases.json, with the connectors ``multi`` joins by);
* ``multi``: two or three words or phrases joined ("pizza and beer", "rain again. so sad");
* ``scene``: one hand-written sentence naming two or three things ("{a} next to the {y}":
  "a cat next to the pizza"), so that answers learn to name every thing a sentence holds;
* ``context``: a word or phrase amid real sentences that name no emoji (Debian's
  ``fortunes``), or amid a language's frequent words (``wordfreq``), so the words
  around a concept change freely and the model learns to look past them.

The target is the emoji of every concept in order of mention, so "I love pizza"
-> "❤️🍕": a template's own meaningful words are marked in it ("I [love:❤️] {x}").
A few rows get a typo in the concept word or odd capitals, as people type.

Rows are held out by a hash of their normalised text (a template-shaped split,
for watching training), and any row whose normalised text is one of the
hand-written evaluation texts (assets/bundled/eval) is dropped, so the natural
evaluation never meets its own texts in training.

Usage: python -m emojilm.corpus --out data/corpus.jsonl [--seed 0] [--rows 1000000] [--languages en,de]
       [--focus everyday|core|common] [--english-share 0.6]
       [--kinds word,phrase] [--stats]
Data (once): apt-get install unicode-cldr-core wordnet-base fortunes; pip install wordfreq emoji emojis
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emojilm.handwritten import phrasing
from emojilm.lexicon import EVERYDAY, OTHER_LANGUAGES, WORDNET_DIR, Lexicon, build_lexicon
from emojilm.paths import EVAL_DIR

COLUMNS = ["text", "emoji", "lang", "kind", "split"]
LANGUAGES = ("en", *OTHER_LANGUAGES)
# What a corpus draws: every emoji; the everyday ones; the everyday ones by their names only;
# every emoji by its names, aliases and keywords (narrower corpora repeat each word more
# often: a first training stage learns faster on them).
FOCUSES = ("all", "everyday", "core", "common")
CORE_SOURCES = {"everyday", "cldr-name", "emoji-name", "plural"}
COMMON_SOURCES = CORE_SOURCES | {"alias", "cldr-keyword", "family-keyword"}
HELDOUT_FRACTION = 0.01
MAX_TEXT_BYTES = 160
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Share of rows per language; the rest of the languages split what English leaves.
ENGLISH_SHARE = 0.6
KIND_SHARES = {"word": 0.13, "phrase": 0.36, "multi": 0.14, "scene": 0.17, "context": 0.2}
# How much a source's words are trusted, as a sampling weight.
SOURCE_WEIGHT = {"everyday": 4.0, "cldr-name": 2.0, "emoji-name": 1.5, "alias": 1.5, "cldr-keyword": 1.0,
                 "tag": 0.8, "wordnet": 0.8, "plural": 1.2, "family-keyword": 0.8}  # fmt: skip
# Emoji with hand-written everyday words are the ones people use most.
EVERYDAY_EMOJI_WEIGHT = 10.0

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_MARKUP = re.compile(r"[\t\"()\[\]{}<>|_*=#@\\/`~^]|--")  # quotes, code, verse layout: not chat


def normalised(text: str) -> str:
    """Case, punctuation and spacing normalised away: "Pizza!!" and "pizza" are the same text."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.casefold()).replace("'", "").split())


def eval_texts(folder: Path = EVAL_DIR) -> set[str]:
    """The normalised texts of the hand-written evaluation sets, which training must never contain."""
    texts = set()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.add(normalised(json.loads(line)["text"]))
    return texts


@dataclass
class _Concept:
    word: str
    emoji: str


class _Sampler:
    """Draws one language's concepts: an emoji (people's favourites more often), then one of its words.

    `focus` narrows what is drawn (FOCUSES): "everyday" keeps the emoji that have
    hand-written everyday words, "core" keeps only their names and everyday words,
    "common" keeps every emoji by its names, aliases and keywords (no tags or
    WordNet synonyms), so languages without everyday words get their keywords.
    """

    def __init__(self, lexicon: Lexicon, focus: str = "all") -> None:
        by_emoji: dict[str, list[str]] = {}
        for word, char in lexicon.emoji_of.items():
            source = lexicon.source_of[word]
            kept = {
                "all": True,
                "everyday": char in EVERYDAY,
                "core": char in EVERYDAY and source in CORE_SOURCES,
                "common": source in COMMON_SOURCES,
            }[focus]
            if kept:
                by_emoji.setdefault(char, []).append(word)
        self.emoji = sorted(by_emoji)
        self.words = [sorted(by_emoji[c]) for c in self.emoji]
        self.emoji_weights = list(itertools.accumulate(
            EVERYDAY_EMOJI_WEIGHT if c in EVERYDAY else 1.0 for c in self.emoji))  # fmt: skip
        self.word_weights = [
            list(itertools.accumulate(SOURCE_WEIGHT[lexicon.source_of[w]] * (1 + lexicon.frequency[w]) for w in ws))
            for ws in self.words
        ]
        self.adjectives = _english_adjectives() if lexicon.lang == "en" else set()

    def draw(self, rng: random.Random) -> _Concept:
        i = bisect.bisect_left(self.emoji_weights, rng.random() * self.emoji_weights[-1])
        weights = self.word_weights[i]
        j = bisect.bisect_left(weights, rng.random() * weights[-1])
        return _Concept(self.words[i][j], self.emoji[i])

    def word_class(self, word: str) -> str:
        if word in self.adjectives:
            return "feel"
        return "any" if " " in word or word.endswith("ing") else "thing"


def _english_adjectives() -> set[str]:
    """Words WordNet knows as adjectives and not as nouns ("happy", "tired"), for the "feel" templates."""

    def lemmas(pos: str) -> set[str]:
        text = (WORDNET_DIR / f"index.{pos}").read_text(encoding="latin-1")
        return {line.split()[0] for line in text.splitlines() if line and not line.startswith(" ")}

    return lemmas("adj") - lemmas("noun")


# A template's slots: {x}, {y}, {z} take its first, second and third word; {a}, {b}, {c} the
# same with "a"/"an" before it.
_SLOT = r"\{([xyzabc])\}"


def _slot_word(letter: str) -> int:
    """Which of a template's words a slot takes: 0 for {x}/{a}, 1 for {y}/{b}, 2 for {z}/{c}."""
    return "xyzabc".index(letter) % 3


def _slots(template: str) -> int:
    """How many concepts a template names."""
    return 1 + max(map(_slot_word, re.findall(_SLOT, template)), default=0)


def _fill(template: str, concepts: Sequence[_Concept], rng: random.Random) -> tuple[str, list[str]]:
    """A template filled with concepts, one per slot word: (text, its emoji in order of mention).

    A slot used twice repeats its word.
    """
    words = [_as_typed(concept.word, rng) for concept in concepts]
    parts, emojis, pos = [], [], 0
    for match in re.finditer(rf"\[([^:\]]+):([^\]]+)\]|{_SLOT}", template):
        parts.append(template[pos : match.start()])
        if match.group(1):
            parts.append(match.group(1))
            emojis.append(match.group(2))
        else:
            letter = match.group(3)
            index = _slot_word(letter)
            word, concept = words[index], concepts[index]
            article = "an" if word[:1].lower() in "aeiou" else "a"
            parts.append(word if letter in "xyz" else f"{article} {word}")
            emojis.append(concept.emoji)
        pos = match.end()
    parts.append(template[pos:])
    return "".join(parts), emojis


def _as_typed(word: str, rng: random.Random) -> str:
    """Sometimes a typo, as people make them: a letter dropped, doubled or swapped."""
    if len(word) < 5 or not word.isascii() or rng.random() > 0.06:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _vary_case(text: str, rng: random.Random) -> str:
    style = rng.random()
    if style < 0.4:
        return text.lower()
    if style < 0.75:
        return text[:1].upper() + text[1:]
    if style < 0.8:
        return text.upper()
    return text


class _Contexts:
    """Words and sentences that name no emoji of the lexicon, to surround concepts with."""

    def __init__(self, lexicon: Lexicon) -> None:
        known = {w for word in lexicon.emoji_of for w in word.split()}
        from wordfreq import top_n_list

        self.fillers = [w for w in top_n_list(lexicon.lang, 3000) if w not in known and not w.isdigit()]
        self.sentences = _fortune_sentences(known) if lexicon.lang == "en" else []


def _fortune_sentences(known: set[str]) -> list[str]:
    """Sentences of 4-22 words from Debian's fortunes in which no word is a lexicon word."""
    sentences = set()
    for path in sorted(FORTUNES_DIR.glob("*")):
        if path.suffix or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for entry in text.split("\n%\n"):
            flat = " ".join(entry.split())
            for sentence in re.split(r"(?<=[.!?])\s+", flat):
                words = _WORD.findall(sentence.lower())
                plain = sentence.isascii() and not _MARKUP.search(sentence)
                if 4 <= len(words) <= 22 and plain and not any(w in known for w in words):
                    sentences.add(sentence.strip())
    return sorted(sentences)


class _Generator:
    def __init__(self, lang: str, lexicon: Lexicon, focus: str) -> None:
        self.lang = lang
        self.phrasing = phrasing(lang)  # data/<lang>/phrases.json: templates, connectors, separator
        self.sampler = _Sampler(lexicon, focus)
        self.contexts = _Contexts(lexicon)  # the whole lexicon: no filler word may name an emoji

    def row(self, kind: str, rng: random.Random) -> tuple[str, list[str]]:
        if kind == "word":
            concept = self.sampler.draw(rng)
            word = _as_typed(concept.word, rng)
            return word + rng.choice(["", "", "", "!", "!!", "?", ".", " :)", "..."]), [concept.emoji]
        if kind == "phrase":
            return self.phrase(rng)
        if kind == "scene":
            return self.scene(rng)
        if kind == "multi":
            parts = [self.phrase(rng) if rng.random() < 0.5 else self.bare(rng) for _ in range(rng.choice([2, 2, 3]))]
            joiners = self.phrasing["connectors"]
            text = parts[0][0] + "".join(rng.choice(joiners) + p[0] for p in parts[1:])
            return text, [char for part in parts for char in part[1]]
        return self.context(rng)

    def bare(self, rng: random.Random) -> tuple[str, list[str]]:
        concept = self.sampler.draw(rng)
        return _as_typed(concept.word, rng), [concept.emoji]

    def phrase(self, rng: random.Random) -> tuple[str, list[str]]:
        concept = self.sampler.draw(rng)
        templates = self.phrasing["templates"]
        if self.lang != "en":
            return _fill(rng.choice(templates), [concept], rng)
        # English templates come in classes, for the word's class (_Sampler.word_class).
        word_class = self.sampler.word_class(concept.word)
        pool = templates["any"] if word_class == "any" or rng.random() < 0.2 else templates[word_class]
        text, target = _fill(rng.choice(pool), [concept], rng)
        return rng.choice(self.phrasing["prefixes"]) + text, target

    def scene(self, rng: random.Random) -> tuple[str, list[str]]:
        """A sentence naming two or three things, each a different emoji (English: nouns)."""
        template = rng.choice(self.phrasing["scenes"])
        concepts: list[_Concept] = []
        wanted, passed = _slots(template), 0  # English wants nouns, but takes any after 20 draws that were not
        while len(concepts) < wanted:
            concept = self.sampler.draw(rng)
            if any(concept.emoji == other.emoji for other in concepts):
                continue
            if self.lang == "en" and self.sampler.word_class(concept.word) != "thing" and passed < 20:
                passed += 1
                continue
            concepts.append(concept)
        text, target = _fill(template, concepts, rng)
        return (rng.choice(self.phrasing["prefixes"]) + text if self.lang == "en" else text), target

    def context(self, rng: random.Random) -> tuple[str, list[str]]:
        """A phrase or word amid context: real sentences in English, frequent words otherwise."""
        core, target = self.phrase(rng) if rng.random() < 0.6 else self.bare(rng)
        if self.contexts.sentences and rng.random() < 0.7:
            sentence = rng.choice(self.contexts.sentences)
            shape = rng.randrange(3)
            if shape == 0:
                return f"{sentence} {core}", target
            if shape == 1:
                return f"{core}. {sentence}", target
            words = sentence.split()
            cut = rng.randrange(len(words) + 1)
            return " ".join([*words[:cut], core, *words[cut:]]), target
        before = [rng.choice(self.contexts.fillers) for _ in range(rng.randrange(4))]
        after = [rng.choice(self.contexts.fillers) for _ in range(rng.randrange(4))]
        return self.phrasing["separator"].join([*before, core, *after]), target


def _is_heldout(key: str) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") < HELDOUT_FRACTION * 2**64


def build_corpus(
    seed: int = 0,
    languages: Sequence[str] | None = None,
    rows: int = 1_000_000,
    max_pairs: int | None = None,
    focus: str = "all",
    kinds: Sequence[str] | None = None,
    english_share: float = ENGLISH_SHARE,
) -> pd.DataFrame:
    """The corpus as a table with columns text, emoji, lang, kind and split, in random order.

    `rows` rows are drawn (fewer remain once duplicates and evaluation texts are
    dropped); English takes `english_share` of them when present, the other
    languages share the rest. `max_pairs` keeps that many rows. `focus` narrows the
    concepts drawn (FOCUSES) and `kinds` the kinds of row (KIND_SHARES), for a first
    training stage that sees each word often, in short texts.
    """
    if focus not in FOCUSES:
        raise ValueError(f"unknown focus {focus!r}; choose from {list(FOCUSES)}")
    languages = list(languages or LANGUAGES)
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"unsupported languages {unknown}; choose from {list(LANGUAGES)}")
    if not 0.0 <= english_share <= 1.0:
        raise ValueError(f"english_share must be between 0 and 1, got {english_share}")
    rng = random.Random(seed)
    banned = eval_texts()
    others = [lang for lang in languages if lang != "en"]
    shares = {lang: (1 - english_share if "en" in languages else 1.0) / max(1, len(others)) for lang in others}
    if "en" in languages:
        shares["en"] = english_share if others else 1.0

    records, seen = [], set()
    kinds = list(kinds or KIND_SHARES)
    if not set(kinds) <= set(KIND_SHARES):
        raise ValueError(f"unknown kinds {sorted(set(kinds) - set(KIND_SHARES))}; choose from {list(KIND_SHARES)}")
    kind_weights = [KIND_SHARES[kind] for kind in kinds]
    for lang in languages:
        generator = _Generator(lang, build_lexicon(lang), focus)
        for _ in range(round(rows * shares[lang])):
            kind = rng.choices(kinds, kind_weights)[0]
            text, emojis = generator.row(kind, rng)
            text, target = " ".join(_vary_case(text, rng).split()), "".join(dict.fromkeys(emojis))
            key = normalised(text)
            if not key or key in seen or key in banned or len(text.encode()) > MAX_TEXT_BYTES:
                continue
            seen.add(key)
            records.append((text, target, lang, kind, "heldout" if _is_heldout(key) else "train"))

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


def recipe_path(corpus_file: str | os.PathLike[str]) -> Path:
    """Where the CLI records how it built a corpus file, so training can write it into params.json."""
    return Path(f"{corpus_file}.recipe.json")


def corpus_recipe(corpus_file: str | os.PathLike[str]) -> dict | None:
    """build_corpus's arguments for a file written by the CLI (None for other tables)."""
    path = recipe_path(corpus_file)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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
    for lang, rows in corpus.groupby("lang"):
        print(f"{lang} samples:")
        for row in rows.sample(n=min(10, len(rows)), random_state=seed).itertuples():
            print(f"  [{row.kind}] {row.text!r} -> {row.emoji}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the text -> emoji training corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output file: .parquet, .csv or .jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to draw (default 1,000,000)")
    parser.add_argument("--languages", help=f"comma-separated language codes (default: all of {','.join(LANGUAGES)})")
    focus_help = "all emoji; the everyday ones; those by their names only; all by names and keywords"
    parser.add_argument("--focus", choices=FOCUSES, default="all", help=focus_help)
    parser.add_argument("--kinds", help=f"comma-separated kinds of row (default: all of {','.join(KIND_SHARES)})")
    share_help = f"share of the rows in English when other languages are drawn too (default {ENGLISH_SHARE})"
    parser.add_argument("--english-share", type=float, default=ENGLISH_SHARE, help=share_help)
    parser.add_argument("--stats", action="store_true", help="print counts per kind, language and split, and samples")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in (".parquet", ".csv", ".jsonl", ".json"):
        parser.error("--out must end in .parquet, .csv or .jsonl")
    if not 0.0 <= args.english_share <= 1.0:
        parser.error("--english-share must be between 0 and 1")

    start = time.perf_counter()
    languages = args.languages.split(",") if args.languages else None
    kinds = args.kinds.split(",") if args.kinds else None
    corpus = build_corpus(
        seed=args.seed,
        languages=languages,
        rows=args.rows,
        focus=args.focus,
        kinds=kinds,
        english_share=args.english_share,
    )
    seconds = time.perf_counter() - start
    _write(corpus, args.out)
    recipe = {"seed": args.seed, "rows": args.rows, "languages": languages, "focus": args.focus,
              "kinds": kinds, "english_share": args.english_share, "pairs": len(corpus)}  # fmt: skip
    recipe_path(args.out).write_text(json.dumps(recipe) + "\n", encoding="utf-8")
    print(f"wrote {len(corpus):,} pairs to {args.out} (built in {seconds:.1f} s)")
    if args.stats:
        _print_stats(corpus, args.seed)


if __name__ == "__main__":
    main()
