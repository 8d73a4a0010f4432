"""Data-parallel training under torchrun (gloo, 2 CPU processes) against the same training in one process.

Two processes sum their gradients in another order than one process does, so their weights
differ by float rounding only: after 12 steps of a tiny model (weights of order 1, lr 3e-3),
max |Δw| was 7e-8 here, and 1.2e-7 after 12 more steps resumed on 2 processes. TOLERANCE
(1e-5) allows about 100× that; a shard one row off (the negative control) moved the weights
by 1.4e-2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from emojilm.model import LoopedTransformer
from emojilm.train import (
    TrainConfig,
    answer_bytes,
    encode_pairs,
    loss_at_loops,
    main,
    make_batch,
    parse_args,
    shard,
    train,
)

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5  # max |Δw| between a 2-process and a 1-process run of the same steps
HANG_GUARD = 300  # seconds: a launch that takes longer has hung (a run here takes well under a minute)
STEPS = 12

WORDS = {"pizza": "🍕", "cat": "🐱", "dog": "🐶", "rain": "🌧️", "sun": "☀️", "coffee": "☕", "beer": "🍺",
         "snow": "❄️", "love": "❤️", "fire": "🔥", "car": "🚗", "tree": "🌳", "moon": "🌙", "star": "⭐",
         "fish": "🐟", "birthday": "🎂🎉"}  # fmt: skip


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    """48 training pairs of three lengths (batches of neighbours differ from step to step), 4 held out."""
    rows = [{"text": text, "emoji": emoji, "split": "train"} for word, emoji in WORDS.items()
            for text in (word, f"I love {word}", f"a {word} here and there, again")]  # fmt: skip
    rows += [{"text": f"my {word}", "emoji": emoji, "split": "heldout"} for word, emoji in list(WORDS.items())[:4]]
    path = tmp_path_factory.mktemp("data") / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(out: Path, data: Path, **changes) -> TrainConfig:
    base = {"out": str(out), "data": str(data), "dim": 32, "n_heads": 2, "n_layers": 1, "n_loops": 3,
            "loop_mode": "add", "template": "tab", "steps": STEPS, "batch_size": 8, "warmup": 5,
            "eval_every": 0, "eval_size": 4, "max_seqlen": 64, "device": "cpu"}  # fmt: skip
    return TrainConfig(**{**base, **changes})


def flags(cfg: TrainConfig) -> list[str]:
    """emojilm.train's command-line options for cfg."""
    options = []
    for field in dataclasses.fields(cfg):
        value, flag = getattr(cfg, field.name), "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            options += [flag] if value else []
        else:
            options.append(f"{flag}={value}")
    return options


def torchrun(cfg: TrainConfig, *entry: str) -> subprocess.CompletedProcess:
    """emojilm.train with cfg's options on 2 processes (or the script `entry`), as a user starts it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += [*(entry or ("-m", "emojilm.train")), *flags(cfg)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            stdout, stderr = run.communicate(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            run.terminate()  # torchrun ends its workers on SIGTERM (SIGKILL would leave them running)
            pytest.fail(f"torchrun hung for {HANG_GUARD} s:\n{run.communicate()[1][-3000:]}")
    return subprocess.CompletedProcess(command, run.returncode, stdout, stderr)


def trained_by_torchrun(cfg: TrainConfig, *entry: str) -> TrainConfig:
    run = torchrun(cfg, *entry)
    assert run.returncode == 0, run.stderr[-3000:]
    return cfg


def weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    return torch.load(Path(cfg.out) / "consolidated.pth", weights_only=True)["model"]


def largest_difference(a: TrainConfig, b: TrainConfig) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def params(cfg: TrainConfig) -> dict:
    return json.loads((Path(cfg.out) / "params.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, data_file) -> TrainConfig:
    cfg = config(tmp_path_factory.mktemp("one"), data_file)
    train(cfg)
    return cfg


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_file) -> TrainConfig:
    return trained_by_torchrun(config(tmp_path_factory.mktemp("two"), data_file))


def test_the_test_flags_are_the_configs():
    cfg = config(Path("out"), Path("pairs.csv"), bf16=True, compile=True)
    assert parse_args(flags(cfg)) == cfg


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_the_parts_of_a_batch_cover_it_once_in_order(world_size):
    for rows in range(world_size, 11):
        batch = list(range(rows))
        parts = [shard(batch, rank, world_size) for rank in range(world_size)]
        assert [row for part in parts for row in part] == batch
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_parts_scaled_by_their_share_of_answer_bytes_give_the_global_gradient():
    """What DDP averages (each rank's mean × its share × the world size) is the one-process gradient;
    the plain mean of the ranks' means is not, when the parts hold different numbers of answer bytes."""
    torch.manual_seed(0)
    model = LoopedTransformer(config(Path("out"), Path("pairs.csv")).model_args())
    pairs = pd.DataFrame({"text": ["a", "b", "c", "d"], "emoji": ["🍕", "🎂🎉🎈", "🐱", "☀️🌧️❄️🌈"]})
    batch = encode_pairs(pairs, "tab", 64)

    def gradient(parts_and_scales) -> torch.Tensor:
        model.zero_grad()
        for part, scale in parts_and_scales:
            loss, _ = loss_at_loops(model, *make_batch(part, torch.device("cpu")), 1, 0.5)
            (loss * scale).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    world = 2
    parts = [batch[:1] + batch[2:3], batch[1:2] + batch[3:]]  # 2 pairs each, 5 and 17 answer bytes
    assert answer_bytes(parts[0]) != answer_bytes(parts[1])
    whole = gradient([(batch, 1.0)])
    shares = [world * answer_bytes(part) / answer_bytes(batch) for part in parts]  # as each rank scales its loss
    by_share = gradient([(part, share / world) for part, share in zip(parts, shares, strict=True)])  # DDP averages
    mean_of_means = gradient([(part, 1 / world) for part in parts])
    torch.testing.assert_close(by_share, whole, rtol=1e-5, atol=1e-7)
    assert (mean_of_means - whole).abs().max() > 100 * (by_share - whole).abs().max()


def test_two_processes_train_the_weights_of_one(one_process, two_processes):
    assert largest_difference(one_process, two_processes) <= TOLERANCE
    one, two = params(one_process), params(two_processes)
    assert (one["distributed"]["dp_replicate"], one["data"]["batch_size"]) == (1, 8)
    assert (two["distributed"]["dp_replicate"], two["data"]["batch_size"]) == (2, 4)
    assert two["train_config"]["batch_size"] == 8  # --batch-size is the global batch
    # rank 0 reports the global batch's loss, not its own part's
    assert two["emojilm"]["history"][-1]["loss"] == pytest.approx(one["emojilm"]["history"][-1]["loss"], rel=1e-5)


def test_a_shard_one_row_off_does_not_pass(one_process, tmp_path):
    shifted = trained_by_torchrun(config(tmp_path, one_process.data), "tests/ddp_faults.py", "shifted-shards")
    assert largest_difference(one_process, shifted) > TOLERANCE


def test_a_run_resumed_with_another_world_size_continues_the_same_batches(one_process, tmp_path):
    """One process trains STEPS steps; then 2 processes carry on as one process would have."""
    for name in ("by-one", "by-two"):
        shutil.copytree(one_process.out, tmp_path / name)
    by_one = config(tmp_path / "by-one", one_process.data, steps=2 * STEPS, resume=True)
    train(by_one)
    # With a time limit far off, rank 0's clock is shared every step, and the schedule still follows the steps.
    by_two = config(tmp_path / "by-two", one_process.data, steps=2 * STEPS, resume=True, time_limit=1e6)
    trained_by_torchrun(by_two)
    assert largest_difference(by_one, by_two) <= TOLERANCE
    assert params(by_two)["emojilm"]["trained_steps"] == 2 * STEPS
    assert largest_difference(one_process, by_two) > TOLERANCE  # it did train further


def test_a_dying_rank_ends_the_run_with_torchruns_report(tmp_path, data_file):
    run = torchrun(config(tmp_path, data_file), "tests/ddp_faults.py", "rank-1-dies")  # a hang fails by the guard
    assert run.returncode != 0
    # torchrun lists every failed rank; which one it calls the root cause races (rank 0 may fail on the lost
    # connection first), so the killed rank is looked for among all of them.
    report = run.stderr.split("ddp_faults.py FAILED")[-1]
    failures = re.split(r"\n\s*\[\d+\]:", report)[1:]
    assert any(re.search(r"rank\s*:\s*1 ", f) and "SIGKILL" in f for f in failures), run.stderr[-3000:]


def test_ranks_that_read_different_data_stop_with_a_message(tmp_path, data_file):
    run = torchrun(config(tmp_path, data_file), "tests/ddp_faults.py", "rank-1-data")
    assert run.returncode != 0
    for rank in (0, 1):
        assert f"emojilm.train (rank {rank}): the ranks disagree on (step to start from, training pairs" in run.stderr
    assert "every node must read the same --data" in run.stderr


@pytest.mark.parametrize(
    ("world_size", "batch_size", "message"),
    [
        (2, 7, "emojilm.train (rank 0): --batch-size 7 is the global batch, split evenly among the 2 processes"),
        (1, 0, "emojilm.train: --batch-size must be at least 1, got 0"),
    ],
)
def test_a_batch_that_does_not_split_is_refused_with_a_message(monkeypatch, tmp_path, data_file, world_size,
                                                               batch_size, message):  # fmt: skip
    if world_size > 1:  # as torchrun sets them; the options are checked before any process group is joined
        for name, value in {"RANK": "0", "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0"}.items():
            monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(flags(config(tmp_path, data_file, batch_size=batch_size)))
    assert not torch.distributed.is_initialized()


@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_blocks_train_the_weights_of_eager_ones(one_process, tmp_path):
    compiled = config(tmp_path, one_process.data, steps=4, compile=True)
    eager = config(tmp_path / "eager", one_process.data, steps=4)
    train(compiled)
    train(eager)
    assert largest_difference(compiled, eager) <= TOLERANCE
    assert params(compiled)["distributed"]["compile"] is True
