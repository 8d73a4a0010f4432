"""Matrix products for inference: torch's x @ W, and oneDNN's prepacked linear for a few rows.

A decode step multiplies a few rows by every weight matrix: one row for a byte,
2 to 32 for a speculative check or for the trace's per-loop answers. Such a
product runs at the speed the matrix streams from memory. torch's x @ W over a
[in, out] matrix reaches the machine's streaming rate for one row, but at 2-8
rows its kernel blocks poorly (on a 2-core Xeon, 4 rows stream at ~0.7x the
one-row rate), so a 4-row step cost ~1.5x a 1-row one. oneDNN's prepacked
linear (the kernel torch.compile's CPU weight freezing emits) keeps ~0.85x.

That kernel is a private torch op, so it is used only behind a check: a
matrix gets a packed copy only on CPU in fp32, when torch has oneDNN, when it
is large enough to stream from memory (PACK_MIN_BYTES: on matrices that sit in
cache the packed call's overhead dominates, and the bundled model's 4-row step
went from 1.2x to 1.8x a 1-row one), and when the packed product of a random
input agrees with x @ W; otherwise x @ W serves every row count. The packed
copy is a second copy of the weights.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

PACKED_ROWS = range(2, 33)  # rows served by the packed copy (faster up to 32 in trials); 1 row, prefills: x @ W
PACK_HINT = 4  # the row count oneDNN lays the copy out for (fast from 2 to 8 rows in trials)
PACK_MIN_BYTES = 2**20  # smaller matrices stay in a core's L2 cache: x @ W serves them faster


def packed_copy(dense: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's prepacked copy of a [in, out] matrix, or None where that path is unavailable."""
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
        log.warning("oneDNN's packed linear is unavailable (%s); using x @ W", err)
        return None
    return packed


def matmul(x: torch.Tensor, dense: torch.Tensor, packed: torch.Tensor | None) -> torch.Tensor:
    """x [..., in] @ dense [in, out], through the packed copy when it serves this many rows."""
    rows = x.numel() // x.shape[-1]
    if packed is None or rows not in PACKED_ROWS:
        return x @ dense
    return _packed_product(x.reshape(rows, x.shape[-1]), packed).view(*x.shape[:-1], dense.shape[1])


def _packed_product(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
