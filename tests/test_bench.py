"""The benchmark script runs end to end and its own correctness columns hold (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from emojilm import bench, bench_training, native
from emojilm.paths import HELDOUT_FILE
from tests.conftest import tiny_params
from tests.tiny_lms import tiny_lm

POSITIVE_FIGURES = [
    "bandwidth beside the decode runs",
    "decode / bandwidth bound",
    "decode / bandwidth bound, lowest run",
    "prefill / compute bound",
    "engine, 1 visitor: answer bytes/s",
    "engine, bytes/s at 8 visitors / at 1",
    "engine, last of 8 visitors / a lone visitor",
    "speculative / plain decode, page's examples",
    "speculative / plain decode, 30 held-out phrases",
    "trace / translation",
    "trace reusing the translation / translation, page's examples: median",
    "trace reusing the translation / translation, 30 held-out phrases: largest",
    "loop passes, trace reusing the translation / translation",
    "loop passes, trace reusing the translation / translation, page's examples: largest",
    "step of 4 rows / step of 1 row",
    "step of 4 positions / step of 1 row",
    "step of 8 branches / step of 1 row",
    "plain / plain decode (noise band), page's examples",
    "loop passes, speculative / plain, page's examples",
    "default load, first start / convert",
]
# The weight formats' table: figures every format has, each > 0.
FORMAT_FIGURES = [
    "weights read per decoded byte",
    "resident weights (plain + packed copies)",
    "peak RSS, converting",
    "decode / float32 decode",
    "decode / bandwidth bound of the bytes it reads",
    "answer + its trace / float32's",
    "trace reusing the translation / translation",
    "top byte same as float32's (teacher-forced)",
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bench_runs_on_a_small_checkpoint(make_checkpoint, capsys, dtype):
    """In bf16 (the GPU table's dtype, run here on CPU) the equality rows may say no: near-ties round apart."""
    folder, _ = make_checkpoint(tiny_params(max_seqlen=256))  # the bench's prompt and answers fit
    phrases = [{"text": f"phrase {i}", "emoji": "🍕"} for i in range(40)]  # drafting is timed on the first 30 too
    (folder / HELDOUT_FILE).write_text("".join(json.dumps(p) + "\n" for p in phrases), encoding="utf-8")
    formats = "float32,bfloat16,int8" if dtype == "float32" else ""
    bench.main(["--model", str(folder), "--no-real-shape", "--repeats", "1", "--dtype", dtype, "--formats", formats])
    out = capsys.readouterr().out
    main_table, _, formats_table = out.partition("\nweight formats, ")
    lines = {line.split("  ")[0]: line.split() for line in main_table.splitlines()}
    assert lines["weights as loaded"][-3:] == [dtype, "on", "cpu"]
    # float32: not packed, a tiny model's matrices sit in cache (row by row where x @ W rounds unsteadily);
    # bf16 without our kernels: oneDNN's packed one, or F.linear where oneDNN has no bf16 on this CPU
    kernels = {
        "float32": ["x @ W"],
        "bfloat16": [f"emojilm {'AMX' if native.amx() else 'AVX-512'} bf16"]
        if native.supports("bfloat16")
        else ["oneDNN packed bf16", "F.linear bf16"],
    }[dtype]
    assert " ".join(lines["kernel"]).endswith((*kernels, *(f"{k}, row by row" for k in kernels)))
    for figure in POSITIVE_FIGURES:
        assert float(lines[figure][-1].replace(",", "")) > 0, figure  # (1,172: thousands)
    for count in ("costs over 1.5 translations", "needs over 1.5 translations' loop passes"):
        assert 0 <= int(lines[f"30 held-out phrases whose trace {count}"][-1]) <= 30
    if dtype == "float32":
        assert lines["naive bytes == cached bytes"][-1] == "yes"
        for texts in ("page's examples", "30 held-out phrases"):
            assert lines[f"speculative bytes == plain bytes, {texts}"][-1] == "yes"
        rows = {line.split("  ")[0]: line.split() for line in formats_table.splitlines()}
        assert formats_table.splitlines()[1].split()[-3:] == ["float32", "bfloat16", "int8"]  # the header
        for figure in FORMAT_FIGURES:
            assert all(float(value.replace(",", "")) > 0 for value in rows[figure][-3:]), figure
        assert rows["max |Δlogit| vs float32 (teacher-forced)"][-3] == "0"  # float32 against itself
        assert rows["decode / float32 decode"][-3] == "1.00"
        assert float(rows["max |Δlogit| vs float32 (teacher-forced)"][-1]) > 0
        assert sum(v == "yes" for v in rows["the Space's default (auto) here"][-3:]) == 1
    else:
        assert not formats_table


def test_a_figure_only_one_model_has_comes_after_the_one_it_follows_there():
    table = bench.as_table(
        {
            "small": {"decode": 1.0, "speculative, examples": 2.0, "formats": 3.0},
            "large": {"decode": 4.0, "speculative, sentence": 5.0, "formats": 6.0},
        }
    )
    assert list(table.index) == ["decode", "speculative, sentence", "speculative, examples", "formats"]
    assert table.loc["speculative, examples", "large"] == ""
    assert table.loc["speculative, sentence", "large"] == "5.00"


def test_loop_passes_counts_one_pass_per_loop_of_each_model_call():
    """Plain decoding runs every loop once per call, the prefill and then each id but the last."""
    lm = tiny_lm()
    for n_loops in (1, 3):
        result, passes = bench.loop_passes(lm.model, lambda n=n_loops: lm.translate("hi", n_loops=n, max_new_tokens=7))
        assert passes == n_loops * len(result.token_ids)
    assert bench.loop_passes(lm.model, lambda: None) == (None, 0)  # the counting hook is gone afterwards


def test_training_throughput_runs_one_process_and_torchrun(capsys):
    """Both setups train (the bundled model's options, 2 steps each) and report their bytes/s."""
    bench.main(["--training", "--train-steps", "2", "--repeats", "1"])
    rows = {line.split("  ")[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    setups = bench_training.training_setups("cpu")
    one, data_parallel = (rows[name] for name, _, _ in setups)  # "1 process × N threads", ...
    for row in (one, data_parallel):  # ... bytes/s, slowest–fastest run (one run: the same), ratio to the first
        assert float(row[-3].replace(",", "")) > 0 and row[-2] == f"{row[-3]}–{row[-3]}" and float(row[-1]) > 0
    assert one[-1] == "1.00"
