"""Allocator setting: keep freed memory for reuse, so each step's activations do not page-fault back in."""

from __future__ import annotations

import ctypes

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1


_M_TOP_PAD = -2


_M_MMAP_MAX = -4


_freed_memory_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process for the next allocation.

    Why: every step allocates and frees the same multi-megabyte activations. By default glibc
    serves blocks above its mmap threshold with fresh mappings and trims the top of the heap
    after each free, so the next step takes a page fault (and the kernel zeroes a page) for
    every 4 KiB it touches: about 500 faults per step at ``blocks.2`` of EfficientNet-Lite0,
    none after this call, and several percent of a step's CPU time. Allocating without mmap
    and never trimming keeps the pages mapped; the process then holds on to its peak memory
    until it exits, which suits a render process. Process-wide and applied once. Returns
    False where there is no glibc ``mallopt`` (macOS, Windows), where it changes nothing.
    """
    global _freed_memory_kept
    if _freed_memory_kept:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, 2**31 - 1), mallopt(_M_TOP_PAD, 64 << 20)]
    _freed_memory_kept = all(applied)
    return _freed_memory_kept
