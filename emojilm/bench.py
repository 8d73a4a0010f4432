"""Inference benchmarks: loading, prefill, decode, translation and trace, against the memory-bandwidth bound.

    python -m emojilm.bench [--quick] [--model bundled] [--real-shape/--no-real-shape] [--repeats 3] [--threads N]
                            [--device cpu|cuda] [--dtype float32|bfloat16|float16]
    python -m emojilm.bench --training [--train-steps 40] [--repeats 3] [--device cpu|cuda]

Two models are measured: `--model` (by default the bundled demo model) and a
model with random fp32 weights and the published checkpoint's shape (dim 1024,
24 layers × 8 loops, 16 heads), written to a temporary folder in lingua's layout
(params.json + consolidated.pth holding {"model": ..., "optim": ...}); nothing is
downloaded. `--quick` shrinks that model to 6 layers.

Every figure is the median of `--repeats` runs. Loading is measured in fresh
subprocesses (peak resident memory is per process), first from consolidated.pth
(converting it into an empty temporary EMOJILM_CACHE), then from that cache;
then as a default load runs it (with the variant probe where the config leaves
the variant open), from another empty cache, twice.
Decoding is memory-bound: each new byte streams every block's weights once per
loop, so the bound is (block bytes × loops + read-out bytes) / bandwidth, the
bandwidth being the machine's: a sum over 1 GiB by all the run's threads, sampled
just before and just after each decode run; the ratio shown is the median of the runs' ratios.
Prefill is compute-bound: its bound divides the rate of a large matrix product in
the same dtype (sampled before each run) by the FLOPs of one prompt byte.
A step of 2, 4 and 8 rows is timed against a step of one row (what a speculative
check or the trace's per-loop answers pay for their rows), fed three ways (STEP_KINDS).
`--device cuda` runs the same table on a GPU, in bf16 unless `--dtype` says
otherwise (the CPU-only weight-format rows are left out there).
`--training` instead times emojilm.train with the bundled model's recorded
options on its held-out rows: one process using every core (or one GPU)
against torchrun's data parallel with one single-threaded process per core (or
one process per GPU), the setups alternating; each run's figure is the training
bytes/s it records in params.json.
Nothing is asserted: the script only prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import emojilm
from emojilm import checkpoint
from emojilm.bench_engine import measure_engine
from emojilm.bench_loading import fp32_bytes, load_in_subprocess, measure_loading, pth_only_copy
from emojilm.bench_training import measure_training
from emojilm.benchkit import (
    BandwidthProbe,
    fmt,
    gemm_rate,
    machine_line,
    median_of,
    synchronize,
    timed,
)
from emojilm.config import args_from_params
from emojilm.corpus import load_pairs
from emojilm.evaluate import load_eval, natural_outputs
from emojilm.generation import Generation, decode_steps
from emojilm.kvcache import BranchCache
from emojilm.model import WEIGHT_FORMATS, LoopedTransformer
from emojilm.paths import HELDOUT_FILE
from emojilm.sampling import SamplingParams
from emojilm.space import EXAMPLES
from emojilm.speculative import default_draft_loops

TEXT = "A cup of hot coffee and a croissant on a sunny day in Paris"  # about 60 prompt bytes
GREEDY = SamplingParams()
# Where this emojilm is imported from (a checkout, or site-packages): child processes import it from there too.

# The published checkpoint's shape (model card / params.json).
REAL_SHAPE = {
    "dim": 1024,
    "n_layers": 24,
    "n_heads": 16,
    "n_loops": 8,
    "vocab_size": 258,
    "max_seqlen": 512,
    "loop_residual": True,
    "multiple_of": 256,
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "weight_tying": False,
}


@dataclass
class Plan:
    """How much work to time for one model (a real-shape step takes about a second on one core)."""

    decode_bytes: int  # new bytes per cached-decode run (prefill not included)
    naive_bytes: int  # new bytes per full-recompute run
    answer_bytes: int  # max_new_tokens for translate and trace
    trace_repeats: int  # runs of lm.trace alone (the trace reusing a translation runs `repeats` times)


STEP_ROWS = (1, 2, 4, 8)  # rows per decode step in the rows figures
HELDOUT_SAMPLE = 30  # the first ones are timed with and without drafting, and traced

SMALL_PLAN = Plan(decode_bytes=32, naive_bytes=16, answer_bytes=64, trace_repeats=3)
LARGE_PLAN = Plan(decode_bytes=6, naive_bytes=2, answer_bytes=12, trace_repeats=1)


# ----------------------------------------------------------------------------- helpers


def streamed_bytes_per_byte(model: LoopedTransformer, n_loops: int) -> int:
    """Weight bytes one decode step must read, in the model's format: every block's matrices (the copy its
    kernel reads) and norms once per loop, plus the final norm and read-out."""
    matrices = sum(p.nbytes for p in model.products())
    norms = sum(b.attention_norm.weight.nbytes + b.ffn_norm.weight.nbytes for b in model.layers)
    head = model.tok_embeddings.weight if model.args.weight_tying else model.output.weight
    return (matrices + norms) * n_loops + head.nbytes + model.norm.weight.nbytes


# ----------------------------------------------------------------------------- checkpoints


def write_random_checkpoint(folder: Path, model_section: dict[str, Any], seed: int = 0) -> int:
    """params.json + consolidated.pth in lingua's layout, random fp32 weights and an Adam-like
    optimizer state as large as the weights; returns the weights' size in bytes."""
    args = args_from_params({"model": model_section})
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in LoopedTransformer(args).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        tensor = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
        state[key] = tensor
    optim = {
        "state": {i: {"step": torch.tensor(1000.0), "exp_avg": 1e-3 * t} for i, t in enumerate(state.values())},
        "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.95), "params": list(range(len(state)))}],
    }
    folder.mkdir(parents=True, exist_ok=True)
    params = {"name": "bench_random", "model": model_section, "optim": {"lr": 3e-4}}
    (folder / checkpoint.PARAMS).write_text(json.dumps(params, indent=2), encoding="utf-8")
    torch.save({"model": state, "optim": optim}, folder / checkpoint.CONSOLIDATED)
    return sum(t.numel() * t.element_size() for t in state.values())


# ----------------------------------------------------------------------------- measurements


def greedy_cached(lm, new_bytes: int) -> tuple[float, float, list[int]]:
    """(time to first byte, seconds for the following new_bytes - 1 bytes, ids): decode_steps ignoring EOS."""
    started = time.perf_counter()
    prompts = torch.tensor([lm.prompt_ids(TEXT)], device=lm.device)
    steps = decode_steps(lm.model, prompts, [lm.n_loops], GREEDY, new_bytes)
    ids = [int(next(steps))]
    first = time.perf_counter()
    ids += [int(step) for step in steps]
    return first - started, time.perf_counter() - first, ids


@torch.inference_mode()
def greedy_naive(lm, new_bytes: int) -> tuple[float, list[int]]:
    """Greedy decoding that recomputes the whole sequence at every step (no cache): (seconds, ids)."""
    ids = lm.prompt_ids(TEXT)
    length = len(ids)
    started = time.perf_counter()
    for _ in range(new_bytes):
        logits = lm.model(torch.tensor([ids], device=lm.device), lm.n_loops)[0, -1]
        ids.append(int(logits.argmax()))
    return time.perf_counter() - started, ids[length:]


def bounded_decode(lm, plan: Plan, repeats: int, probe: BandwidthProbe, before_each: Callable[[], Any] = list):
    """Greedy cached decode runs, each with its bound (the bandwidth sampled just before and just after it,
    over the bytes a step reads in the model's format): (runs, bytes/s, GB/s, rate / bound), one per run."""
    streamed = streamed_bytes_per_byte(lm.model, lm.n_loops)
    runs, rates, bandwidths = [], [], []
    for _ in range(repeats):
        before_each()
        before = probe.sample()
        runs.append(greedy_cached(lm, plan.decode_bytes))
        rates.append((plan.decode_bytes - 1) / runs[-1][1])
        bandwidths.append((before + probe.sample()) / 2)
    ratios = [rate / (bandwidth * 1e9 / streamed) for rate, bandwidth in zip(rates, bandwidths, strict=True)]
    return runs, rates, bandwidths, ratios


def measure_decoding(lm, plan: Plan, repeats: int, probe: BandwidthProbe) -> dict[str, float]:
    prompt_len = len(lm.prompt_ids(TEXT))
    streamed = streamed_bytes_per_byte(lm.model, lm.n_loops)
    # A prefilled byte runs every block's matrices once per loop: 2 FLOPs per weight (attention's own is small).
    flops = 2 * sum(p.n_weights for p in lm.model.products()) * lm.n_loops
    gemm_rates: list[float] = []

    def sample_gemm_rate() -> None:  # the prefill's bound of each run, sampled just before it
        gemm_rates.append(gemm_rate(lm.device, lm.model.dtype))

    runs, rates, bandwidths, ratios = bounded_decode(lm, plan, repeats, probe, sample_gemm_rate)
    first_byte = statistics.median(run[0] for run in runs)
    decode_rate = statistics.median(rates)
    bandwidth = statistics.median(bandwidths)
    prefill_ratios = [prompt_len / run[0] / (gemm * 1e9 / flops) for run, gemm in zip(runs, gemm_rates, strict=True)]
    naive = [greedy_naive(lm, plan.naive_bytes) for _ in range(repeats)]
    naive_rate = statistics.median(plan.naive_bytes / run[0] for run in naive)
    same = naive[0][1] == runs[0][2][: plan.naive_bytes]
    blocks_per_byte = lm.n_loops * lm.model.args.n_layers
    return {
        "prompt bytes": prompt_len,
        "prefill (incl. first read-out)": prompt_len / first_byte,
        "time to first byte": first_byte,
        "large matrix product beside the runs": statistics.median(gemm_rates),
        "compute bound for prefill": statistics.median(gemm_rates) * 1e9 / flops,
        "prefill / compute bound": statistics.median(prefill_ratios),
        "decode (cached, greedy)": decode_rate,
        "decode time per byte": 1e3 / decode_rate,
        "decode time per block application": 1e6 / decode_rate / blocks_per_byte,
        "bandwidth beside the decode runs": bandwidth,
        "bandwidth bound for decode": bandwidth * 1e9 / streamed,
        "decode / bandwidth bound": statistics.median(ratios),
        "decode / bandwidth bound, lowest run": min(ratios),
        "naive decode (full recompute)": naive_rate,
        "cached / naive": decode_rate / naive_rate,
        "naive bytes == cached bytes": same,
    }


# How a step feeds R rows at once, as the app's callers do (STEP_ROWS rows each):
STEP_KINDS = {
    "rows": "R sequences side by side, each with its own copy of the prompt's keys/values",
    "positions": "R new positions of one sequence (a speculative check)",
    "branches": "R rows branching from one shared prompt (the trace's per-loop answers and alternatives)",
}


@torch.inference_mode()
def measure_rows(lm, repeats: int) -> dict[str, float]:
    """One decode step after a prefill of the benchmark sentence, for 1, 2, 4 and 8 rows at once,
    fed each way of STEP_KINDS: what the rows of a speculative check or of the trace cost. All
    steps alternate within each run, and each ratio (to a step of one row) is the median of the runs' own."""
    model, prompt = lm.model, torch.tensor([lm.prompt_ids(TEXT)], device=lm.device)
    length, most = prompt.shape[1], max(STEP_ROWS)
    cache = model.new_cache(None, 1, length + most)
    model(prompt, cache=cache)
    copies = {rows: cache.repeat_rows(rows) for rows in STEP_ROWS}

    def step(kind: str, rows: int) -> float:
        ids = torch.full((rows, 1), ord(" "), device=lm.device)
        if kind == "positions":
            ids, step_cache, start = ids.view(1, rows), cache, length
        elif kind == "branches":
            step_cache, start = BranchCache.grow(cache, torch.full((rows,), length, device=lm.device), 1), 0
        else:
            step_cache, start = copies[rows], length
        synchronize(lm.device)
        started = time.perf_counter()
        model(ids, cache=step_cache, start=start)
        synchronize(lm.device)
        return time.perf_counter() - started

    steps = [("rows", 1)] + [(kind, rows) for kind in STEP_KINDS for rows in STEP_ROWS[1:]]
    for kind, rows in steps:  # warm-up: oneDNN builds its kernels per shape
        step(kind, rows)
    runs = [{(kind, rows): step(kind, rows) for kind, rows in steps} for _ in range(repeats)]
    figures = {"step of 1 row": statistics.median(run[("rows", 1)] for run in runs)}
    for kind, rows in steps[1:]:
        ratio = statistics.median(run[(kind, rows)] / run[("rows", 1)] for run in runs)
        figures[f"step of {rows} {kind} / step of 1 row"] = ratio
    return figures


def measure_translation(lm, plan: Plan, repeats: int, texts: dict[str, list[str]]) -> dict[str, Any]:
    """A whole lm.translate, and the whole lm.trace of the same greedy request as a multiple of it:
    alone (it translates first) and, as the app runs it, reusing the finished translation.

    The trace's cost depends on the request (the answers with fewer loops may run longer
    than the final one), so the reusing ratio is also given over each named set of texts.
    """
    options = {"max_new_tokens": plan.answer_bytes, "seed": 0}
    translations = [timed(lambda: lm.translate(TEXT, **options)) for _ in range(repeats)]
    translate_s = statistics.median(seconds for seconds, _ in translations)
    trace_s = median_of(plan.trace_repeats, lambda: timed(lambda: lm.trace(TEXT, **options))[0])
    pairs = [trace_after_translation(lm, TEXT, options) for _ in range(repeats)]
    figures = {
        "translation bytes (incl. EOS)": len(translations[0][1].token_ids),
        "translation (lm.translate)": translate_s,
        "trace (lm.trace)": trace_s,
        "trace / translation": trace_s / translate_s,
        "trace reusing the translation": statistics.median(reuse for _, reuse in pairs),
        "trace reusing the translation / translation": reuse_ratio(pairs),
        "loop passes, trace reusing the translation / translation": pass_ratio(lm, TEXT, options),
    }
    for name, inputs in texts.items():
        if inputs == [TEXT]:  # the benchmark sentence: timed above
            continue
        ratios = [reuse_ratio([trace_after_translation(lm, text, options) for _ in range(repeats)]) for text in inputs]
        passes = [pass_ratio(lm, text, options) for text in inputs]
        figures |= {
            f"trace reusing the translation / translation, {name}: median": statistics.median(ratios),
            f"trace reusing the translation / translation, {name}: largest": max(ratios),
            f"{name} whose trace costs over 1.5 translations": sum(ratio > 1.5 for ratio in ratios),
            f"loop passes, trace reusing the translation / translation, {name}: largest": max(passes),
            f"{name} whose trace needs over 1.5 translations' loop passes": sum(ratio > 1.5 for ratio in passes),
        }
    return figures


def loop_passes(model: LoopedTransformer, run: Callable[[], Any]) -> tuple[Any, int]:
    """run()'s result, and how many loop passes it made: one pass runs every layer once, on
    however many rows and positions. Passes follow one another, and on the bundled model
    (where time goes to per-op overhead) one costs about the same whatever its batch, so
    their count bounds how cheap a computation can get by batching."""
    passes = 0

    def count(*_) -> None:
        nonlocal passes
        passes += 1

    handle = model.layers[0].register_forward_pre_hook(count)
    try:
        result = run()
    finally:
        handle.remove()
    return result, passes


def pass_ratio(lm, text: str, options: dict[str, Any]) -> float:
    """Loop passes of lm.trace reusing the translation of text, over those of the translation."""
    answer, translate_passes = loop_passes(lm.model, lambda: lm.translate(text, **options))
    return loop_passes(lm.model, lambda: lm.trace(text, reuse=answer, **options))[1] / translate_passes


def trace_after_translation(lm, text: str, options: dict[str, Any]) -> tuple[float, float]:
    """Seconds for lm.translate, then for lm.trace reusing its answer (each trace takes its answer's KV cache)."""
    translate_s, answer = timed(lambda: lm.translate(text, **options))
    return translate_s, timed(lambda: lm.trace(text, reuse=answer, **options))[0]


def reuse_ratio(pairs: list[tuple[float, float]]) -> float:
    """The median of (trace reusing the translation) / (translation) over trace_after_translation pairs."""
    return statistics.median(reuse / alone for alone, reuse in pairs)


def sample_texts(folder: Path, plan: Plan) -> dict[str, list[str]]:
    """What drafting and the trace are timed on besides the benchmark sentence: the page's
    examples (what visitors try first) and the model's own held-out phrases where it has
    them; only the benchmark sentence for the real shape (slow)."""
    if plan is not SMALL_PLAN:
        return {"benchmark sentence": [TEXT]}
    texts = {"page's examples": EXAMPLES}
    if (folder / HELDOUT_FILE).is_file():
        sample = load_pairs(folder / HELDOUT_FILE)["text"].head(HELDOUT_SAMPLE).tolist()
        texts[f"{len(sample)} held-out phrases"] = sample
    return texts


def translations_rate(lm, texts: list[str], plan: Plan, **options) -> tuple[float, list[Generation], int]:
    """Greedy translations of the texts: bytes/s after each one's first byte, the results, and the loop passes made."""
    results, passes = loop_passes(
        lm.model, lambda: [lm.translate(text, max_new_tokens=plan.answer_bytes, **options) for text in texts]
    )
    return sum(len(r.token_ids) - 1 for r in results) / sum(r.decode_s for r in results), results, passes


def measure_speculative(lm, texts: dict[str, list[str]], plan: Plan, repeats: int) -> dict[str, Any]:
    """Greedy lm.translate with and without self-speculative drafting, on each named set of texts:
    speed, the share of drafted bytes kept, same bytes. Each repeat runs plain, drafted, plain: the
    drafted rate is divided by the mean of the plain runs around it, so the machine's drift cancels
    out, and the second plain run over the first shows how far two identical runs differ (the noise
    band of the ratio). Ratios are medians over the repeats; loop passes count the first repeat's."""
    draft_loops = default_draft_loops(lm.n_loops)
    figures: dict[str, Any] = {"speculative: draft loops": draft_loops}
    for name, inputs in texts.items():
        runs = []
        for _ in range(repeats):
            before = translations_rate(lm, inputs, plan)
            fast = translations_rate(lm, inputs, plan, draft_loops=draft_loops)
            runs.append((before, fast, translations_rate(lm, inputs, plan)))
        (_, plain, plain_passes), (_, drafted, drafted_passes), _ = runs[0]
        stats = [r.draft_stats for r in drafted]
        rates = [(before[0], fast[0], after[0]) for before, fast, after in runs]
        figures |= {
            f"speculative decode (greedy), {name}": statistics.median(fast for _, fast, _ in rates),
            f"speculative / plain decode, {name}": statistics.median(2 * f / (b + a) for b, f, a in rates),
            f"plain / plain decode (noise band), {name}": statistics.median(a / b for b, _, a in rates),
            f"loop passes, speculative / plain, {name}": drafted_passes / plain_passes,
            f"drafted bytes kept, {name}": sum(s.accepted for s in stats) / sum(s.drafted for s in stats),
            f"speculative bytes == plain bytes, {name}": [r.token_ids for r in drafted] == [r.token_ids for r in plain],
        }
    return figures


# ----------------------------------------------------------------------------- weight formats

FORMATS = ("float32", "bfloat16", "int8")


@torch.inference_mode()
def teacher_forced_logits(lm, sequences: list[list[int]]) -> list[torch.Tensor]:
    """Logits [T, vocab] along each id sequence, one forward each (so no padding enters the comparison)."""
    return [lm.model(torch.tensor([ids], device=lm.device))[0].float().cpu() for ids in sequences]


def measure_formats(source: Path, plan: Plan, options: argparse.Namespace, work: Path, texts, natural: bool):
    """Each weight format against float32 in the same run (float32 first): loading in fresh processes,
    decode against the bound of the bytes that format reads, an answer plus its trace, agreement with
    float32's logits and greedy answers, and, with `natural`, the natural set's hit rate; then which
    format the Space's default ("auto") picks for this model on this machine."""
    inputs = [text for group in texts.values() for text in group]
    probe = BandwidthProbe(torch.device(options.device))
    columns: dict[str, dict[str, Any]] = {}
    reference: dict[str, Any] = {}
    for weight_format in ("float32", *(f for f in options.formats if f != "float32")):
        print(f"  [{weight_format}] loading, decoding, translating ...", file=sys.stderr, flush=True)
        cache = work / f"cache-{weight_format}"
        convert, cached = (load_in_subprocess(source, cache, options, dtype=weight_format) for _ in range(2))
        # Let the files just written reach the disk first: on these VMs their write-back, running
        # beside the timed decode, slowed it several times over (docs/benchmarks.md, "Weight formats").
        os.sync()
        os.environ["EMOJILM_CACHE"] = str(cache)
        lm = emojilm.load(source, device=options.device, dtype=weight_format, probe=False)
        _, rates, _, ratios = bounded_decode(lm, plan, options.repeats, probe)
        options_12 = {"max_new_tokens": plan.answer_bytes, "seed": 0}
        pairs = [trace_after_translation(lm, TEXT, options_12) for _ in range(options.repeats)]
        answers = [lm.translate(text, max_new_tokens=plan.answer_bytes).token_ids for text in inputs]
        if not reference:  # float32: the answers and logits every format is compared with
            sequences = [lm.prompt_ids(text) + answer for text, answer in zip(inputs, answers, strict=True)]
            reference = {"answers": answers, "sequences": sequences, "rate": statistics.median(rates),
                         "answer + trace": statistics.median(a + t for a, t in pairs)}  # fmt: skip
            reference["logits"] = teacher_forced_logits(lm, sequences)
        logits = teacher_forced_logits(lm, reference["sequences"])
        compared = list(zip(logits, reference["logits"], strict=True))
        same_top = torch.cat([(ours.argmax(-1) == theirs.argmax(-1)).float() for ours, theirs in compared])
        same_answers = sum(a == b for a, b in zip(answers, reference["answers"], strict=True))
        answer_and_trace = statistics.median(a + t for a, t in pairs)
        column = {
            "kernel": lm.info.kernel,
            "weights read per decoded byte": streamed_bytes_per_byte(lm.model, lm.n_loops) / 1e6,
            "resident weights (plain + packed copies)": cached["resident"] / 1e6,
            "load, converting from the checkpoint": convert["seconds"],
            "load, from the format's cache": cached["seconds"],
            "peak RSS, converting": convert["peak"] / 1e9,
            "peak RSS, from the format's cache": cached["peak"] / 1e9,
            "decode (cached, greedy)": statistics.median(rates),
            "decode / float32 decode": statistics.median(rates) / reference["rate"],
            "decode / bandwidth bound of the bytes it reads": statistics.median(ratios),
            "answer + its trace (benchmark sentence)": answer_and_trace,
            "answer + its trace / float32's": answer_and_trace / reference["answer + trace"],
            "trace reusing the translation / translation": reuse_ratio(pairs),
            "max |Δlogit| vs float32 (teacher-forced)": max(float((a - b).abs().max()) for a, b in compared),
            "top byte same as float32's (teacher-forced)": float(same_top.mean()),
            f"greedy answers same as float32's ({len(inputs)} texts)": same_answers / len(inputs),
        }
        if natural:
            column |= natural_set_figures(lm, reference)
        columns[weight_format] = column
        del lm
    del probe
    os.environ["EMOJILM_CACHE"] = str(work / "cache-auto")
    auto = emojilm.load(source, device=options.device, dtype="auto", probe=False, check_texts=EXAMPLES)
    for weight_format, column in columns.items():
        column["the Space's default (auto) here"] = weight_format == auto.info.dtype
    return columns, auto.info.format_note


def natural_set_figures(lm, reference: dict[str, Any]) -> dict[str, Any]:
    """The natural set at the trained loop count: hit rate, and answers identical to float32's."""
    table = load_eval()
    scored = natural_outputs(lm, table, [lm.n_loops])
    model_rows = scored[scored["loops"] == lm.n_loops]
    outputs = model_rows["output"].tolist()
    reference.setdefault("natural", (outputs, float(model_rows["hit"].mean())))
    float32_outputs, float32_hit = reference["natural"]
    return {
        f"natural set hit ({len(table)} texts)": float(model_rows["hit"].mean()),
        "natural set hit - float32's (points)": 100 * (float(model_rows["hit"].mean()) - float32_hit),
        "natural set answers same as float32's": sum(a == b for a, b in zip(outputs, float32_outputs, strict=True))
        / len(outputs),
    }


# ----------------------------------------------------------------------------- one model, the table

UNITS = {
    "parameters": "M",
    "fp32 weights": "MB",
    "load from consolidated.pth (convert)": "s",
    "load from safetensors cache": "s",
    "default load, first start (convert + probe)": "s",
    "default load, second start (cached weights and choice)": "s",
    "peak RSS, convert": "GB",
    "peak RSS, cached": "GB",
    "bandwidth beside the decode runs": "GB/s",
    "prompt bytes": "bytes",
    "prefill (incl. first read-out)": "bytes/s",
    "large matrix product beside the runs": "GFLOP/s",
    "compute bound for prefill": "bytes/s",
    "time to first byte": "s",
    "step of 1 row": "s",
    "decode (cached, greedy)": "bytes/s",
    "decode time per byte": "ms",
    "decode time per block application": "µs",
    "bandwidth bound for decode": "bytes/s",
    "naive decode (full recompute)": "bytes/s",
    "translation bytes (incl. EOS)": "bytes",
    "translation (lm.translate)": "s",
    "trace (lm.trace)": "s",
    "trace reusing the translation": "s",
    "speculative decode (greedy)": "bytes/s",
    "drafted bytes kept": "share",
    "weights read per decoded byte": "MB",
    "resident weights (plain + packed copies)": "MB",
    "load, converting from the checkpoint": "s",
    "load, from the format's cache": "s",
    "peak RSS, converting": "GB",
    "peak RSS, from the format's cache": "GB",
    "answer + its trace (benchmark sentence)": "s",
    "engine, 1 visitor: answer bytes/s": "bytes/s",
    "engine, 8 visitors at once: answer bytes/s": "bytes/s",
}


def benchmark_model(name: str, folder: Path, plan: Plan, options: argparse.Namespace, work: Path) -> dict[str, Any]:
    repeats = options.repeats
    print(f"[{name}] loading ×{repeats} in subprocesses ...", file=sys.stderr, flush=True)
    source = pth_only_copy(folder, work / "pth") if (folder / checkpoint.SAFETENSORS).is_file() else folder
    figures = measure_loading(source, work, options)
    os.environ["EMOJILM_CACHE"] = str(work / "cache-main")
    lm = emojilm.load(source, device=options.device, dtype=options.dtype, probe=False)
    args = lm.model.args
    shape = f"dim {args.dim}, {args.n_layers} layers × {args.n_loops} loops, {args.n_heads} heads, {args.loop_mode}"
    print(f"[{name}] {shape}; decoding ...", file=sys.stderr, flush=True)
    probe = BandwidthProbe(lm.device)
    figures = {
        "parameters": lm.model.num_params() / 1e6,
        "fp32 weights": fp32_bytes(lm.model) / 1e6,
        "weights as loaded": f"{lm.info.dtype} on {lm.info.device}",
        **figures,
        **measure_decoding(lm, plan, repeats, probe),
        **measure_rows(lm, repeats),
        "kernel": lm.info.kernel,
    }
    del probe  # 1 GiB
    print(f"[{name}] concurrent visitors (engine) ...", file=sys.stderr, flush=True)
    figures |= measure_engine(source, options, plan.answer_bytes)
    texts = sample_texts(folder, plan)
    print(f"[{name}] translate and trace ...", file=sys.stderr, flush=True)
    figures |= measure_translation(lm, plan, repeats, texts)
    print(f"[{name}] speculative decoding ...", file=sys.stderr, flush=True)
    figures |= measure_speculative(lm, texts, plan, repeats)
    del lm
    formats = None
    if options.formats:
        print(f"[{name}] weight formats ...", file=sys.stderr, flush=True)
        formats = measure_formats(source, plan, options, work / "formats", texts, natural=name == "bundled")
    print(f"[{name}] done", file=sys.stderr, flush=True)
    return {"shape": shape, **figures}, formats


def as_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per figure, one column per model (long figures first become rows).

    A figure only some models have comes right after the one it follows there.
    """
    rows = []
    names = list(results)
    figures: list[str] = []
    for result in results.values():
        previous = None
        for figure in result:
            if figure not in figures:
                figures.insert(0 if previous is None else figures.index(previous) + 1, figure)
            previous = figure
    for figure in figures:
        row = {"figure": figure, "unit": UNITS.get(figure, UNITS.get(figure.split(", ")[0], ""))}
        for name in names:
            value = results[name].get(figure, "")
            row[name] = fmt(value)
        rows.append(row)
    return pd.DataFrame(rows).set_index("figure")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emojilm.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 6-layer random model instead of 24 layers")
    parser.add_argument("--model", default="bundled", help="a source for emojilm.load (default: bundled)")
    parser.add_argument("--real-shape", action=argparse.BooleanOptionalAction, default=True,
                        help="also benchmark a random-weight model of the published shape")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is shown)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", choices=WEIGHT_FORMATS, default=None,
                        help="the main table's weight format (default: float32 on CPU, bfloat16 on a GPU)")  # fmt: skip
    parser.add_argument("--formats", default=",".join(FORMATS), type=_format_list,
                        help="weight formats compared with float32 in a table of their own, comma-separated "
                        "(default: %(default)s; '' for none)")  # fmt: skip
    parser.add_argument("--training", action="store_true",
                        help="instead: training bytes/s in one process against torchrun's data parallel")  # fmt: skip
    parser.add_argument("--train-steps", type=int, default=40, help="steps per training run (default 40)")
    options = parser.parse_args(argv)
    if options.train_steps < 2:
        parser.error("--train-steps must be at least 2: a run's first step is not timed")
    return options


def _format_list(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in WEIGHT_FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown weight format(s) {', '.join(unknown)}; expected {WEIGHT_FORMATS}")
    return names


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    options.threads = torch.get_num_threads()
    torch.manual_seed(0)
    if options.training:
        with tempfile.TemporaryDirectory(prefix="emojilm-bench-") as tmp:
            table = measure_training(options, Path(tmp))
        print(machine_line(options.threads, options.device))
        print(f"training bytes/s: median of {options.repeats} runs of {options.train_steps} steps")
        print(table.to_string())
        return
    results, formats = {}, {}
    with tempfile.TemporaryDirectory(prefix="emojilm-bench-") as tmp:
        work = Path(tmp)
        folder = checkpoint.resolve(options.model).folder
        name = options.model
        results[name], formats[name] = benchmark_model(name, folder, SMALL_PLAN, options, work / "model")
        if options.real_shape:
            shape = REAL_SHAPE | ({"n_layers": 6} if options.quick else {})
            name = f"random {shape['n_layers']}×{shape['n_loops']}"
            print(f"[{name}] writing a random lingua checkpoint ...", file=sys.stderr, flush=True)
            write_random_checkpoint(work / "random" / "ckpt", shape)
            ckpt = work / "random" / "ckpt"
            results[name], formats[name] = benchmark_model(name, ckpt, LARGE_PLAN, options, work / "random")
    print(machine_line(options.threads, options.device))
    print(f"each figure: median of {options.repeats} runs (lm.trace alone: {LARGE_PLAN.trace_repeats} at real shape)")
    with pd.option_context("display.max_colwidth", 80):
        print(as_table(results).to_string())
        for name, measured in formats.items():
            if measured:
                columns, auto_note = measured
                print(f"\nweight formats, {name} (each against float32 in this run):")
                print(as_table(columns).to_string())
                print(f"the Space's default (auto): {auto_note}")


if __name__ == "__main__":
    main()
