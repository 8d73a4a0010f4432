"""Matrix products for inference, one prepared matrix per format: float32, bfloat16, int8.

A decode step multiplies a few rows by every weight matrix: one row for a byte,
2 to 32 for a speculative check or for the trace's per-loop answers. Such a
product runs at the speed the matrix streams from memory, so the only way past
float32's speed is to read fewer bytes per weight (docs/benchmarks.md):

- float32 (exact, the reference): torch's x @ W over the fused [in, out] matrix
  for one row; oneDNN's prepacked linear for 2 rows or more, in chunks of up to
  PACKED_ROWS: x @ W blocks poorly on a few rows, and its rows round differently
  as their number changes. Only for matrices of PACK_MIN_BYTES or more: on
  matrices that sit in cache the packed call's overhead dominates, and those run
  x @ W (row by row where its rows round unsteadily: DenseProduct). The packed
  copy is a second copy of the weights.
- bfloat16 (the real model's training precision) and int8 weight-only (symmetric,
  one scale per output row): our own AVX-512 or AMX kernels (emojilm.native), which
  read the weights at the memory's rate and give each row the same bits at any row
  count (AMX: at about one row's cost up to 16 rows).
  Where they cannot serve (another CPU, no compiler), torch's own: for bf16,
  oneDNN's prepacked bf16 linear for every row count, faster than F.linear and
  x @ W^T, in chunks of up to BF16_ROWS, F.linear where it is missing; for int8,
  torch._weight_int8pack_mm, which takes bf16 inputs (it is far slower on fp32
  ones), and where it is missing the rows are dequantized for each product (slow, exact).

The trials behind these choices: docs/benchmarks.md, "Kernel trials".

A row's bits must not depend on how many rows share its product, so that an answer
does not depend on who else is asking (emojilm.engine). Kernels change their
blocking, and with it the rounding, with the row count: on a 2-core AMX Xeon the
1-row float32 product rounds otherwise than 2 or more rows, on an AMD EPYC x @ W
rounds 1 to 3 rows otherwise than 4 or more, and a kernel's 1-row path may round
otherwise on some inputs only. So a lone row rides at least twice (but where every
row is multiplied on its own), and each product finds, when it is made, the fewest rows
from which a row's bits stay the same at every row count a decode meets
(`steady_rows`, on `probe_input`), and runs fewer rows than that with the last one
repeated, up to whichever count from there to PAD_MOST a pass over the model's
products runs fastest at on this CPU (`pad_for_speed`: on an AMD EPYC, oneDNN's
packed bf16 ran 3 to 6 rows faster than one or two). Row chunks keep each kernel where it gives a row
the same bits whatever rows come with it (checked on an AMX Xeon: packed float32
from 2 to 256 rows, packed bf16 from 2 to 128, int8 from 2 to 300; bf16 rounds
otherwise from about 132). The engine prefills several requests' prompts in one
forward only where a check at run time finds this holds up to PREFILL_ROWS.

bfloat16 and int8 products take float32 inputs and return float32 outputs: only
the product itself runs in the format, so the rest of the model is float32's.

The fast kernels are private torch ops, so each serves only behind a check: it
must exist in this build, run on this device, and agree with the plain
computation on a random input; otherwise the fallback serves, and says so (a
warning where a kernel disagrees; an info line where this CPU or build lacks it,
as oneDNN's bf16 on a CPU without AVX-512: expected there, and the panel names the kernel).
"""

from __future__ import annotations

import logging
import statistics
import time

import torch
import torch.nn.functional as F

from emojilm import native

log = logging.getLogger(__name__)

PACKED_ROWS = 256  # the most rows per packed float32 call (1 row: x @ W)
BF16_ROWS = 128  # the most rows per packed bf16 call
PACK_HINT = 4  # the row count oneDNN lays the copy out for (fast from 2 to 8 rows in trials)
PACK_MIN_BYTES = 2**20  # smaller matrices stay in a core's L2 cache: x @ W serves them faster
INT8_MAX = 127
# Row counts a product is checked over for steady bits: a decode step's (1 to 8 requests), a trace's
# per-loop answers and a speculative check's (up to 8 rows of 8 drafted positions).
STEADY_COUNTS = (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64)
_STEADY: dict[tuple, int | None] = {}  # steady_rows per (kind, kernel, shape, device)
PAD_MOST = 8  # the most rows a call is padded to
PAD_ROUNDS = 5  # timed passes per row count (pad_for_speed)
_PADDING: dict[tuple, int] = {}  # pad_for_speed's row count per set of products
# torch's bf16 and int8 products run over row chunks of at most this many rows: both kernels stream a
# [5632, 1024] matrix slower than its two halves (docs/benchmarks.md, "Kernel trials").
CHUNK_ROWS = 4096


def packed_copy(dense: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's prepacked copy of a float32 [in, out] matrix, or None where that path is unavailable."""
    if dense.device.type != "cpu" or dense.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return None
    if dense.numel() * dense.element_size() < PACK_MIN_BYTES:
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(dense.t().contiguous(), PACK_HINT)
        check = torch.randn(PACK_HINT, dense.shape[0], generator=torch.Generator().manual_seed(0))
        if not torch.allclose(_packed_product(check, packed), check @ dense, rtol=1e-4, atol=1e-5):
            log.warning("oneDNN's packed product disagrees with x @ W here; using x @ W")
            return None
    except (AttributeError, NotImplementedError, RuntimeError) as err:  # an op missing or refused in this build
        log.info("oneDNN's packed linear is unavailable (%s); using x @ W", err)
        return None
    return packed


def matmul(x: torch.Tensor, dense: torch.Tensor, packed: torch.Tensor | None) -> torch.Tensor:
    """x [..., in] @ dense [in, out], through the packed copy (in row chunks) for 2 rows or more."""
    rows = x.numel() // x.shape[-1]
    if packed is None or rows < 2:
        return x @ dense
    flat = x.reshape(rows, x.shape[-1])
    out = _cat([_packed_product(chunk, packed) for chunk in row_chunks(flat, PACKED_ROWS)], dim=0)
    return out.view(*x.shape[:-1], dense.shape[1])


def _packed_product(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 rows of an [out, in] matrix and their bf16 scales (one per row: |row| max / 127)."""
    weight = weight.detach().float()
    scale = (weight.abs().amax(dim=1).clamp_min(1e-12) / INT8_MAX).bfloat16()
    # The kernel takes bf16 scales: round with the very scale it will use (the row's max may then clamp by <0.4 %).
    rows = (weight / scale.float()[:, None]).round().clamp(-INT8_MAX, INT8_MAX)
    return rows.to(torch.int8), scale


def dequantize_rows(rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return rows.float() * scale.float()[:, None]


class Product:
    """One (fused) weight matrix, prepared for products x [..., in] -> [..., out] in one format."""

    kernel = ""  # the kernel's name, for the model panel and the bench
    packed = None  # oneDNN's packed copy, where the kernel reads one
    # A kernel's 1-row call may take another path (a matrix-vector product) that rounds otherwise on
    # some inputs only (bf16 on an AMD EPYC: on a model's activations, never on random ones), so a lone
    # row rides twice; a kernel that multiplies every row on its own may run one alone.
    fewest_rows = 2
    # The fewest rows a call runs (fewer are padded by repeating the last), so that a row's bits do not
    # depend on the row count (steady_rows); None where no row count up to STEADY_COUNTS' last gives that.
    min_rows: int | None = 2
    pad_to = 2  # the rows a shorter call is padded to: min_rows (or a faster count, pad_for_speed); 1 if none

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # On the decode path of a small model this runs thousands of times a second: few tensor ops.
        if x.numel() >= self.pad_to * x.shape[-1] or x.numel() == 0:
            return self.product(x)
        rows = x.numel() // x.shape[-1]
        flat = x.reshape(rows, x.shape[-1])
        if rows == 1:  # a lone row, the usual case
            padded = flat.expand(self.pad_to, -1).contiguous()
        else:
            padded = torch.cat([flat, flat[-1:].expand(self.pad_to - rows, -1)])
        return self.product(padded)[:rows].view(*x.shape[:-1], -1)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel itself, on any number of rows."""
        raise NotImplementedError

    def find_steady_rows(self) -> None:
        """Set min_rows for this kernel and shape (checked once per process: steady_rows)."""
        key = (type(self), self.kernel, self.in_features, self.n_weights, str(self.device))
        if key not in _STEADY:
            _STEADY[key] = steady_rows(self.product, self.in_features, self.device, self.fewest_rows)
        self.min_rows = _STEADY[key]
        self.pad_to = self.min_rows or 1

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    @property
    def n_weights(self) -> int:
        raise NotImplementedError

    @property
    def in_features(self) -> int:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes a product streams: the copy the kernel reads."""
        raise NotImplementedError

    @property
    def packed_bytes(self) -> int:
        """Memory held by the packed copy beside the plain matrix (its layout is opaque: as large as the matrix)."""
        return 0 if self.packed is None else self.nbytes


class DenseProduct(Product):
    """x @ W over a fused [in, out] matrix (float32; float16 on a GPU), packed for a few rows where that works.

    A CPU matrix too small to pack (it sits in cache) multiplies each row on its own, in one batched
    call, a lone row too: x @ W rounds a few rows otherwise than more (1-3 rows against 4+ on an AMD
    EPYC), and padding a lone row to 4 cost a fifth of the bundled model's decoding speed there.
    """

    def __init__(self, dense: torch.Tensor) -> None:
        self.dense, self.packed = dense, packed_copy(dense)
        self.row_by_row = self.packed is None and dense.device.type == "cpu" and self.nbytes < PACK_MIN_BYTES
        if self.row_by_row:
            self.kernel, self.fewest_rows = "x @ W, row by row", 1
        else:
            self.kernel = "x @ W, oneDNN packed for 2+ rows" if self.packed is not None else "x @ W"
        self.find_steady_rows()

    def product(self, x: torch.Tensor) -> torch.Tensor:
        same = x.dtype == self.dense.dtype  # the usual case: no conversions (each op call counts)
        given = x if same else x.to(self.dense.dtype)
        if self.row_by_row:  # [rows, 1, in] times the matrix, once per row
            rows = given.reshape(-1, 1, x.shape[-1])
            out = torch.bmm(rows, self.dense.expand(rows.shape[0], -1, -1))
        else:
            out = matmul(given.reshape(-1, x.shape[-1]), self.dense, self.packed)
        out = out.view(*x.shape[:-1], -1)
        return out if same else out.to(x.dtype)

    @property
    def device(self) -> torch.device:
        return self.dense.device

    @property
    def n_weights(self) -> int:
        return self.dense.numel()

    @property
    def in_features(self) -> int:
        return self.dense.shape[0]

    @property
    def nbytes(self) -> int:
        return self.dense.numel() * self.dense.element_size()


class NativeProduct(Product):
    """Our own kernel (emojilm.native) over an [out, in] matrix in its packed layout: every row is
    summed on its own, so a lone row runs alone and no row count needs padding."""

    fewest_rows = 1

    def __init__(
        self, weight_format: str, weight: torch.Tensor, scale: torch.Tensor | None = None, amx: bool | None = None
    ) -> None:
        """amx: the AMX kernel (where the CPU has it: native.amx(), the default) or the AVX-512 one. A
        process uses one of them for every product: each gives a row the same bits at any row count,
        but not the other's."""
        self.weight_format, self.shape = weight_format, weight.shape
        amx = native.amx() if amx is None else amx
        self.tiles = native.pack(weight, weight_format, amx_blocks=amx)
        self.scale = None if scale is None else scale.float().contiguous()
        self.matrix = native.matrix(self.tiles, weight.shape[0], self.scale)  # as the native module takes it
        self.kernel = f"emojilm {'AMX' if amx else 'AVX-512'} {'bf16' if weight_format == 'bfloat16' else 'int8'}"
        self.find_steady_rows()

    @classmethod
    def serving(cls, weight_format: str, weight: torch.Tensor, scale: torch.Tensor | None = None):
        """The native product of this matrix, or None where the kernel cannot serve it or disagrees with
        the plain product on a random input."""
        if weight.device.type != "cpu" or not native.supports(weight_format):
            return None
        product = cls(weight_format, weight, scale)
        check = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0))
        plain = weight.float() if scale is None else dequantize_rows(weight, scale)
        expected = (check.bfloat16().float() if weight_format == "bfloat16" else check) @ plain.t()
        if torch.allclose(product.product(check), expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max())):
            return product
        log.warning("emojilm's %s kernel disagrees with the plain product here; using torch's", weight_format)
        return None

    def product(self, x: torch.Tensor) -> torch.Tensor:
        out = native.product(x.reshape(-1, x.shape[-1]), self.tiles, self.shape[0], self.scale)
        return out.view(*x.shape[:-1], self.shape[0]).to(x.dtype)

    @property
    def device(self) -> torch.device:
        return self.tiles.device

    @property
    def n_weights(self) -> int:
        return self.shape.numel()

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.tiles.numel() * self.tiles.element_size() + (0 if self.scale is None else self.scale.numel() * 2)

    @property
    def packed_bytes(self) -> int:
        return self.nbytes


def bfloat16_product(weight: torch.Tensor) -> Product:
    """The fastest bf16 product of an [out, in] bfloat16 matrix that serves here."""
    return NativeProduct.serving("bfloat16", weight) or BFloat16Product(weight)


def int8_product(rows: torch.Tensor, scale: torch.Tensor) -> Product:
    """The fastest product of int8 rows [out, in] with a bf16 scale per row that serves here."""
    return NativeProduct.serving("int8", rows, scale) or Int8Product(rows, scale)


class BFloat16Product(Product):
    """oneDNN's prepacked bf16 linear over an [out, in] matrix (in row chunks), else F.linear."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        chunks = row_chunks(weight, CHUNK_ROWS)
        packed = [_bf16_packed(chunk) for chunk in chunks]
        # (packed chunk, its outputs) per chunk of the weight's rows
        self.packed = (
            [(p, len(c)) for p, c in zip(packed, chunks, strict=True)] if all(p is not None for p in packed) else None
        )
        self.kernel = "oneDNN packed bf16" if self.packed is not None else "F.linear bf16"
        self.find_steady_rows()

    def product(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        if self.packed is None:
            return F.linear(flat, self.weight).view(*x.shape[:-1], -1).to(x.dtype)
        return _blocks(x, self.weight.shape[0], row_chunks(flat, BF16_ROWS), self.packed, _packed_product)

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def n_weights(self) -> int:
        return self.weight.numel()

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def nbytes(self) -> int:
        return self.weight.numel() * 2


class Int8Product(Product):
    """int8 rows [out, in] with a bf16 scale per row: torch._weight_int8pack_mm on bf16 inputs, in row
    chunks, else dequantized."""

    def __init__(self, rows: torch.Tensor, scale: torch.Tensor) -> None:
        self.rows, self.scale = rows, scale
        chunks = zip(row_chunks(rows, CHUNK_ROWS), row_chunks(scale, CHUNK_ROWS), strict=True)
        self.chunks = [((part, part_scale), len(part)) for part, part_scale in chunks]
        self.fast = _int8_kernel_works(rows, scale)
        self.kernel = "torch._weight_int8pack_mm" if self.fast else "int8 dequantized per product"
        self.find_steady_rows()

    def product(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return F.linear(x, dequantize_rows(self.rows, self.scale).to(x.dtype))  # float32 x: exact products
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        return _blocks(x, self.rows.shape[0], [flat], self.chunks, lambda rows, w: torch._weight_int8pack_mm(rows, *w))

    @property
    def device(self) -> torch.device:
        return self.rows.device

    @property
    def n_weights(self) -> int:
        return self.rows.numel()

    @property
    def in_features(self) -> int:
        return self.rows.shape[1]

    @property
    def nbytes(self) -> int:
        return self.rows.numel() + self.scale.numel() * 2


def probe_input(rows: int, in_features: int, device: torch.device) -> torch.Tensor:
    """A random input [rows, in_features] for checking how a kernel rounds, with the values that take
    kernels down other paths: inputs whose products with a weight fall below float32's normal range
    (bf16 dot-product instructions flush those to zero, a 1-row path may not: seen on an AMD EPYC, on
    the activations of a random-weight model), denormals and zeros."""
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(0))
    x[:, 1::7] *= 1e-37
    x[:, 2::11] = 1e-39
    x[:, 3::13] = 0.0
    return x.to(device)


def row_bits(product, in_features: int, device: torch.device, counts) -> list[torch.Tensor]:
    """One row's results in calls of each of `counts` rows (of probe_input), the row in the middle of the
    call and last: how a kernel rounds it as the rows beside it change."""
    x = probe_input(max(counts), in_features, device)
    bits = []
    for n in counts:
        middle = product(torch.cat([x[1 : 1 + n // 2], x[:1], x[1 + n // 2 : n]]))[n // 2]
        bits.append(torch.stack([middle, product(torch.cat([x[1:n], x[:1]]))[n - 1]]))
    return bits


def steady_rows(product, in_features: int, device: torch.device, least: int = 1) -> int | None:
    """The fewest rows, `least` or more, from which `product` gives a row the same bits at every row count
    of STEADY_COUNTS (row_bits); None if even the largest count's bits are its own."""
    counts = [n for n in STEADY_COUNTS if n >= least]
    bits = row_bits(product, in_features, device, counts)
    steady = None
    for n, result in reversed(list(zip(counts, bits, strict=True))):
        if not torch.equal(result, bits[-1]):
            break
        steady = n
    return steady if steady != counts[-1] else None


def pad_for_speed(products: list[Product]) -> None:
    """Pad the products' shorter calls (a lone row's, say) to the row count, from their min_rows to
    PAD_MOST, at which a pass over all of them runs fastest on this CPU (the fewest rows among those
    within 5 % of it). A pass, as a decode step's loop makes it, streams the matrices from memory; one
    matrix timed alone would sit in cache. From min_rows on a row's bits are the same at every
    count, so the choice changes only the speed. Timed once per process and set of shapes; on a GPU,
    min_rows stays. Products that multiply every row on its own (fewest_rows 1: ours, x @ W row by
    row) are never padded: it only adds rows, and steady_rows, checked on probe_input, does not see
    that a row-by-row x @ W padded to 4 or 8 rounds a model's activations otherwise than alone."""
    steady = [p for p in products if p.min_rows is not None and p.fewest_rows > 1]
    if not steady or steady[0].device.type != "cpu":
        return
    key = tuple((type(p), p.kernel, p.in_features, p.n_weights) for p in steady)
    if key not in _PADDING:
        least = max(p.min_rows for p in steady)
        inputs = {p.in_features: probe_input(PAD_MOST, p.in_features, p.device) for p in steady}
        counts = range(least, PAD_MOST + 1)
        runs: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(PAD_ROUNDS + 1):  # counts in turn, so that the machine's drift meets each alike
            for n in counts:
                started = time.perf_counter()
                for p in steady:
                    p.product(inputs[p.in_features][:n])
                runs[n].append(time.perf_counter() - started)
        seconds = {n: statistics.median(took[1:]) for n, took in runs.items()}  # the first warms up
        fastest = min(seconds.values())
        _PADDING[key] = min(n for n, took in seconds.items() if took <= 1.05 * fastest)
    for p in steady:
        p.pad_to = _PADDING[key]


def row_chunks(x: torch.Tensor, most: int) -> tuple[torch.Tensor, ...]:
    """x's rows (dim 0) in the fewest chunks of at most `most` rows, as even as can be: an input's
    never leaves a lone row (which would take another kernel) when it has two or more; a weight's
    (CHUNK_ROWS) stream faster than the whole."""
    return x.tensor_split(-(-x.shape[0] // most))


def _cat(outputs: list[torch.Tensor], dim: int = -1) -> torch.Tensor:
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=dim)


def _blocks(x: torch.Tensor, outs: int, row_parts, weight_parts: list[tuple[object, int]], kernel) -> torch.Tensor:
    """kernel(rows, weight) for every chunk of x's rows and every (weight chunk, its outputs), each
    written into its block of one output [..., outs] in x's dtype: the conversion from the kernel's
    format and the assembly are one copy (a prefill at the published shape spent 0.2 s in cat and to)."""
    out = x.new_empty(x.numel() // x.shape[-1], outs)
    first_row = 0
    for rows in row_parts:
        first_out = 0
        for weight, n in weight_parts:
            out[first_row : first_row + len(rows), first_out : first_out + n].copy_(kernel(rows, weight))
            first_out += n
        first_row += len(rows)
    return out.view(*x.shape[:-1], outs)


def _bf16_packed(weight: torch.Tensor) -> torch.Tensor | None:
    if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        check = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0)).bfloat16()
        expected = check.float() @ weight.float().t()
        if not torch.allclose(_packed_product(check, packed).float(), expected, rtol=2e-2, atol=2e-2):
            log.warning("oneDNN's packed bf16 product disagrees with F.linear here; using F.linear")
            return None
    except (AttributeError, NotImplementedError, RuntimeError) as err:
        log.info("oneDNN's packed bf16 linear is unavailable (%s); using F.linear", err)
        return None
    return packed


def _int8_kernel_works(rows: torch.Tensor, scale: torch.Tensor) -> bool:
    try:
        check = torch.randn(3, rows.shape[1], generator=torch.Generator().manual_seed(0)).bfloat16().to(rows.device)
        out = torch._weight_int8pack_mm(check, rows, scale).float()
        expected = check.float() @ dequantize_rows(rows, scale).t()
        if torch.allclose(out, expected, rtol=2e-2, atol=2e-2 * float(expected.abs().max())):
            return True
        log.warning("torch._weight_int8pack_mm disagrees with the dequantized product here; dequantizing")
    except (AttributeError, NotImplementedError, RuntimeError) as err:
        log.info("torch._weight_int8pack_mm is unavailable (%s); dequantizing per product", err)
    return False
