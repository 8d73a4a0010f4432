"""Concurrent requests through the batching engine, as the app serves them: the page's examples asked at
once by 1 and by 8 visitors (sampled, seeded), their bytes/s and the last one's wait.

Each measure runs in a fresh process whose model loads on a thread that ends, and whose every request
decodes on the engine's thread, as in the app: a thread that ran torch ops keeps an OpenMP pool of its
own while it lives, and then every step of the engine waits on sleeping threads (emojilm.engine).
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

VISITORS = (1, MAX_ROWS)


def engine_in_child(folder: str, device: str, dtype: str | None, answer_bytes: int, repeats: int) -> None:
    """Run inside a fresh process: print, per run, each burst's (seconds until its last answer, bytes)."""
    loaded: list = []

    def load() -> None:
        loaded.append(emojilm.load(folder, device=device, dtype=dtype, probe=False))

    loader = threading.Thread(target=load)
    loader.start()
    loader.join()
    lm, engine = loaded[0], Engine()

    def burst(visitors: int) -> tuple[float, int]:
        settings = {"max_new_tokens": answer_bytes, "temperature": 0.8, "top_p": 0.95}
        requests = [lm.request(EXAMPLES[i % len(EXAMPLES)], seed=i, **settings) for i in range(visitors)]
        started = time.perf_counter()
        rows = [engine.submit(lm.model, lm.prompt_ids(r.text), r, lm.tokenizer.eos_id) for r in requests]
        produced = sum(len(list(engine.tokens(row))) for row in rows)  # the rows decode together meanwhile
        return time.perf_counter() - started, produced

    for visitors in VISITORS:  # warm-up: oneDNN builds its kernels per shape
        burst(visitors)
    print(json.dumps([{str(n): burst(n) for n in VISITORS} for _ in range(repeats)]), flush=True)
    os._exit(0)  # at once: torch's threads abort the interpreter's teardown while the engine's thread waits


def measure_engine(folder: Path, options: argparse.Namespace, answer_bytes: int) -> dict[str, Any]:
    """1 and 8 visitors at once, alternating within a fresh process; ratios are medians of the runs' own."""
    arguments = (str(folder), options.device, options.dtype, answer_bytes, options.repeats)
    runs = in_child("emojilm.bench_engine", "engine_in_child", arguments, options.threads)
    one, many = str(VISITORS[0]), str(VISITORS[-1])

    def rate(run: dict, n: str) -> float:
        seconds, produced = run[n]
        return produced / seconds

    return {
        "engine, 1 visitor: answer bytes/s": statistics.median(rate(run, one) for run in runs),
        f"engine, {many} visitors at once: answer bytes/s": statistics.median(rate(run, many) for run in runs),
        f"engine, bytes/s at {many} visitors / at 1": statistics.median(rate(r, many) / rate(r, one) for r in runs),
        f"engine, last of {many} visitors / a lone visitor": statistics.median(r[many][0] / r[one][0] for r in runs),
    }
