"""glibc allocator tuning for CPU inference (a large, measured speed-up; opt out with an env var).

PyTorch frees and re-allocates the big activation tensors of every batch. With glibc's
defaults those allocations are ``mmap``-ed and returned to the kernel each time, and on
small virtual machines the page faults that follow dominate the forward pass: measured on
2 cores, EfficientNet-Lite0 up to ``_blocks.14`` ran at 42 images/s (batch 64) with the
defaults and 102 images/s with the settings below. They keep freed memory in the heap for
reuse (peak resident memory grows by about the size of one batch's activations).

Threads other than the main one get their own glibc arenas, made of 64 MB heaps: a larger
activation buffer cannot live there and is ``mmap``-ed on every allocation whatever the
thresholds say. Measured on 2 cores, one muscimol sweep task took 22.3 s in a worker thread
against 15.5 s in the main thread; with one arena (``M_ARENA_MAX = 1``, set here for threads
started afterwards, and as ``MALLOC_ARENA_MAX=1`` in the environment of Dask workers) the
thread ran it in 14.4-15.4 s.

Applied once, when the first BrainModel is built, only on Linux with glibc; set
``INSILICO_MALLOC_TUNING=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
_INT_MAX = 2**31 - 1
_done = False


def enabled() -> bool:
    """Whether insilico may tune the allocator (Linux, and ``INSILICO_MALLOC_TUNING`` != 0)."""
    return os.environ.get("INSILICO_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux")


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds and use one arena for threads started later;
    return whether the settings were applied."""
    global _done
    if _done:
        return True
    if not enabled():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = (
            libc.mallopt(M_MMAP_THRESHOLD, _INT_MAX) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX) == 1
            and libc.mallopt(M_TOP_PAD, 256 << 20) == 1
            and libc.mallopt(M_ARENA_MAX, 1) == 1
        )
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _done = ok
    return ok
