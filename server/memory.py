"""Make the serving process give memory back: glibc raises its mmap threshold each time a large block is
freed, after which decoded images and model tensors come from heaps it never returns (a 36 MP PNG per
Detect then leaves ~100 MB behind). A fixed threshold keeps large, short-lived buffers mapped and
unmapped."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("artdet.server")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def return_large_buffers_to_the_os(mmap_threshold: int = 1 << 20, trim_threshold: int = 8 << 20) -> bool:
    """True when the C library took the setting (glibc); elsewhere a no-op that says so in the log."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):
        applied = False
    if not applied:
        log.info("mallopt is not available: memory freed after large images may stay with the process")
    return applied
