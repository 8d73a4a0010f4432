"""Training throughput: the bundled model's recipe in one process on every core (or one GPU) against
torchrun's data parallel with a process per core (or per GPU), `python -m emojilm.bench --training`."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from emojilm import checkpoint
from emojilm.benchkit import IMPORT_ROOT, fmt
from emojilm.paths import HELDOUT_FILE

TRAINING_OPTIONS = ("dim", "n_layers", "n_heads", "n_loops", "loop_mode", "template", "max_seqlen", "batch_size", "lr")


def training_setups(device: str) -> list[tuple[str, list[str], int | None]]:
    """(name, the command before emojilm.train's options, threads per process or None) for each way to train:
    on CPU one process on every core against a process per core; on GPUs one GPU against all of them."""
    train = ["-m", "emojilm.train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    if torch.device(device).type == "cuda":
        gpus = torch.cuda.device_count()
        setups = [("1 process, 1 GPU", [sys.executable, *train], None)]
        if gpus > 1:
            setups.append((f"{gpus} processes, {gpus} GPUs (NCCL)", [*torchrun, str(gpus), *train], None))
        return setups
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return [
        (f"1 process × {cores} threads", [sys.executable, *train], cores),
        (f"{cores} processes × 1 thread (gloo)", [*torchrun, str(cores), *train], 1),
    ]


def training_rate(command: list[str], threads: int | None, options: list[str], out: Path) -> float:
    """Training bytes/s of one run, as emojilm.train records it in params.json."""
    env = {**os.environ, "PYTHONPATH": str(IMPORT_ROOT)} | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    command = [*command, *options, f"--out={out}"]
    run = subprocess.run(command, cwd=IMPORT_ROOT, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    return json.loads((out / checkpoint.PARAMS).read_text())["emojilm"]["train_bytes_per_second"]


def measure_training(options: argparse.Namespace, work: Path) -> pd.DataFrame:
    """The bundled model's training options, --train-steps steps on its held-out rows, in each setup."""
    bundled = checkpoint.resolve("bundled").folder
    recorded = json.loads((bundled / checkpoint.PARAMS).read_text())["train_config"]
    train_options = [f"--{name.replace('_', '-')}={recorded[name]}" for name in TRAINING_OPTIONS] + [
        f"--data={bundled / HELDOUT_FILE}", f"--steps={options.train_steps}", "--eval-every=0",
        f"--device={options.device}",
    ]  # fmt: skip
    setups = training_setups(options.device)
    rates: list[list[float]] = [[] for _ in setups]
    for repeat in range(options.repeats):  # the setups alternate, so that a slow phase of the machine hits each
        for i, (name, command, threads) in enumerate(setups):
            print(f"[training] {name}, run {repeat + 1} of {options.repeats} ...", file=sys.stderr, flush=True)
            rates[i].append(training_rate(command, threads, train_options, work / f"setup{i}-run{repeat}"))
    medians = [statistics.median(r) for r in rates]
    rows = [{"setup": name, "training bytes/s": fmt(median), "slowest–fastest run": f"{fmt(min(r))}–{fmt(max(r))}",
             f"/ {setups[0][0]}": fmt(median / medians[0])}
            for (name, _, _), r, median in zip(setups, rates, medians, strict=True)]  # fmt: skip
    return pd.DataFrame(rows).set_index("setup")
