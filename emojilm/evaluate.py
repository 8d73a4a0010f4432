"""How well a model translates what people type: the numbers on the bundled model's card.

Two evaluations:

* the natural set (assets/bundled/eval/{phrases,words,languages}.jsonl), written by
  hand and kept out of training: English phrases, single everyday words, and phrases
  in ten other languages. Each row lists, per thing it talks about, every acceptable
  emoji. A dictionary lookup (each word looked up in the ``emoji`` package's names
  for that language) is scored on the same rows, as the baseline to beat. The fresh
  set (eval/fresh.jsonl: 150 texts in the same languages and format, written later,
  before any model's answers to them were seen, and also kept out of training) is
  scored the same way and reported apart, its English and other languages apart;
* a table of text/emoji pairs (``--data``, e.g. the corpus's held-out split), where
  a hit needs every emoji of the expected answer: this measures how well the
  model learned the corpus generator's own shapes, not what visitors type.

Outputs are greedy, for every loop count at once (generation.answers_by_loops).

    python -m emojilm.evaluate --model bundled                    # the natural and fresh sets
    python -m emojilm.evaluate --model bundled --data assets/bundled/heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from emojilm.generation import answers_by_loops
from emojilm.model import WEIGHT_FORMATS
from emojilm.paths import EVAL_DIR
from emojilm.sampling import SamplingParams

VARIATION_SELECTOR = "\ufe0f"
ZWJ = "\u200d"
EVAL_SETS = ("phrases", "words", "languages")
# Hand-written after the natural set, without looking at any model's answers; reported apart from it.
FRESH_SET = "fresh"
# Words of emoji names too plain to stand for one emoji in the baseline's lookup.
STOPWORDS = {"the", "and", "with", "face", "for", "you", "not", "but", "this", "that", "are", "was", "from",
             "button", "sign", "symbol", "mark", "person", "man", "woman", "flag", "light", "skin", "tone"}  # fmt: skip


def emoji_units(text: str) -> list[str]:
    """The emoji of a string, one per picture: ZWJ sequences, flags and modifiers kept whole, U+FE0F dropped."""
    units: list[str] = []
    joined = False
    text = text.replace(VARIATION_SELECTOR, "")
    for i, ch in enumerate(text):
        if ch == ZWJ:
            joined = bool(units)
            continue
        regional = 0x1F1E6 <= ord(ch) <= 0x1F1FF
        attaches = 0x1F3FB <= ord(ch) <= 0x1F3FF or 0xE0020 <= ord(ch) <= 0xE007F
        pairs_flag = regional and units and len(units[-1]) == 1 and 0x1F1E6 <= ord(units[-1]) <= 0x1F1FF
        if ch == "\u20e3":  # a keycap: 1️⃣ is the digit before it
            if i and text[i - 1] in "0123456789#*":
                units.append(text[i - 1] + ch)
        elif units and (joined or attaches or pairs_flag):
            units[-1] += (ZWJ if joined else "") + ch
        elif ord(ch) > 0x2000 or ch in "©®":
            units.append(ch)
        joined = False
    return units


def emoji_set(text: str) -> set[str]:
    return set(emoji_units(text))


def is_hit(output: str, expected: str) -> bool:
    """For text/emoji pairs: every emoji of the expected answer is in the output."""
    return emoji_set(expected) <= emoji_set(output)


def score(output: str, accept: Sequence[Sequence[str]]) -> dict[str, bool]:
    """A natural-set row: hit (an acceptable emoji for something it names), every group met, nothing else."""
    found = emoji_set(output)
    groups = [emoji_set("".join(group)) for group in accept]
    allowed = set().union(*groups)
    return {
        "hit": bool(found & allowed),
        "all": all(found & group for group in groups),
        "precise": bool(found) and found <= allowed,
    }


def load_eval(folder: Path = EVAL_DIR, sets: Sequence[str] = EVAL_SETS) -> pd.DataFrame:
    """The natural set (or `sets`, e.g. (FRESH_SET,)): one row per text, with its set name, language, topic
    and acceptable emoji."""
    frames = []
    for name in sets:
        table = pd.read_json(folder / f"{name}.jsonl", lines=True, dtype=False)
        table["set"] = name
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    table["lang"] = table["lang"].fillna("en") if "lang" in table else "en"
    return table[["set", "lang", "topic", "text", "accept"]]


@torch.inference_mode()
def greedy_by_loops(
    lm, texts: Sequence[str], loops: Sequence[int], max_new_tokens: int = 32, batch_size: int = 64
) -> list[list[str]]:
    """Greedy outputs [text][loop count] for every text and loop count."""
    prompts = [lm.prompt_ids(t) for t in texts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    outputs: list[list[str]] = [[] for _ in texts]
    greedy = SamplingParams()
    for indices in by_length.values():
        for chunk in range(0, len(indices), batch_size):
            group = indices[chunk : chunk + batch_size]
            batch = torch.tensor([prompts[i] for i in group], device=lm.device)
            new = min(max_new_tokens, lm.model.args.max_seqlen - batch.shape[1])
            answers = answers_by_loops(lm.model, lm.tokenizer, batch, loops, greedy, new)
            for i, answer in zip(group, answers, strict=True):
                outputs[i] = answer
    return outputs


def accuracy_by_loops(lm, pairs: pd.DataFrame, loops: Sequence[int] | None = None) -> pd.DataFrame:
    """Text/emoji pairs: one row per loop count with its hit rate, exact-match rate and number of phrases."""
    loops = list(loops or range(1, lm.n_loops + 1))
    outputs = greedy_by_loops(lm, pairs["text"].tolist(), loops)
    rows = []
    for j, k in enumerate(loops):
        hits = [is_hit(out[j], exp) for out, exp in zip(outputs, pairs["emoji"], strict=True)]
        exact = [out[j] == exp for out, exp in zip(outputs, pairs["emoji"], strict=True)]
        rows.append({"loops": k, "hit": sum(hits) / len(hits), "exact": sum(exact) / len(exact), "n": len(hits)})
    return pd.DataFrame(rows)


class DictionaryLookup:
    """The baseline: look each word up in the ``emoji`` package's names for the text's language.

    A run of up to three words that is an emoji's name or alias becomes that
    emoji ("pizza", "hot dog", "Hund"); otherwise a word of 3+ letters that is a
    word of some names ("tired" in "tired face") becomes the emoji with the
    shortest such name. A final "s" is dropped when only the singular matches.
    Languages written without spaces are searched for every name as a
    substring, longest first.
    """

    def __init__(self) -> None:
        import emoji

        self._emoji = emoji
        self._names: dict[str, dict[str, str]] = {}
        self._name_words: dict[str, dict[str, str]] = {}

    def names(self, lang: str) -> dict[str, str]:
        if lang not in self._names:
            emoji = self._emoji
            if lang != "en" and lang in emoji.LANGUAGES:
                emoji.config.load_language(lang)
            table: dict[str, str] = {}
            for char, data in emoji.EMOJI_DATA.items():
                if data["status"] != emoji.STATUS["fully_qualified"]:
                    continue
                for name in [data.get(lang, "")] + (data.get("alias", []) if lang == "en" else []):
                    key = name.strip(":").replace("_", " ").casefold()
                    if key:
                        table.setdefault(key, char)
            self._names[lang] = table
            words: dict[str, str] = {}
            for name in sorted(table, key=len):  # shortest name first
                for word in name.split():
                    if len(word) >= 3 and word not in STOPWORDS:
                        words.setdefault(word, table[name])
            self._name_words[lang] = words
        return self._names[lang]

    def _word(self, word: str, lang: str) -> str | None:
        names, words = self.names(lang), self._name_words[lang]
        for form in (word, word[:-1]) if word.endswith("s") else (word,):
            if form in names or form in words:
                return names.get(form) or words[form]
        return None

    def __call__(self, text: str, lang: str = "en") -> str:
        names = self.names(lang)
        folded = text.casefold()
        if lang in ("ja", "zh"):
            found = []
            for name in sorted((n for n in names if n in folded), key=len, reverse=True):
                if name in folded:
                    found.append((folded.index(name), names[name]))
                    folded = folded.replace(name, " " * len(name))
            return "".join(char for _, char in sorted(found))
        words = re.findall(r"[\w']+", folded)
        out, i = [], 0
        while i < len(words):
            for n in (3, 2):
                phrase = " ".join(words[i : i + n])
                char = names.get(phrase) or (names.get(phrase[:-1]) if phrase.endswith("s") else None)
                if len(words[i : i + n]) == n and char:
                    out.append(char)
                    i += n
                    break
            else:
                char = self._word(words[i], lang)
                out += [char] if char else []
                i += 1
        return "".join(out)


def natural_outputs(lm, table: pd.DataFrame, loops: Sequence[int]) -> pd.DataFrame:
    """The natural set with the model's greedy output at every loop count and the baseline's output."""
    outputs = greedy_by_loops(lm, table["text"].tolist(), loops)
    lookup = DictionaryLookup()
    long = [
        {**row, "model": f"{k} loops", "loops": k, "output": out[j]}
        for row, out in zip(table.to_dict("records"), outputs, strict=True)
        for j, k in enumerate(loops)
    ]
    long += [
        {**row, "model": "dictionary lookup", "loops": 0, "output": lookup(row["text"], row["lang"])}
        for row in table.to_dict("records")
    ]
    scored = pd.DataFrame(long)
    marks = pd.DataFrame([score(o, a) for o, a in zip(scored["output"], scored["accept"], strict=True)])
    return pd.concat([scored.reset_index(drop=True), marks], axis=1)


def natural_table(scored: pd.DataFrame, by: Sequence[str] = ("set",)) -> pd.DataFrame:
    """Hit, all-groups and precise rates per (model, *by), the baseline last."""
    table = scored.groupby(["loops", "model", *by], sort=True)[["hit", "all", "precise"]].mean()
    table["n"] = scored.groupby(["loops", "model", *by]).size()
    table = table.reset_index()
    order = table["loops"].where(table["loops"] > 0, table["loops"].max() + 1)
    return table.assign(_order=order).sort_values(["_order", *by]).drop(columns="_order").reset_index(drop=True)


def fresh_table(scored: pd.DataFrame) -> pd.DataFrame:
    """The fresh set's rates per model, its English texts ("en") and other languages ("other") apart."""
    part = scored["lang"].where(scored["lang"] == "en", "other")
    return natural_table(scored.assign(part=part), by=("set", "part"))


def main(argv: Sequence[str] | None = None) -> None:
    import emojilm
    from emojilm.corpus import load_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled", help="bundled, a folder, or a Hub repo id")
    parser.add_argument("--data", help="a text/emoji table instead of the hand-written sets (held-out pairs)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N rows (of each set) only")
    parser.add_argument("--max-loops", type=int, default=None, help="also try loop counts beyond training")
    parser.add_argument("--dtype", default="float32", choices=WEIGHT_FORMATS, help="weight format (default float32)")
    parser.add_argument("--json", help="also write the table(s) to this JSON file")
    parser.add_argument("--outputs", help="hand-written sets: also write every row's outputs to this JSON-lines file")
    args = parser.parse_args(argv)
    lm = emojilm.load(args.model, dtype=args.dtype)
    loops = range(1, (args.max_loops or lm.n_loops) + 1)
    if args.data:
        pairs = load_pairs(args.data)
        if "split" in pairs:
            pairs = pairs[pairs["split"] == "heldout"]
        pairs = pairs.head(args.limit) if args.limit else pairs
        table = accuracy_by_loops(lm, pairs, loops)
        print(f"{lm!r}\n{len(pairs)} held-out pairs from {args.data}\n")
        print(table.to_string(index=False, float_format="{:.3f}".format))
        if args.json:
            table.to_json(args.json, orient="records", indent=1)
        return

    natural, fresh = load_eval(), load_eval(sets=(FRESH_SET,))
    natural, fresh = (natural.head(args.limit), fresh.head(args.limit)) if args.limit else (natural, fresh)
    # Scored apart, so the natural set's batches (and numbers) are the same with or without the fresh set.
    scored_natural, fresh_scored = natural_outputs(lm, natural, loops), natural_outputs(lm, fresh, loops)
    by_set = natural_table(scored_natural)
    by_lang = natural_table(scored_natural[scored_natural["set"] == "languages"], by=("lang",))
    print(f"{lm!r}\nnatural set: {len(natural)} hand-written texts from {EVAL_DIR}\n")
    print(by_set.to_string(index=False, float_format="{:.3f}".format), end="\n\n")
    trained = by_lang[by_lang["loops"].isin([lm.n_loops, 0])]
    print(trained.to_string(index=False, float_format="{:.3f}".format))
    fresh_parts = fresh_table(fresh_scored)
    fresh_lang = natural_table(fresh_scored, by=("lang",))
    print(f"\nfresh set: {len(fresh)} hand-written texts ({FRESH_SET}.jsonl), apart from the natural set\n")
    print(fresh_parts.to_string(index=False, float_format="{:.3f}".format))
    if args.json:
        tables = {
            "by_set": by_set.to_dict("records"),
            "by_language": by_lang.to_dict("records"),
            "fresh": {"by_part": fresh_parts.to_dict("records"), "by_language": fresh_lang.to_dict("records")},
        }
        Path(args.json).write_text(json.dumps(tables, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.outputs:
        scored = pd.concat([scored_natural, fresh_scored], ignore_index=True)
        scored.drop(columns="accept").to_json(args.outputs, orient="records", lines=True, force_ascii=False)


if __name__ == "__main__":
    main()
