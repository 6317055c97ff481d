"""Give freed heap memory back to the operating system between the stages of an audit.

A probe frees its vocabulary-sized scratch when it ends, but glibc keeps small and medium
blocks (below its mmap threshold, which grows up to 32 MiB as large blocks are freed) in its
arenas: the process's resident memory then stays at the high-water mark of every stage before
it, and the next checkpoint is loaded on top. `release_free_memory()` asks glibc to return
those pages (malloc_trim), so peak memory is one stage's, not the sum of their leftovers.
Elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return free heap pages to the OS (glibc malloc_trim(0)); True if it could be asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
