"""Weight formats (bfloat16, int8 weight-only) against float32, their kernels' fallbacks, their cache,
and the load-time choice of the fastest format that agrees with float32 (emojilm.formats)."""

from __future__ import annotations

import json

import pytest
import torch

import emojilm
from emojilm import checkpoint, formats, kernels, native, views
from emojilm.formats import LOGIT_TOLERANCE
from emojilm.paths import BUNDLED_DIR
from emojilm.sources import SourceConfig
from tests.conftest import tiny_params

FORMATS = ("bfloat16", "int8")
ATTENTION_GATES = {f"layers.{i}.attention.gate.weight": 0.2 * torch.randn(4, 32) for i in range(2)}  # one per head
MODES = {
    "add": {},
    "inject_embeddings": {},
    "gated": {"loop_gates": torch.tensor([0.5, 0.8, 1.1])},
    "add_with_attention_gates": ATTENTION_GATES,
}


def tiny_lm(make_checkpoint, mode: str, dtype: str, seed: int = 0):
    section = tiny_params(loop_residual=True if mode == "gated" else mode.removesuffix("_with_attention_gates"))
    folder, _ = make_checkpoint(section, seed=seed, state_override=MODES[mode])
    return emojilm.load(folder, device="cpu", dtype=dtype, probe=False, template="newline")


def spread(logits: torch.Tensor) -> float:
    """The tolerance's yardstick: the widest range of logits at any one position."""
    return float((logits.amax(-1) - logits.amin(-1)).max())


# Each format's kernels, fastest first: ours (emojilm.native: AMX, AVX-512), torch's own op, the plain product.
KERNELS = {
    "bfloat16": ("emojilm AMX bf16", "emojilm AVX-512 bf16", "oneDNN packed bf16", "F.linear bf16"),
    "int8": ("emojilm AMX int8", "emojilm AVX-512 int8", "torch._weight_int8pack_mm", "int8 dequantized per product"),
}


@pytest.fixture(params=["AMX", "AVX-512", "torch's"])
def kernel_path(request, monkeypatch):
    """Run a test on each of our kernels (where they serve here) and on torch's own."""
    if request.param != "torch's" and not all(native.supports(f) for f in FORMATS):
        pytest.skip("emojilm's kernels cannot serve on this machine")
    if request.param == "AMX" and not native.amx():
        pytest.skip("no AMX here (or EMOJILM_AMX=0)")
    monkeypatch.setattr(native, "amx", lambda: request.param == "AMX")
    if request.param == "torch's":
        monkeypatch.setattr(native, "supports", lambda weight_format: False)
    return request.param


def test_int8_rows_are_symmetric_per_row_within_half_a_step():
    weight = torch.randn(40, 24, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 3, 40)[:, None]
    rows, scale = kernels.quantize_rows(weight)
    assert rows.dtype == torch.int8 and scale.dtype == torch.bfloat16 and scale.shape == (40,)
    assert rows.abs().max() <= 127
    expected = (weight.abs().amax(dim=1) / 127).bfloat16()  # one scale per output row, written independently
    assert torch.equal(scale, expected)
    error = (rows.float() * scale.float()[:, None] - weight).abs()
    assert (error <= 0.51 * scale.float()[:, None]).all()  # rounding (and, for a row's largest, bf16's scale)
    assert (rows.abs().amax(dim=1) >= 126).all()  # every row uses its range


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", FORMATS)
def test_each_format_tracks_float32_within_its_tolerance(make_checkpoint, mode, dtype, kernel_path):
    exact, lm = tiny_lm(make_checkpoint, mode, "float32"), tiny_lm(make_checkpoint, mode, dtype)
    assert lm.info.dtype == dtype and lm.model.weight_format == dtype
    assert (lm.model.layers[0].attention.wg is not None) == mode.endswith("attention_gates")
    tokens = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference, ours = exact.model.loop_logits(tokens, 5), lm.model.loop_logits(tokens, 5)
    assert ours.dtype == torch.float32
    delta = float((ours - reference).abs().max())
    assert 0 < delta <= LOGIT_TOLERANCE[dtype] * spread(reference)


def test_the_tolerance_can_fail(make_checkpoint, monkeypatch):
    """int8 rows quantized with 4x coarser steps (a 5-bit format) stray beyond int8's tolerance."""
    exact = tiny_lm(make_checkpoint, "add", "float32")
    quantize = kernels.quantize_rows

    def coarse(weight):
        rows, scale = quantize(weight)
        return (rows.float() / 8).round().mul(8).to(torch.int8), scale

    monkeypatch.setattr(kernels, "quantize_rows", coarse)
    lm = tiny_lm(make_checkpoint, "add", "int8")
    tokens = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference, ours = exact.model.loop_logits(tokens), lm.model.loop_logits(tokens)
    assert float((ours - reference).abs().max()) > LOGIT_TOLERANCE["int8"] * spread(reference)


@pytest.mark.parametrize("dtype", FORMATS)
def test_cached_decoding_equals_a_full_recompute(make_checkpoint, dtype, kernel_path):
    """Step by step with the KV cache, each new position's logits are a full forward's (teacher-forced)."""
    model = tiny_lm(make_checkpoint, "inject_embeddings", dtype).model
    tokens = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        full = model(tokens)
        cache = model.new_cache(None, 1, 20)
        steps = [model(tokens[:, :8], cache=cache)]
        steps += [model(tokens[:, t : t + 1], cache=cache, start=t) for t in range(8, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-3 * spread(full))


@pytest.mark.parametrize("dtype", FORMATS)
def test_every_kernel_computes_the_same_model(make_checkpoint, monkeypatch, dtype):
    """Each kernel steps aside for the next where it cannot serve; all compute the same model."""
    weight = torch.randn(64, 64)
    torch_kernel_here = (  # asked before the kernels are patched away below
        kernels._bf16_packed(weight.bfloat16()) is not None
        if dtype == "bfloat16"
        else kernels._int8_kernel_works(*kernels.quantize_rows(weight))
    )
    served = []
    if native.supports(dtype) and native.amx():
        served.append(tiny_lm(make_checkpoint, "add", dtype))
    monkeypatch.setattr(native, "amx", lambda: False)
    if native.supports(dtype):
        served.append(tiny_lm(make_checkpoint, "add", dtype))
    monkeypatch.setattr(native, "supports", lambda weight_format: False)
    served.append(tiny_lm(make_checkpoint, "add", dtype))
    monkeypatch.setattr(kernels, "_bf16_packed", lambda weight: None)
    monkeypatch.setattr(kernels, "_int8_kernel_works", lambda rows, scale: False)
    served.append(tiny_lm(make_checkpoint, "add", dtype))
    expected = list(KERNELS[dtype][-len(served) :])
    if not torch_kernel_here:  # this CPU or build lacks torch's fast kernel: its fallback serves in its place
        expected[-2] = expected[-1]
    assert [lm.info.kernel for lm in served] == expected
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        plain = served[-1].model(tokens)
        for lm in served[:-1]:
            torch.testing.assert_close(lm.model(tokens), plain, rtol=0, atol=LOGIT_TOLERANCE[dtype] * spread(plain))


def test_a_kernel_that_disagrees_is_not_used(monkeypatch, caplog):
    rows, scale = kernels.quantize_rows(torch.randn(64, 32))
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda x, rows, scale: torch.zeros(x.shape[0], rows.shape[0]))
    product = kernels.Int8Product(rows, scale)
    assert not product.fast and "disagrees" in caplog.text
    x = torch.randn(2, 32)
    torch.testing.assert_close(product(x), x @ (rows.float() * scale.float()[:, None]).t())


def test_a_converted_format_is_cached_and_read_back(make_checkpoint, isolated_caches):
    folder, _ = make_checkpoint(tiny_params(), seed=0)
    first = emojilm.load(folder, dtype="int8", probe=False)
    assert "converted to int8" in first.info.weights
    cached = list(isolated_caches.glob("converted/*/model-int8.safetensors"))
    assert len(cached) == 1
    second = emojilm.load(folder, dtype="int8", probe=False)
    assert "int8 weights (cached conversion" in second.info.weights
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        assert torch.equal(first.model(tokens), second.model(tokens))
    assert isinstance(second.model.layers[0].attention.wq, emojilm.model.Int8Linear)


def test_a_corrupt_format_cache_is_rebuilt(make_checkpoint, isolated_caches):
    folder, _ = make_checkpoint(tiny_params(), seed=0)
    emojilm.load(folder, dtype="bfloat16", probe=False)
    (cached,) = isolated_caches.glob("converted/*/model-bfloat16.safetensors")
    cached.write_bytes(b"not safetensors")
    again = emojilm.load(folder, dtype="bfloat16", probe=False)
    assert "converted to bfloat16" in again.info.weights


def fake_speeds(fastest: str):
    return lambda args, device: {"float32": 1.0, "bfloat16": 0.5, "int8": 0.5} | {fastest: 0.25}


def test_auto_serves_the_fastest_format_that_agrees(monkeypatch):
    monkeypatch.setattr(formats, "product_seconds", fake_speeds("bfloat16"))
    lm = emojilm.load("bundled", dtype="auto", check_texts=["I love pizza", "a cup of coffee"])
    assert lm.info.dtype == "bfloat16"
    assert "bfloat16 chosen" in lm.info.format_note and "bfloat16 agrees with float32" in lm.info.format_note
    panel = views.model_info_markdown(lm)
    assert "bfloat16 weights" in panel and lm.info.kernel in panel and "agrees with float32" in panel

    def never(*_):
        raise AssertionError("the verdict is cached: nothing is measured again")

    monkeypatch.setattr(formats, "product_seconds", never)
    assert emojilm.load("bundled", dtype="auto").info.dtype == "bfloat16"


def test_a_verdict_timed_otherwise_is_made_again(monkeypatch):
    """A cached verdict says which row counts were timed; one from code that timed others (older code timed
    a single row, where int8 wins even on CPUs whose int8 kernel slows with every row) is not trusted."""
    monkeypatch.setattr(formats, "product_seconds", fake_speeds("bfloat16"))
    assert emojilm.load("bundled", dtype="auto").info.dtype == "bfloat16"
    verdict = checkpoint.format_cache(BUNDLED_DIR, "format-choice.json")
    stale = json.loads(verdict.read_text())
    assert stale["rows"] == list(formats.TIMED_ROWS)
    stale["rows"] = [1]
    verdict.write_text(json.dumps(stale))
    monkeypatch.setattr(formats, "product_seconds", lambda args, device: {"float32": 1.0, "bfloat16": 0.9, "int8": 0.9})
    assert emojilm.load("bundled", dtype="auto").info.dtype == "float32"  # measured again: nothing clearly faster


def negated_int8_rows(monkeypatch) -> None:
    """int8 weights of the wrong sign: a format that disagrees with float32 wherever it matters."""
    quantize = kernels.quantize_rows
    monkeypatch.setattr(kernels, "quantize_rows", lambda weight: (lambda r, s: (-r, s))(*quantize(weight)))


def test_auto_moves_on_where_the_fastest_format_disagrees(monkeypatch):
    monkeypatch.setattr(formats, "product_seconds", fake_speeds("int8"))
    negated_int8_rows(monkeypatch)
    lm = emojilm.load("bundled", dtype="auto")
    assert lm.info.dtype == "bfloat16"
    assert "int8 disagrees" in lm.info.format_note and "bfloat16 agrees" in lm.info.format_note


def test_auto_keeps_float32_where_no_faster_format_agrees(monkeypatch):
    monkeypatch.setattr(formats, "product_seconds", lambda args, device: {"float32": 1.0, "bfloat16": 0.9, "int8": 0.3})
    negated_int8_rows(monkeypatch)
    lm = emojilm.load("bundled", dtype="auto")
    assert lm.info.dtype == "float32" and lm.info.kernel.startswith("x @ W")
    assert "int8 disagrees" in lm.info.format_note and "bfloat16" not in lm.info.format_note.split(";", 1)[1]


def test_auto_keeps_float32_where_nothing_is_clearly_faster(monkeypatch):
    seconds = {"float32": 1.0, "bfloat16": 0.9, "int8": 0.95}
    monkeypatch.setattr(formats, "product_seconds", lambda args, device: seconds)
    lm = emojilm.load("bundled", dtype="auto")
    assert lm.info.dtype == "float32" and "no faster format" in lm.info.format_note


def test_the_measured_speeds_cover_every_format():
    seconds = formats.product_seconds(emojilm.load("bundled").model.args, torch.device("cpu"))
    assert set(seconds) == {"float32", *formats.CANDIDATES} and all(s > 0 for s in seconds.values())


def test_bad_formats_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="float32, bfloat16, float16, int8, auto"):
        emojilm.load("bundled", dtype="int4")
    with pytest.raises(ValueError, match="weight format 'fp8'"):
        SourceConfig(dtype="fp8")
