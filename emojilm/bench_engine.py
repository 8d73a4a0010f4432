"""Concurrent requests through the batching engine, as the app serves them: the page's first examples
asked by visitors one at a time (as before the engine), then by as many visitors at once (sampled,
seeded); their bytes/s and the last one's wait.

Each run is a fresh process whose model loads on a thread that ends, and whose every request decodes
on the engine's thread, as in the app: a thread that ran torch ops keeps an OpenMP pool of its own
while it lives, and then every step of the engine waits on sleeping threads (emojilm.engine). Runs
are separate processes because this machine's speed changes from one process to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import emojilm
from emojilm.benchkit import in_child
from emojilm.engine import MAX_ROWS, Engine
from emojilm.space import EXAMPLES

TEXTS = [EXAMPLES[i % len(EXAMPLES)] for i in range(MAX_ROWS)]  # one per visitor of a full batch


def engine_in_child(folder: str, device: str, dtype: str | None, answer_bytes: int) -> None:
    """Run inside a fresh process: print each lone visitor's (seconds, bytes), then the burst's."""
    loaded: list = []

    def load() -> None:
        loaded.append(emojilm.load(folder, device=device, dtype=dtype, probe=False))

    loader = threading.Thread(target=load)
    loader.start()
    loader.join()
    lm, engine = loaded[0], Engine()

    def burst(visitors: list[int]) -> tuple[float, int]:
        """TEXTS[i] for each i at once (visitor i's seed is i): seconds until the last answer, bytes."""
        settings = {"max_new_tokens": answer_bytes, "temperature": 0.8, "top_p": 0.95}
        requests = [lm.request(TEXTS[i], seed=i, **settings) for i in visitors]
        started = time.perf_counter()
        rows = [engine.submit(lm.model, lm.prompt_ids(r.text), r, lm.tokenizer.eos_id) for r in requests]
        produced = sum(len(list(engine.tokens(row))) for row in rows)  # the rows decode together meanwhile
        return time.perf_counter() - started, produced

    everyone = list(range(len(TEXTS)))
    for shapes in ([0], everyone):  # warm-up: oneDNN builds its kernels per shape
        burst(shapes)
    alone = [burst([i]) for i in everyone]
    print(json.dumps({"alone": alone, "together": burst(everyone)}), flush=True)
    os._exit(0)  # at once: torch's threads abort the interpreter's teardown while the engine's thread waits


def measure_engine(folder: Path, options: argparse.Namespace, answer_bytes: int) -> dict[str, Any]:
    """The visitors one at a time, then at once, in `repeats` fresh processes; medians of the runs' figures."""
    arguments = (str(folder), options.device, options.dtype, answer_bytes)
    child = ("emojilm.bench_engine", "engine_in_child", arguments, options.threads)
    runs = [in_child(*child) for _ in range(options.repeats)]
    n = len(TEXTS)

    def alone_rate(run: dict) -> float:
        return sum(produced for _, produced in run["alone"]) / sum(seconds for seconds, _ in run["alone"])

    def together_rate(run: dict) -> float:
        seconds, produced = run["together"]
        return produced / seconds

    return {
        "engine, 1 visitor: answer bytes/s": statistics.median(map(alone_rate, runs)),
        f"engine, {n} visitors at once: answer bytes/s": statistics.median(map(together_rate, runs)),
        f"engine, bytes/s at {n} visitors / at 1": statistics.median(together_rate(r) / alone_rate(r) for r in runs),
        f"engine, last of {n} visitors / a lone visitor": statistics.median(
            r["together"][0] / statistics.mean(seconds for seconds, _ in r["alone"]) for r in runs
        ),
    }
