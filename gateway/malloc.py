"""glibc's allocator, where the gateway's memory use depends on it.

Memory a process frees stays resident until the allocator gives it back, which glibc does by
itself only for the top of its heaps and for blocks it mapped on their own. Freed blocks in the
middle of a heap (the SQLite connections of sessions that went idle, interleaved with what
the sessions still hold) stay in the process's RSS for good unless `malloc_trim` returns their
pages. Other C libraries (musl...) lack the call: then nothing happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        return ctypes.CDLL(None)
    return None


def trim() -> None:
    """Give the pages of free memory back to the system (glibc: `malloc_trim(0)`, every arena;
    a few milliseconds: call it after freeing much, in a worker thread)."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.malloc_trim(0)
