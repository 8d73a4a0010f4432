"""Held-out accuracy for every loop count: the numbers on the bundled model's card.

A phrase counts as a hit when every emoji of its expected answer appears in
the greedy output (variation selectors ignored). All loop counts are decoded
in one batch per prompt length (see generation.decode_steps), so evaluating
n loop counts costs about as much as evaluating one.

    python -m emojilm.evaluate --model bundled --data assets/bundled/heldout.jsonl
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pandas as pd
import torch

from emojilm.generation import answers_by_loops
from emojilm.sampling import SamplingParams

VARIATION_SELECTOR = "\ufe0f"


def emoji_set(text: str) -> set[str]:
    """The emoji characters of a string, variation selectors and joiners aside."""
    return {ch for ch in text.replace(VARIATION_SELECTOR, "") if ord(ch) > 0x2000 and ch != "\u200d"}


def is_hit(output: str, expected: str) -> bool:
    return emoji_set(expected) <= emoji_set(output)


@torch.no_grad()
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
            for i, answers in zip(group, answers_by_loops(lm, batch, loops, greedy, new), strict=True):
                outputs[i] = answers
    return outputs


def accuracy_by_loops(lm, pairs: pd.DataFrame, loops: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per loop count: loops, hit rate, exact-match rate, number of phrases."""
    loops = list(loops or range(1, lm.n_loops + 1))
    outputs = greedy_by_loops(lm, pairs["text"].tolist(), loops)
    rows = []
    for j, k in enumerate(loops):
        hits = [is_hit(out[j], exp) for out, exp in zip(outputs, pairs["emoji"], strict=True)]
        exact = [out[j] == exp for out, exp in zip(outputs, pairs["emoji"], strict=True)]
        rows.append({"loops": k, "hit": sum(hits) / len(hits), "exact": sum(exact) / len(exact), "n": len(hits)})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    import emojilm
    from emojilm.corpus import load_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled", help="bundled, a folder, or a Hub repo id")
    parser.add_argument("--data", required=True, help="table with text and emoji columns")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N rows only")
    parser.add_argument("--max-loops", type=int, default=None, help="also try loop counts beyond training")
    parser.add_argument("--json", help="also write the table to this JSON file (records)")
    args = parser.parse_args(argv)
    lm = emojilm.load(args.model)
    pairs = load_pairs(args.data)
    if "split" in pairs:
        pairs = pairs[pairs["split"] == "heldout"]
    pairs = pairs.head(args.limit) if args.limit else pairs
    table = accuracy_by_loops(lm, pairs, range(1, (args.max_loops or lm.n_loops) + 1))
    print(f"{lm!r}\n{len(pairs)} held-out phrases from {args.data}\n")
    print(table.to_string(index=False, float_format="{:.3f}".format))
    if args.json:
        table.to_json(args.json, orient="records", indent=1)


if __name__ == "__main__":
    main()
