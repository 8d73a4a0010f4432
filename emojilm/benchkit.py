"""What the benchmarks measure with: a clock, a fresh process, the machine's own limits (memory streamed
by all the run's threads, a large matrix product's rate), the machine's line, and how figures print."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

IMPORT_ROOT = Path(__file__).resolve().parent.parent  # where `python -m emojilm...` subprocesses import from


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def in_child(module: str, function: str, arguments: tuple, threads: int, env: dict[str, str] | None = None) -> Any:
    """module.function(*arguments) in a fresh Python process with `threads` torch threads (and `env` added):
    what the JSON on its last line of output holds."""
    code = (
        f"import torch; torch.set_num_threads({threads}); from {module} import {function}; {function}(*{arguments!r})"
    )
    env = os.environ | {"OMP_NUM_THREADS": str(threads)} | (env or {})
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=IMPORT_ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{function}{arguments!r} failed in a subprocess:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(repeats: int, fn: Callable[[], float]) -> float:
    """Median of `repeats` calls of fn, each returning one measurement."""
    return statistics.median(fn() for _ in range(repeats))


KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine_line(threads: int, device: str) -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with open("/proc/cpuinfo", encoding="utf-8") as info:  # which kernels can win depends on these
        flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    cpu += " [" + " ".join(f for f in KERNEL_FLAGS if f in flags) + "]"
    gpu = f", GPU: {torch.cuda.get_device_name(device)}" if torch.device(device).type == "cuda" else ""
    return (
        f"machine: {cpu}, {os.cpu_count()} cores ({usable} usable by this process){gpu}, "
        f"torch {torch.__version__} with {threads} thread(s), Python {platform.python_version()}"
    )


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest_pass(run: Callable[[], Any], device: torch.device, min_seconds: float = 0.1) -> float:
    """Seconds of the fastest of the runs repeated until min_seconds have passed (at least one)."""
    best, started = math.inf, time.perf_counter()
    while best == math.inf or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - begin)
    return best


class BandwidthProbe:
    """GB/s at which all the run's threads stream memory: a sum over a 1 GiB buffer, which no cache holds.

    This is the machine's limit, measured independently of the model's kernels.
    Sampled beside every decode run: on a shared VM the bandwidth drifts by a
    fifth from minute to minute, so a ratio to one early figure would drift too.
    """

    def __init__(self, device: torch.device, megabytes: int = 1024) -> None:
        self.buffer = torch.ones(megabytes * 2**20 // 4, device=device)
        self.sample()  # touch every page once

    def sample(self) -> float:
        """The rate of the fastest sum over 0.1 s (a few passes over the buffer at a CPU's streaming rate)."""
        best = fastest_pass(self.buffer.sum, self.buffer.device)
        return self.buffer.numel() * self.buffer.element_size() / best / 1e9


def gemm_rate(device: torch.device, dtype: torch.dtype, size: int = 2048) -> float:
    """GFLOP/s of a large square matrix product in dtype: the arithmetic limit of all the run's
    threads, measured apart from the model (the fastest pass over 0.1 s)."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b  # warm-up
    return 2 * size**3 / fastest_pass(lambda: a @ b, device) / 1e9


def fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
