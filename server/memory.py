"""Make the serving process give memory back: glibc raises its mmap threshold each time a large block is
freed, after which decoded images and model tensors come from heaps it never returns (8 Detects of a
36 MP PNG then left 600 MB behind, tests/test_detect_hardening.py). A fixed threshold keeps large,
short-lived buffers mapped and unmapped; fewer malloc arenas (one per core rather than eight) keep each
thread's freed memory from piling up in an arena of its own (8 concurrent 12 MP PNG Detects: 639 -> 535 MB
peak, artdet bench --reliability)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("artdet.server")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def return_large_buffers_to_the_os(mmap_threshold: int = 1 << 20, trim_threshold: int = 8 << 20,
                                   arenas: int | None = None) -> bool:
    """True when the C library took the settings (glibc); elsewhere a no-op that says so in the log.
    Call it before the server starts its threads: arenas already made are kept."""
    arenas = arenas or max(2, os.cpu_count() or 2)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = all(libc.mallopt(option, value) for option, value in (
            (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_ARENA_MAX, arenas)))
    except (OSError, AttributeError):
        applied = False
    if not applied:
        log.info("mallopt is not available: memory freed after large images may stay with the process")
    return applied
