"""The C allocator's settings for processes that train: freed tensor memory is kept for the next step.

A training step allocates and frees the same few-megabyte tensors every step. By default glibc's ``malloc``
serves each such block with a fresh ``mmap`` and returns it to the system when freed, so every step touches
pages the kernel must fault in and zero again (hundreds to thousands of page faults a step). Raising the
``mmap`` threshold and the trim threshold keeps those blocks in the heap, reused from step to step: the
same numbers, fewer system calls (docs/architecture.md, "Performance"). The cost is that a process keeps its
peak memory until it exits, which a training worker does anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters of glibc's malloc.h
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Blocks below ``mmap_threshold`` bytes come from the heap, and up to ``trim_threshold`` bytes of freed
    heap stay with the process. Linux with glibc only; elsewhere nothing changes. Whether both settings took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
