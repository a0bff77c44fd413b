"""Keep freed tensor memory inside the process (glibc), instead of handing it back to the OS.

glibc serves every allocation above its mmap threshold (128 KiB at start, at most 32 MiB as it
adapts) with a fresh ``mmap`` and unmaps it on ``free``. A forward/backward pass allocates and
frees the same large activations on every step, so each step page-faults them in again, and
the kernel zero-fills every page first. On the 2-core CPU machines this was a third of a
StyleGAN2 step: a 256 px generator forward+backward at batch 4 took 2.28 s with glibc's
defaults and 1.49 s with the heap kept (tests/test_cpu_allocator.py counts the page faults).

PyTorch's CPU performance guide recommends jemalloc or tcmalloc via ``LD_PRELOAD`` for the same
reason; ``mallopt`` gets most of the gain with nothing to install. The price is that the heap
keeps its peak size until the process ends, which suits a benchmark run. Set
``ARTIFACT_BENCH_MALLOC=system`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

_applied = False


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when they are in force.
    A no-op (False) off Linux, on a libc without ``mallopt`` or when opted out."""
    global _applied
    if _applied:
        return True
    if os.environ.get("ARTIFACT_BENCH_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0 and changes nothing
    _applied = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    return _applied
