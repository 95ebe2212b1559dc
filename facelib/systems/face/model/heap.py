"""Keep freed heap memory for reuse (glibc malloc), so large step buffers are not page-faulted
anew every step.

A FACE step allocates and frees the same large activation buffers every step (at 3B = 768
entities a concept layer's FFN activation is [768, 16, 2048] float32, 100 MB; MiniLM's
are [768, 46, 1536], 217 MB). glibc serves blocks above its mmap threshold (at most 32 MB)
with a fresh ``mmap`` and returns them to the system on ``free``, so every such buffer is
zero-filled by the kernel page by page on first touch, every step: on a 2-core CPU a map
step spent about a fifth of its time in those page faults, and elementwise ops on fresh
100 MB buffers ran ~10x slower than on reused ones. :func:`keep_freed_memory` sets

    mallopt(M_MMAP_MAX, 0)                  large blocks come from the heap, not mmap
    mallopt(M_TRIM_THRESHOLD, 2^31 - 1)     freed heap memory is kept (up to 2 GiB free)

so freed buffers are reused by the next step. Process-wide and permanent for the process;
results are unchanged (allocation only), resident memory stays near its peak instead of
shrinking between steps. No effect (returns False) where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed memory (module docstring); True if set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
