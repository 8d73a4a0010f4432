"""Keep freed memory in the process, so that a burst's prefill does not fault in fresh pages.

torch takes CPU memory from the C library's malloc. glibc returns a large block to the system when it
is freed (it maps blocks above a threshold on their own, and trims the heap's top above twice that),
so the next block of that size comes back as fresh pages, each zeroed by the kernel on first touch:
on the VMs of docs/benchmarks.md 1-5 µs per 4 KiB page, about 1 GB/s. A burst of 8 prompts at the
published shape allocates about 0.4 GB of new KV caches and 2 MB activations by the thousand: its
prefill faulted in 88,000 pages, for 0.4 s of its 3.4 s. Raising both thresholds keeps those pages
for the next burst; the process then holds its peak (a burst's caches) instead of giving it back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to this come from the heap, and are reused
TRIM_THRESHOLD = 2**30  # give back the heap's free top only past 1 GiB
_kept: bool | None = None  # whether keep_freed_memory took effect in this process


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; False where this is not glibc."""
    global _kept
    if _kept is None:
        _kept = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c"))
                _kept = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                )
            except (OSError, AttributeError) as err:
                log.info("could not tune malloc (%s): freed memory goes back to the system", err)
    return _kept
