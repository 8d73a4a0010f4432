"""Loading, timed as a visitor's first and second start meet it: each load in a fresh process
(peak resident memory is per process), from consolidated.pth (converting into an empty
EMOJILM_CACHE) and then from that cache; the weights' size, resident and in fp32."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import emojilm
from emojilm import checkpoint
from emojilm.benchkit import in_child, timed
from emojilm.model import LoopedTransformer


def fp32_bytes(model: LoopedTransformer) -> int:
    """The weights' size in fp32, as checkpoints hold them (whatever dtype they were loaded in)."""
    return model.num_params() * 4


def resident_weight_bytes(model: LoopedTransformer) -> int:
    """Bytes the loaded weights hold: the model's tensors plus the kernels' packed copies."""
    tensors = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in model.state_dict().values()}
    return sum(tensors.values()) + sum(p.packed_bytes for p in model.products())


def pth_only_copy(source: Path, folder: Path) -> Path:
    """A folder with only params.json and consolidated.pth, so loading must convert."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (checkpoint.PARAMS, checkpoint.CONSOLIDATED):
        shutil.copy2(source / name, folder / name)
    return folder


def _status_bytes(field: str) -> int:
    """A memory figure (VmRSS, VmHWM) of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status", encoding="utf-8") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def load_in_child(folder: str, device: str, dtype: str | None, probe: bool) -> None:
    """Run inside a fresh process: load once, print seconds, memory and the variant as JSON."""
    baseline = _status_bytes("VmRSS")  # Python, torch and emojilm imported
    seconds, lm = timed(lambda: emojilm.load(folder, device=device, dtype=dtype, probe=probe))
    info = lm.info
    variant = f"{info.loop_mode} ({info.mode_source}), {info.template} ({info.template_source})"
    print(json.dumps({"seconds": seconds, "peak": _status_bytes("VmHWM"), "baseline": baseline,
                      "weights": fp32_bytes(lm.model), "resident": resident_weight_bytes(lm.model),
                      "source": info.weights, "variant": variant}))  # fmt: skip


def load_in_subprocess(
    folder: Path, cache: Path, options: argparse.Namespace, probe: bool = False, dtype: str | None = None
) -> dict[str, Any]:
    arguments = (str(folder), options.device, dtype or options.dtype, probe)
    return in_child("emojilm.bench_loading", "load_in_child", arguments, options.threads, {"EMOJILM_CACHE": str(cache)})


def measure_loading(folder: Path, work: Path, options: argparse.Namespace) -> dict[str, Any]:
    """First load (consolidated.pth → safetensors cache) and cached load, each in a fresh process;
    then the same two as a default load runs them (with the variant probe, where the config leaves
    the variant open), from another empty cache."""
    runs = []
    for i in range(options.repeats):
        plain, probed = work / f"cache{i}", work / f"probed{i}"
        run = [load_in_subprocess(folder, plain, options), load_in_subprocess(folder, plain, options),
               load_in_subprocess(folder, probed, options, probe=True),
               load_in_subprocess(folder, probed, options, probe=True)]  # fmt: skip
        assert "converted to" in run[0]["source"] and "cached" in run[1]["source"], run
        runs.append(run)
        shutil.rmtree(plain)
        shutil.rmtree(probed)
    weights = runs[0][0]["weights"]

    def med(which: int, key: str) -> float:
        return statistics.median(run[which][key] for run in runs)

    return {
        "load from consolidated.pth (convert)": med(0, "seconds"),
        "load from safetensors cache": med(1, "seconds"),
        "default load, first start (convert + probe)": med(2, "seconds"),
        "default load, first start / convert": statistics.median(run[2]["seconds"] / run[0]["seconds"] for run in runs),
        "default load, second start (cached weights and choice)": med(3, "seconds"),
        "variant after a default load": runs[0][2]["variant"],
        "peak RSS, convert": med(0, "peak") / 1e9,
        "peak RSS, convert / fp32 weights": med(0, "peak") / weights,
        "peak RSS - baseline, convert / fp32 weights": (med(0, "peak") - med(0, "baseline")) / weights,
        "peak RSS, cached": med(1, "peak") / 1e9,
        "peak RSS - baseline, cached / fp32 weights": (med(1, "peak") - med(1, "baseline")) / weights,
    }
