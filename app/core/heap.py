"""glibc heap controls for long-running processes (no-ops where the C library is not glibc).

Every thread that allocates gets a glibc malloc arena of its own (up to 8 per core), and memory
freed in one arena is not reused by the others: a worker whose batches run in thread-pool
threads kept ~130 MiB more at its peak than with two arenas (bench/worker_memory.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter number


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both exist only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count`` for arenas made from now on (0: leave the default).
    Call it before the threads that allocate start. True when applied."""
    libc = _libc()
    if count <= 0 or libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, count))


def release_freed_memory() -> None:
    """Hand memory freed back to the OS (glibc keeps it for reuse otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
