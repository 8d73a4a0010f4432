"""The few-rows product path (oneDNN's packed linear) and its fallback (x @ W) compute the same model.

Every step shape a decode meets is checked against the float64 reference of
tests/test_model.py: one row, a few rows (the trace's per-loop answers), a few
positions of one row (a speculative check), and a prefill, for every loop mode,
on the packed path and on the fallback.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import pytest
import torch

import emojilm
from emojilm import kernels
from tests.test_model import MODES, make_model, reference_for

STEP_ROWS = (1, 2, 4, 8)


@pytest.fixture(autouse=True)
def pack_tiny_matrices(monkeypatch):
    """The test models' matrices are far below PACK_MIN_BYTES: pack them anyway, to test the path."""
    monkeypatch.setattr(kernels, "PACK_MIN_BYTES", 0)


def without_packing(monkeypatch) -> None:
    """As on a torch build without oneDNN: packing declines, x @ W serves every product."""
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)


def count_packed_products(monkeypatch) -> list[int]:
    rows = []
    product = kernels._packed_product

    def counted(x, packed):
        rows.append(x.shape[0])
        return product(x, packed)

    monkeypatch.setattr(kernels, "_packed_product", counted)
    return rows


@pytest.fixture(params=["packed", "fallback"])
def path(request, monkeypatch):
    if request.param == "fallback":
        without_packing(monkeypatch)
    return request.param


@pytest.mark.parametrize("variant", ["gqa", "gate_per_element"])  # an attention gate is fused with q, k and v
@pytest.mark.parametrize("mode", MODES)
def test_every_step_shape_matches_the_reference(make_checkpoint, mode, variant, path):
    model, state, section = make_model(make_checkpoint, variant, mode)
    assert model.packed == (path == "packed")
    n_loops = model.args.n_loops
    tokens = torch.randint(0, 256, (max(STEP_ROWS), 12), generator=torch.Generator().manual_seed(2))
    expected = reference_for(state, section, mode, tokens, n_loops)[-1]  # [rows, T, vocab]
    with torch.no_grad():
        for rows in STEP_ROWS:  # a prefill of 10 positions, then one position for `rows` rows at once
            cache = model.new_cache(n_loops, rows, 12)
            model(tokens[:rows, :10], cache=cache)
            step = model(tokens[:rows, 10:11], cache=cache, start=10)
            torch.testing.assert_close(step[:, 0].double(), expected[:rows, 10], rtol=1e-4, atol=1e-4)
        for width in (2, 4, 8):  # one row, `width` positions at once after a prefill of 3
            cache = model.new_cache(n_loops, 1, 12)
            model(tokens[:1, :3], cache=cache)
            chunk = model(tokens[:1, 3 : 3 + width], cache=cache, start=3)
            torch.testing.assert_close(chunk.double(), expected[:1, 3 : 3 + width], rtol=1e-4, atol=1e-4)


def test_products_of_a_few_rows_take_the_packed_path(make_checkpoint, monkeypatch):
    model, _, _ = make_model(make_checkpoint, "gqa", "add")
    assert model.packed, "this torch build packs fp32 CPU weights"
    seen = count_packed_products(monkeypatch)
    n_blocks = model.args.n_layers * model.args.n_loops
    with torch.no_grad():
        most = kernels.PACKED_ROWS
        pad = model.products()[0].pad_to  # kernels.pad_for_speed: the fastest count from min_rows on
        assert {p.pad_to for p in model.products()} == {pad} and 2 <= pad <= kernels.PAD_MOST
        chunked = (
            (1, [pad]),  # a lone row rides with copies of itself (Product.fewest_rows: at least twice)
            (2, [max(2, pad)]),
            (most, [most]),
            (most + 1, [most // 2 + 1, most // 2]),
            (3 * most - 1, [most, most, most - 1]),
        )
        for rows, calls in chunked:
            seen.clear()
            model(torch.zeros(rows, 1, dtype=torch.long))
            assert seen == calls * 4 * n_blocks, rows  # four matrices per block


def make_product(kind: str, in_features: int, out_features: int) -> kernels.Product:
    weight = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(1)) / in_features**0.5
    if kind == "int8":
        return kernels.Int8Product(*kernels.quantize_rows(weight))
    if kind == "bfloat16":
        return kernels.BFloat16Product(weight.bfloat16())
    return kernels.DenseProduct(weight.t().contiguous())


@pytest.mark.parametrize(
    "kind, shape, packed",
    [
        ("float32", (1024, 3072), True),  # oneDNN's packed kernel
        ("float32", (2816, 1024), True),  # its 1-row kernel rounds otherwise here (AMX Xeon, AMD EPYC)
        ("float32", (128, 384), False),  # x @ W (the bundled model's)
        ("bfloat16", (1024, 3072), False),
        ("bfloat16", (2816, 1024), False),  # its 1-row path rounded otherwise on an AMD EPYC
        ("int8", (1024, 3072), False),
    ],
)
def test_a_row_gets_the_same_bits_at_every_row_count(monkeypatch, kind, shape, packed):
    """Kernels round otherwise as the row count changes (on an AMD EPYC x @ W rounds 1 to 3 rows
    otherwise than 4 or more); each product runs at least min_rows, so a row's bits never depend on
    how many rows share its call: checked here at every count from 1 to 64, not only those
    steady_rows samples."""
    if not packed:
        monkeypatch.setattr(kernels, "PACK_MIN_BYTES", 2**40)
    product = make_product(kind, *shape)
    if product.min_rows is None:
        pytest.skip(f"{product.kernel} gives no row count steady bits on this CPU: the engine steps rows alone")
    # Half the rows exactly bf16 values: on an AMD EPYC, bf16's 1-row path rounded those otherwise
    x = torch.randn(65, shape[0], generator=torch.Generator().manual_seed(0))
    x[::2] = x[::2].bfloat16().float()
    alone = product(x[32])
    for rows in range(1, 65):
        first = 32 - rows // 2
        assert torch.equal(product(x[first : first + rows])[rows // 2], alone), rows
    torch.testing.assert_close(alone, x[32] @ make_product("float32", *shape).dense, rtol=2e-2, atol=5e-2)


def test_fewer_rows_than_a_kernel_rounds_steadily_are_padded(monkeypatch):
    """A kernel that rounds 1 to 3 rows otherwise (made to, here) runs every call on 4 rows or more (on
    pad_to rows, the fastest count from 4 on)."""
    seen = []

    class RoundsFewRowsOtherwise(kernels.DenseProduct):
        def product(self, x):
            seen.append(x.numel() // x.shape[-1])
            return super().product(x) + (1e-3 if seen[-1] < 4 else 0.0)

    monkeypatch.setattr(kernels, "_STEADY", {})
    product = RoundsFewRowsOtherwise(torch.randn(32, 48))
    assert product.min_rows == 4 and 4 <= product.pad_to <= kernels.PAD_MOST
    x = torch.randn(9, 32)
    seen.clear()
    alone = product(x[:1, None])  # [1, 1, 32]: any leading shape
    assert seen == [product.pad_to] and alone.shape == (1, 1, 48)
    for rows in (2, 3, 5, 9):
        assert torch.equal(product(x[:rows])[0], alone[0, 0])
    torch.testing.assert_close(alone[0, 0], x[0] @ product.dense, rtol=0, atol=2e-3)


def test_products_that_multiply_each_row_alone_are_never_padded(monkeypatch):
    """pad_for_speed pads a model's products to the row count that runs fastest, but not those that
    multiply every row on its own (a row-by-row x @ W padded to 4 or 8 rows rounded a model's rows
    otherwise): here 8 rows are made the fastest, and only the padded kind takes them."""
    monkeypatch.setattr(kernels, "PACK_MIN_BYTES", 2**40)  # x @ W row by row

    class FasterWithMoreRows(kernels.DenseProduct):
        def product(self, x):
            time.sleep(0.002 * max(1, kernels.PAD_MOST + 1 - x.numel() // x.shape[-1]))
            return super().product(x)

    monkeypatch.setattr(kernels, "_PADDING", {})
    padded = FasterWithMoreRows(torch.randn(32, 48))
    padded.row_by_row, padded.fewest_rows, padded.min_rows = False, 2, 2  # as a packed product
    alone = kernels.DenseProduct(torch.randn(32, 48))
    assert alone.row_by_row and alone.fewest_rows == 1 and alone.pad_to == 1
    kernels.pad_for_speed([padded, alone])
    assert padded.pad_to == kernels.PAD_MOST and alone.pad_to == 1


def test_a_matrix_too_small_to_pack_multiplies_row_by_row(monkeypatch):
    """Matrices that sit in cache take x @ W, one row at a time in one batched call: steady from one row
    (a lone row runs alone), and x @ W's result."""
    monkeypatch.setattr(kernels, "PACK_MIN_BYTES", 2**20)
    dense = torch.randn(32, 48)
    product = kernels.DenseProduct(dense)
    assert product.row_by_row and product.kernel == "x @ W, row by row" and product.min_rows == 1
    x = torch.randn(6, 32)
    rows = product(x)
    torch.testing.assert_close(rows, x @ dense, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(product(x[r]), rows[r]) for r in range(6))


@pytest.mark.parametrize("mode", ["add", "inject_embeddings", "gated"])
def test_greedy_answers_and_traces_are_the_same_on_both_paths(make_checkpoint, monkeypatch, mode):
    packed, _, _ = make_model(make_checkpoint, "gqa", mode, seed=4)
    without_packing(monkeypatch)
    fallback, _, _ = make_model(make_checkpoint, "gqa", mode, seed=4)
    assert packed.packed and not fallback.packed
    fast, plain = (emojilm.EmojiLM(m, "{text}\n", None) for m in (packed, fallback))
    for text in ("I love pizza", "a cup of coffee", "ünïcødé ☕"):
        assert fast.translate(text, max_new_tokens=12).token_ids == plain.translate(text, max_new_tokens=12).token_ids
        drafted = fast.translate(text, max_new_tokens=12, draft_loops=1)
        assert drafted.token_ids == plain.translate(text, max_new_tokens=12).token_ids
        ours, theirs = fast.trace(text, max_new_tokens=8), plain.trace(text, max_new_tokens=8)
        assert ours.output == theirs.output
        pd.testing.assert_frame_equal(ours.per_loop_outputs, theirs.per_loop_outputs, rtol=1e-4)


def test_a_failing_or_disagreeing_kernel_falls_back_to_x_at_w(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="emojilm.kernels")  # a kernel this CPU lacks is an info line
    dense = torch.randn(32, 48)
    assert kernels.packed_copy(dense) is not None
    monkeypatch.setattr(kernels, "_packed_product", lambda x, packed: torch.zeros(x.shape[0], 48))
    assert kernels.packed_copy(dense) is None
    assert "disagrees" in caplog.text

    def refused(x, packed):
        raise RuntimeError("no oneDNN kernel for this CPU")

    monkeypatch.setattr(kernels, "_packed_product", refused)
    assert kernels.packed_copy(dense) is None
    assert "no oneDNN kernel" in caplog.text
    x = torch.randn(3, 32)
    torch.testing.assert_close(kernels.matmul(x, dense, None), x @ dense, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_only_fp32_weights_are_packed(dtype):
    assert kernels.packed_copy(torch.randn(32, 48).to(dtype)) is None


def test_matrices_that_fit_in_cache_are_not_packed(monkeypatch):
    monkeypatch.setattr(kernels, "PACK_MIN_BYTES", 2**20)
    assert kernels.packed_copy(torch.randn(256, 1023)) is None  # just under 1 MiB
    assert kernels.packed_copy(torch.randn(256, 1024)) is not None
    assert not emojilm.load("bundled").model.packed  # 0.2-0.4 MB matrices
