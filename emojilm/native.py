"""Our own CPU kernels for bf16 and int8 weight-only products (emojilm/native/products.cpp), and a
block fused around them (`attention_inputs` and `block_output` around torch's attention for a
prompt; `decode_block`, its attention ours too, for a decode step's one position per row):
emojilm.model runs every block through them where these kernels serve all its products.

torch's bf16 and int8 products stream a decode step's weights at 15 and 9 GB/s on an AMX Xeon whose
memory streams 24-31 GB/s; these read them at 20-25 GB/s (docs/benchmarks.md, "Kernel trials"). They
need an x86 CPU with AVX-512 (and AVX512_BF16 for bf16) and a C++ compiler: torch builds them on
first use (about 4 s, then kept in torch's extension folder under a name that says which source,
flags and torch built them). Where any of that is missing, or EMOJILM_NATIVE=0, `module()` is None
and emojilm.kernels serves torch's own ops instead.

Where the CPU has AMX (and EMOJILM_AMX is not 0), the products run on its tile unit instead, at every
row count: 1 to 16 rows then cost about what one row costs, and a prompt's rows a fraction of the
AVX-512 kernels' time. A process uses one of the two for all its products (`amx()`), since each
gives a row the same bits at any row count, but not the other's bits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

NAME = "emojilm_products"
SOURCE = Path(__file__).parent / "native" / "products.cpp"
FLAGS = ["-O3", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16"]
ABANDONED_AFTER_S = 3600  # a build folder this old belongs to a killed build
NEEDED = {"int8": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}
NEEDED["bfloat16"] = NEEDED["int8"] | {"avx512_bf16"}


def cpu_flags() -> set[str]:
    """This CPU's feature flags, as Linux names them (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supports(weight_format: str) -> bool:
    """Whether the kernel for this format ("bfloat16" or "int8") can serve here."""
    return NEEDED[weight_format] <= cpu_flags() and module() is not None


@functools.cache
def module():
    """The built kernels, or None (the reason is logged once)."""
    if os.environ.get("EMOJILM_NATIVE", "1") == "0":
        log.info("EMOJILM_NATIVE=0: torch's own bf16 and int8 products serve")
        return None
    if platform.machine() not in ("x86_64", "AMD64") or not NEEDED["int8"] <= cpu_flags():
        log.info("this CPU has no AVX-512: torch's own bf16 and int8 products serve")
        return None
    try:
        return _load_or_build()
    except Exception as err:  # no compiler, no ninja, a failed build: all mean torch's ops serve
        log.warning("could not build emojilm's CPU kernels (%s): torch's own bf16 and int8 products serve", err)
        return None


def _load_or_build():
    """The kernels' library, built first if this source, these flags and this torch have none yet.

    Each build runs in a folder of its own and moves its library into place in one rename, so processes
    share no lock: torch's own folder holds a lock file while it builds, and a process killed meanwhile
    (a Space restarted, an app that took too long to start) leaves it behind, making every later
    process wait on it forever. A build folder an hour old is one such process's leftover: the next
    build removes it (a build takes seconds)."""
    from torch.utils import cpp_extension

    stamp = [SOURCE.read_bytes(), " ".join(FLAGS).encode(), torch.__version__.encode(), sys.version.encode()]
    key = hashlib.sha256(b"\0".join(stamp)).hexdigest()[:16]
    folder = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()) / "emojilm"
    library = folder / f"{NAME}-{key}.so"
    if library.exists():
        spec = importlib.util.spec_from_file_location(NAME, library)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return loaded
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("build-*"):
        with contextlib.suppress(FileNotFoundError):  # another build may remove it first
            if time.time() - leftover.stat().st_mtime > ABANDONED_AFTER_S:
                shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix="build-") as build:
        _put_ninja_on_path()
        built = cpp_extension.load(name=NAME, sources=[str(SOURCE)], extra_cflags=FLAGS, build_directory=build)
        os.replace(built.__file__, library)  # the module stays loaded from the moved file
        built.__file__ = str(library)
    return built


def amx() -> bool:
    """Whether the AMX kernel serves here: the CPU has AMX for bf16 and int8, Linux grants this process
    its tile registers, and EMOJILM_AMX is not 0."""
    return module() is not None and bool(module().AMX) and os.environ.get("EMOJILM_AMX", "1") != "0"


def pack(weight: torch.Tensor, weight_format: str, amx_blocks: bool = False) -> torch.Tensor:
    """An [out, in] matrix in a kernel's layout, zero-padded to whole tiles and chunks (zeros add nothing
    to a sum), so that each tile is one contiguous stream: for the AVX-512 kernel [tiles, chunks,
    TILE_OUT, lanes]; for the AMX one (amx_blocks) [blocks, chunks, lanes / group, AMX_OUT, group], a
    chunk's inputs in groups of 4 bytes (bf16 pairs, int8 quads) per output."""
    built = module()
    if amx_blocks:
        tile_out, group = built.AMX_OUT, 4 // weight.element_size()
        lanes = built.AMX_TILE_BYTES // tile_out // weight.element_size()
    else:
        tile_out, lanes = built.TILE_OUT, built.BF16_LANES if weight_format == "bfloat16" else built.INT8_LANES
    out, inputs = weight.shape
    tiles, chunks = -(-out // tile_out), -(-inputs // lanes)
    tiles += tiles % 2 if amx_blocks else 0  # the AMX kernel takes blocks in pairs
    padded = weight.new_zeros(tiles * tile_out, chunks * lanes)
    padded[:out, :inputs] = weight
    if amx_blocks:  # the tile unit's order: [input group][output][group]
        return padded.view(tiles, tile_out, chunks, lanes // group, group).permute(0, 2, 3, 1, 4).contiguous()
    return padded.view(tiles, tile_out, chunks, lanes).transpose(1, 2).contiguous()


def product(x: torch.Tensor, packed: torch.Tensor, n_out: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    """x [rows, in] (float32) times a packed matrix of n_out rows: bfloat16 (packed bf16), or int8 with its
    float32 scale per row. Returns float32 [rows, n_out]."""
    tiles, chunks = packed.shape[:2]
    tile_out, lanes = (packed.shape[3], packed.shape[2] * packed.shape[4]) if packed.dim() == 5 else packed.shape[2:]
    rows, width = x.shape
    bf16 = scale is None
    if not (x.device.type == packed.device.type == "cpu" and packed.is_contiguous() and tiles * tile_out >= n_out
            and packed.dtype == (torch.bfloat16 if bf16 else torch.int8)
            and (chunks - 1) * lanes < width <= chunks * lanes):  # fmt: skip
        raise ValueError(f"x {tuple(x.shape)} does not fit packed weights {tuple(packed.shape)} of {n_out} rows")
    if not bf16 and (scale.dtype != torch.float32 or not scale.is_contiguous() or scale.numel() != n_out):
        raise ValueError("the int8 scale must be float32, one per output row")
    x = x.float().contiguous()
    out = torch.empty(rows, n_out)
    module().product(x.data_ptr(), rows, width, matrix(packed, n_out, scale), out.data_ptr())
    return out


def matrix(packed: torch.Tensor, n_out: int, scale: torch.Tensor | None) -> tuple[int, int, int, int, int]:
    """A packed matrix as the module's functions take it: (tiles' address, outputs, chunks, scale's address
    or 0, layout: 1 for AMX blocks, else 0)."""
    return packed.data_ptr(), n_out, packed.shape[1], 0 if scale is None else scale.data_ptr(), int(packed.dim() == 5)


def attention_inputs(x: torch.Tensor, norm: torch.Tensor, eps: float, qkv, turns: torch.Tensor, rotated: int):
    """rms_norm(x) times the packed `qkv` matrix, its first `rotated` outputs (q and k) turned by RoPE:
    x [rows, dim] float32, turns [rows, head_dim] as (cos, sin) pairs. Returns float32 [rows, outputs]."""
    x, turns = x.float().contiguous(), turns.float().contiguous()
    rows, dim = x.shape
    out = torch.empty(rows, qkv[1])
    module().attention_inputs(x.data_ptr(), rows, dim, norm.data_ptr(), eps, qkv, turns.data_ptr(), rotated,
                              turns.shape[1], out.data_ptr())  # fmt: skip
    return out


def block_output(x: torch.Tensor, attended: torch.Tensor, o, norm: torch.Tensor, eps: float, w13, w2):
    """The rest of a block after its attention, for x [rows, dim] and attended [rows, heads' width]
    (float32): h = x + attended times o, then h + (silu(g) * u) times w2, g | u = rms_norm(h) times w13."""
    x, attended = x.float().contiguous(), attended.float().contiguous()
    rows, dim = x.shape
    out = torch.empty(rows, dim)
    module().block_output(x.data_ptr(), attended.data_ptr(), rows, dim, attended.shape[1], o, norm.data_ptr(), eps,
                          w13, w13[1] // 2, w2, out.data_ptr())  # fmt: skip
    return out


def decode_block(
    x: torch.Tensor,
    slots: torch.Tensor,
    shape: tuple[int, int, int],
    loop: int,
    layer: int,
    turns: torch.Tensor,
    norms: tuple,
    matrices: tuple,
) -> torch.Tensor:
    """A whole block for x [rows, dim] (float32), one position per row: attention_inputs, each row's
    attention in its own KV cache at (loop, layer), block_output. shape: (heads, kv heads, head dim);
    norms: (attention norm, ffn norm, eps); matrices: (qkv, o, w13, w2). slots: int64 [rows, SLOT_FIELDS],
    per row where its float32 cache sits and where it attends (the caches' decode_slots, which check
    that the writes stay inside)."""
    x, turns = x.float().contiguous(), turns.float().contiguous()
    fields = module().SLOT_FIELDS
    if slots.dtype != torch.int64 or tuple(slots.shape) != (x.shape[0], fields) or not slots.is_contiguous():
        raise ValueError(f"slots {tuple(slots.shape)} do not fit x {tuple(x.shape)}")
    (attention_norm, ffn_norm, eps), (qkv, o, w13, w2) = norms, matrices
    rows, dim = x.shape
    out = torch.empty(rows, dim)
    module().decode_block(x.data_ptr(), rows, dim, *shape, slots.data_ptr(), loop, layer, attention_norm.data_ptr(),
                          qkv, turns.data_ptr(), ffn_norm.data_ptr(), eps, o, w13, w13[1] // 2, w2,
                          out.data_ptr())  # fmt: skip
    return out


def _put_ninja_on_path() -> None:
    """torch builds with the ninja executable; the pip package's may not be on PATH outside an activated venv."""
    try:
        import ninja
    except ImportError:
        return
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
