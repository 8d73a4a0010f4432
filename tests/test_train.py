"""A tiny training run: the loss falls, and the checkpoint loads with nothing guessed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import emojilm
from emojilm.corpus import recipe_path
from emojilm.evaluate import accuracy_by_loops, is_hit
from emojilm.train import TrainConfig, encode_pairs, loss_at_loops, make_batch, train

PAIRS = [
    ("I love pizza", "🍕❤️"),
    ("pizza", "🍕"),
    ("my cat", "🐱"),
    ("a dog", "🐶"),
    ("rain", "🌧️"),
    ("sun", "☀️"),
    ("coffee", "☕"),
    ("beer", "🍺"),
]
RECIPE = {"seed": 5, "rows": 11, "languages": None, "pairs": 11}  # as the corpus CLI records its build


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pairs.csv"
    rows = [{"text": t, "emoji": e, "split": "train"} for t, e in PAIRS]
    rows += [{"text": t, "emoji": e, "split": "heldout"} for t, e in PAIRS[:3]]
    pd.DataFrame(rows).to_csv(path, index=False)
    recipe_path(path).write_text(json.dumps(RECIPE))
    return path


def tiny_config(out, data, **changes) -> TrainConfig:
    base = {"out": str(out), "data": str(data), "dim": 32, "n_heads": 2, "n_layers": 1, "n_loops": 2,
            "loop_mode": "add", "template": "tab", "steps": 60, "batch_size": 8, "warmup": 5,
            "eval_every": 30, "eval_size": 8, "max_seqlen": 64, "device": "cpu"}  # fmt: skip
    return TrainConfig(**{**base, **changes})


def pairs_batch(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """All of PAIRS as one training batch: (tokens, targets)."""
    pairs = pd.DataFrame(PAIRS, columns=["text", "emoji"])
    return make_batch(encode_pairs(pairs, cfg.template, cfg.max_seqlen), torch.device("cpu"))


def mean_loss(model, cfg: TrainConfig) -> float:
    tokens, targets = pairs_batch(cfg)
    with torch.no_grad():
        return float(loss_at_loops(model, tokens, targets, cfg.n_loops, 0.0)[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(out, data_file)
    train(cfg)
    return cfg


def assert_loss_fell(cfg: TrainConfig) -> None:
    trained = emojilm.load(cfg.out)
    torch.manual_seed(123)
    fresh = type(trained.model)(trained.model.args)  # same shape, random weights
    assert mean_loss(trained.model, cfg) < 0.5 * mean_loss(fresh, cfg)


def test_training_lowers_the_loss(trained):
    assert_loss_fell(trained)


def test_bf16_autocast_on_cpu_trains_too(tmp_path, data_file):
    cfg = tiny_config(tmp_path / "bf16", data_file, bf16=True, eval_every=0)
    train(cfg)
    assert_loss_fell(cfg)


def test_checkpoint_records_its_variant(trained):
    lm = emojilm.load(trained.out)
    assert (lm.info.loop_mode, lm.info.mode_source) == ("add", "recorded")
    assert (lm.info.template, lm.info.template_source) == ("tab", "recorded")
    assert lm.n_loops == 2


def test_lingua_layout_is_written(trained):
    folder = Path(trained.out)
    params = json.loads((folder / "params.json").read_text())
    assert params["model"]["loop_residual"] == "add"
    assert params["data"]["tokenizer"]["name"] == "bytes"
    saved = torch.load(folder / "consolidated.pth", weights_only=True)
    assert set(saved) == {"model", "optim"} and "tok_embeddings.weight" in saved["model"]
    assert params["emojilm"]["history"], "held-out accuracy was never measured"
    assert params["emojilm"]["corpus"] == RECIPE


def test_resume_continues_the_step_count(trained, data_file, tmp_path):
    shutil.copytree(trained.out, tmp_path / "run")
    train(tiny_config(tmp_path / "run", data_file, steps=70, resume=True))
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["emojilm"]["trained_steps"] == 70


def test_accuracy_by_loops_has_a_row_per_loop_count(trained):
    lm = emojilm.load(trained.out)
    pairs = pd.DataFrame(PAIRS, columns=["text", "emoji"])
    table = accuracy_by_loops(lm, pairs, loops=[1, 2, 3])
    assert table["loops"].tolist() == [1, 2, 3]
    assert table["n"].eq(len(PAIRS)).all()
    assert table["hit"].between(0, 1).all() and (table["exact"] <= table["hit"]).all()
    # a trained 2-loop model reproduces most of its training pairs
    assert table.set_index("loops").loc[2, "hit"] >= 0.5


def test_a_model_that_has_decoded_still_trains(trained):
    """Evaluation decodes in inference mode; what it caches on the model must not block backward."""
    lm = emojilm.load(trained.out)
    accuracy_by_loops(lm, pd.DataFrame(PAIRS[:1], columns=["text", "emoji"]), loops=[1])
    loss, _ = loss_at_loops(lm.model, *pairs_batch(trained), 1, 0.5)
    loss.backward()
    assert lm.model.tok_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("output", "expected", "hit"),
    [("🍕❤️", "🍕❤️", True), ("❤🍕", "🍕❤️", True), ("🍕", "🍕❤️", False), ("🐱", "🍕", False), ("", "🍕", False)],
)
def test_is_hit_needs_every_expected_emoji(output, expected, hit):
    assert is_hit(output, expected) is hit
