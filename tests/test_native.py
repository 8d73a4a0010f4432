"""Our own bf16 and int8 kernels (emojilm.native), AVX-512 and AMX, against an independent float64
computation, their row bits at every row count, and the way they step aside where they cannot serve."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from emojilm import kernels, native
from emojilm.config import ModelArgs
from emojilm.kvcache import BranchCache
from emojilm.model import LoopedTransformer

FORMATS = ("bfloat16", "int8")


@pytest.fixture(autouse=True, params=["AVX-512", "AMX"])
def kernel(request, monkeypatch):
    """Every test runs with each kernel serving the products (AMX where this CPU has it)."""
    if request.param == "AMX" and not native.amx():
        pytest.skip("no AMX here (or EMOJILM_AMX=0)")
    monkeypatch.setattr(native, "amx", lambda: request.param == "AMX")
    return request.param


def served(weight_format: str) -> None:
    if not native.supports(weight_format):
        pytest.skip(f"emojilm's {weight_format} kernel cannot serve on this machine (see the log)")


def weights(weight_format: str, out_features: int, in_features: int, seed: int = 1):
    """A random matrix in the format, and the exact float64 matrix it stands for."""
    weight = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed)) / in_features**0.5
    if weight_format == "bfloat16":
        weight = weight.bfloat16()
        return (weight,), weight.double()
    rows, scale = kernels.quantize_rows(weight)
    return (rows, scale), rows.double() * scale.double()[:, None]


def reference(weight_format: str, x: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """What the kernel computes, in float64: bf16 multiplies x rounded to bf16, int8 the float32 x, or
    on AMX x as two int8 digits of its row's scale (amx_digits)."""
    if weight_format == "bfloat16":
        x = x.bfloat16()
    elif native.amx():
        x = amx_digits(x)
    return x.double() @ exact.t()


def amx_digits(x: torch.Tensor) -> torch.Tensor:
    """x [rows, in] as the AMX int8 kernel writes it, in float64: s * (d0 + d1 / 128) with s = max |x| / 127,
    d0 = round(x / s) and d1 = round((x / s - d0) * 128), each step in float32 as the kernel's."""
    inverse = torch.tensor(127.0) / x.abs().amax(dim=1, keepdim=True)
    q = x * inverse
    d0 = q.round()
    d1 = ((q - d0) * 128).round()
    return (d0.double() + d1.double() / 128) / inverse.double()


@pytest.mark.parametrize("weight_format", FORMATS)
@pytest.mark.parametrize("shape", [(4, 16), (37, 100), (130, 33), (1, 7), (1024, 2816)])
def test_products_match_float64_on_any_shape(weight_format, shape):
    """Widths that are not whole chunks and output counts that are not whole tiles, 0 to 9 rows."""
    served(weight_format)
    parts, exact = weights(weight_format, *shape)
    product = kernels.NativeProduct(weight_format, *parts)
    x = torch.randn(9, shape[1], generator=torch.Generator().manual_seed(2))
    for rows in range(10):
        got = product(x[:rows])
        assert got.shape == (rows, shape[0]) and got.dtype == torch.float32
        expected = reference(weight_format, x[:rows], exact)
        # float32 sums of in_features terms: a few float32 steps of the terms' size
        bound = 1e-6 * shape[1] ** 0.5 * (x[:rows].double().abs() @ exact.abs().t()).clamp_min(1e-3)
        assert ((got.double() - expected).abs() <= bound).all(), rows


@pytest.mark.parametrize("weight_format", FORMATS)
def test_denormal_inputs_count_as_zero(weight_format):
    """On denormals the FMA units take a slow path (a load's checks feed them on purpose): the kernels
    count them as zero, so an input with denormals gives the bits of the same input with zeros there."""
    served(weight_format)
    parts, _ = weights(weight_format, 64, 256)
    product = kernels.NativeProduct(weight_format, *parts)
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(3))
    with_denormals = x.clone()
    with_denormals[:, ::5] = 1e-39
    with_denormals[0] = 1e-39  # a row of them alone: its sums would be tiny, not zero
    zeros = x.clone()
    zeros[:, ::5] = 0.0
    zeros[0] = 0.0
    assert torch.equal(product(with_denormals), product(zeros))
    assert (torch.tensor([1e-39]) * 2.0).item() > 0  # the kernel restores torch's own rounding mode after it


@pytest.mark.parametrize("weight_format", FORMATS)
def test_a_row_gets_the_same_bits_alone_and_among_any_rows(weight_format):
    """Every row is summed on its own, so the kernel needs no padding: a row's bits are the same alone and
    in the middle of any number of rows, 1 to 64 (values that are exactly bf16's too, and tiny ones)."""
    served(weight_format)
    parts, _ = weights(weight_format, 300, 1024)
    product = kernels.NativeProduct(weight_format, *parts)
    assert product.min_rows == 1 and product.pad_to == 1
    x = kernels.probe_input(65, 1024, torch.device("cpu"))
    x[::2] = x[::2].bfloat16().float()
    alone = product(x[32])
    for rows in range(1, 65):
        first = 32 - rows // 2
        assert torch.equal(product(x[first : first + rows])[rows // 2], alone), rows


@pytest.mark.parametrize("weight_format", FORMATS)
def test_the_fastest_product_is_ours_where_it_serves_and_torchs_elsewhere(monkeypatch, weight_format):
    parts, exact = weights(weight_format, 64, 48)
    make = kernels.bfloat16_product if weight_format == "bfloat16" else kernels.int8_product
    if native.supports(weight_format):
        assert isinstance(make(*parts), kernels.NativeProduct)
    monkeypatch.setattr(native, "supports", lambda weight_format: False)
    theirs = make(*parts)
    assert not isinstance(theirs, kernels.NativeProduct)
    x = torch.randn(3, 48, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(theirs(x).double(), x.double() @ exact.t(), rtol=2e-2, atol=2e-2)


def test_a_kernel_that_disagrees_is_not_used(monkeypatch, caplog):
    served("int8")
    parts, _ = weights("int8", 64, 48)
    monkeypatch.setattr(kernels.NativeProduct, "product", lambda self, x: torch.zeros(x.shape[0], 64))
    with caplog.at_level(logging.WARNING):
        assert kernels.NativeProduct.serving("int8", *parts) is None
    assert "disagrees" in caplog.text


def test_no_kernels_where_switched_off_or_the_build_fails(monkeypatch, caplog, tmp_path):
    """EMOJILM_NATIVE=0 switches them off; a build that fails (no compiler, say) is logged, not raised."""
    monkeypatch.setenv("EMOJILM_NATIVE", "0")
    assert native.module.__wrapped__() is None
    monkeypatch.setenv("EMOJILM_NATIVE", "1")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # no library built yet
    if not native.NEEDED["int8"] <= native.cpu_flags():
        pytest.skip("no AVX-512 here: the build is never tried")
    from torch.utils import cpp_extension

    def no_compiler(**kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    with caplog.at_level(logging.WARNING):
        assert native.module.__wrapped__() is None
    assert "no C++ compiler" in caplog.text


def test_a_build_killed_half_way_holds_up_no_later_process(tmp_path, kernel):
    """What a process killed while building leaves (its own build folder, and the lock file torch's
    shared folder would hold) makes no later process wait: the next one builds, and the one after loads
    that library without building. A killed build's folder an hour old is removed, a newer one kept (it
    may belong to a build still running)."""
    if kernel == "AMX" or native.module() is None:
        pytest.skip("emojilm's kernels are not built on this machine (see the log)")
    for leftover in ("emojilm/build-killed", "emojilm/build-killed-long-ago", native.NAME):
        (tmp_path / leftover).mkdir(parents=True)
        (tmp_path / leftover / "lock").touch()
    long_ago = time.time() - native.ABANDONED_AFTER_S - 60
    os.utime(tmp_path / "emojilm" / "build-killed-long-ago", (long_ago, long_ago))
    env = os.environ | {"TORCH_EXTENSIONS_DIR": str(tmp_path), "EMOJILM_NATIVE": "1"}
    loads = "from emojilm import native; print(native.module().__file__)"

    def load() -> Path:
        done = subprocess.run([sys.executable, "-c", loads], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return Path(done.stdout.strip())

    built = load()
    assert built.parent == tmp_path / "emojilm" and built.name.startswith(native.NAME + "-")
    made = built.stat().st_mtime_ns
    assert load() == built and built.stat().st_mtime_ns == made
    assert sorted(p.name for p in built.parent.iterdir()) == sorted(["build-killed", built.name])


def test_the_layout_keeps_every_weight(kernel):
    """pack puts each weight at its tile, chunk, row-in-tile and lane, and pads with zeros only."""
    served("int8")
    if kernel == "AMX":
        pytest.skip("the AMX layout: the next test")
    weight = torch.arange(10 * 40, dtype=torch.float32).view(10, 40) + 1
    packed = native.pack(weight, "int8")
    tiles, chunks, tile_out, lanes = packed.shape
    assert (tiles, chunks, tile_out, lanes) == (3, 3, 4, 16)  # products.cpp's TILE_OUT and int8 chunks
    for n, k in [(0, 0), (3, 17), (9, 39), (5, 32)]:
        assert packed[n // tile_out, k // lanes, n % tile_out, k % lanes] == weight[n, k]
    assert packed.count_nonzero() == weight.numel()


@pytest.mark.parametrize("weight_format", FORMATS)
def test_the_amx_layout_keeps_every_weight(kernel, weight_format):
    """AMX blocks of 16 outputs (an even count of them), chunks of 64 bytes per output, inputs in groups
    of 4 bytes (bf16 pairs, int8 quads) inside each output's run."""
    served(weight_format)
    if kernel != "AMX":
        pytest.skip("the AVX-512 layout: the test above")
    weight = (torch.arange(10 * 70, dtype=torch.float32).view(10, 70) % 100 + 1).to(
        torch.bfloat16 if weight_format == "bfloat16" else torch.int8
    )
    packed = native.pack(weight, weight_format, amx_blocks=True)
    lanes = 32 if weight_format == "bfloat16" else 64
    group = 2 if weight_format == "bfloat16" else 4
    assert packed.shape == (2, -(-70 // lanes), lanes // group, 16, group)
    for n, k in [(0, 0), (3, 17), (9, 69), (5, 33)]:
        c, i = divmod(k, lanes)
        assert packed[n // 16, c, i // group, n % 16, i % group] == weight[n, k]
    assert packed.count_nonzero() == weight.numel()


def random_model(weight_format: str, **changes) -> LoopedTransformer:
    """A small random model in the format, fused: a width that is no whole chunk, GQA, two loops."""
    shape = dict(dim=40, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=10, hidden_dim=72, max_seqlen=32)
    args = ModelArgs(**(shape | changes), vocab_size=258, n_loops=2, loop_mode="add")
    torch.manual_seed(5)
    model = LoopedTransformer(args)
    for name, parameter in model.named_parameters():
        if "norm" in name:  # norms away from 1, so that their weights count
            parameter.data.uniform_(0.5, 1.5)
    return model.eval().to_format(weight_format).fuse_weights()


decode_block = native.decode_block


def counted_decode_blocks(monkeypatch) -> list[int]:
    """A list that grows by one at each native.decode_block call (a decode step runs each block in one
    call, its attention ours too)."""
    calls: list[int] = []
    monkeypatch.setattr(native, "decode_block", lambda *args: calls.append(1) or decode_block(*args))
    return calls


def without_fused_blocks(model: LoopedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The model's logits with its blocks' small ops run by torch (the same products)."""
    fused = [block.native for block in model.layers]
    try:
        for block in model.layers:
            block.native = None
        return model(tokens)
    finally:
        for block, products in zip(model.layers, fused, strict=True):
            block.native = products


@pytest.mark.parametrize("weight_format", FORMATS)
@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("head_dim", [10, 32])  # RoPE pair by pair; 8 pairs a vector
@torch.inference_mode()
def test_fused_blocks_compute_what_torchs_ops_compute(weight_format, window, head_dim, monkeypatch):
    served(weight_format)
    model = random_model(weight_format, sliding_window=window, head_dim=head_dim, dim=4 * head_dim)
    decode_blocks = counted_decode_blocks(monkeypatch)
    assert model.native_blocks
    tokens = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(3))
    fused, by_torch = model(tokens), without_fused_blocks(model, tokens)
    # int8 multiplies the same float32 inputs; bf16 rounds them to bf16 first, where one ulp apart may flip
    tolerance = 1e-4 if weight_format == "int8" else 3e-2
    assert (fused - by_torch).abs().max() <= tolerance * by_torch.abs().max()
    # and a cached decode, one position at a time, reads the same logits as the whole sequence at once
    cache = model.new_cache(None, 3, 12)
    stepped = torch.cat([model(tokens[:, t : t + 1], cache=cache, start=t) for t in range(12)], dim=1)
    assert (stepped - fused).abs().max() <= 1e-4 * fused.abs().max()
    assert len(decode_blocks) == 12 * model.args.n_loops * model.args.n_layers


@pytest.mark.parametrize("weight_format", FORMATS)
@pytest.mark.parametrize("window", [None, 5])
@torch.inference_mode()
def test_branches_decode_on_fused_blocks_as_their_whole_sequences(weight_format, window, monkeypatch):
    """A trace's branches (BranchCache: each row reads the trunk before its branch, then its own steps)
    decode through decode_block too, reading the trunk in place: each row's logits are its whole
    sequence's, and what torch's attention gives."""
    served(weight_format)
    model = random_model(weight_format, sliding_window=window)
    decode_blocks = counted_decode_blocks(monkeypatch)
    generator = torch.Generator().manual_seed(6)
    trunk_tokens = torch.randint(0, 256, (1, 9), generator=generator)
    own = torch.randint(0, 256, (3, 4), generator=generator)
    branch_at = torch.tensor([9, 4, 7])

    def branch_logits() -> torch.Tensor:
        trunk = model.new_cache(None, 1, 9)
        model(trunk_tokens, cache=trunk)
        branches = BranchCache.grow(trunk, branch_at, own.shape[1])
        return torch.cat([model(own[:, s : s + 1], cache=branches, start=s) for s in range(own.shape[1])], dim=1)

    stepped = branch_logits()
    assert len(decode_blocks) == own.shape[1] * model.args.n_loops * model.args.n_layers
    for r, at in enumerate(branch_at.tolist()):
        whole = model(torch.cat([trunk_tokens[:, :at], own[r : r + 1]], dim=1))[0, at:]
        assert (stepped[r] - whole).abs().max() <= 1e-4 * whole.abs().max()
    monkeypatch.setattr(BranchCache, "decode_slots", lambda self, start: None)  # torch's attention instead
    by_torch = branch_logits()
    assert (stepped - by_torch).abs().max() <= 1e-4 * by_torch.abs().max()


@torch.inference_mode()
def test_a_decode_step_past_its_caches_loops_is_refused_as_on_torchs_path():
    served("int8")
    model = random_model("int8")
    cache = model.new_cache(1, 1, 8)
    tokens = torch.tensor([[5, 6, 7]])
    list(model.loop_states(tokens[:, :2], 1, cache=cache))
    with pytest.raises(IndexError):
        list(model.loop_states(tokens[:, 2:], 2, cache=cache, start=2))


@pytest.mark.parametrize("weight_format", FORMATS)
@torch.inference_mode()
def test_a_row_of_a_fused_block_gets_the_same_bits_alone_and_in_a_batch(weight_format):
    served(weight_format)
    model = random_model(weight_format)
    tokens = torch.randint(0, 256, (5, 9), generator=torch.Generator().manual_seed(4))
    together = model(tokens)
    for row in range(5):
        assert torch.equal(model(tokens[row : row + 1])[0], together[row])


def test_blocks_with_an_output_gate_run_on_torchs_ops():
    served("int8")
    assert not random_model("int8", attn_gate="head").native_blocks
    assert not random_model("float32").native_blocks
