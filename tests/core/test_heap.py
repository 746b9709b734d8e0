"""glibc heap controls (app/core/heap.py): applied on glibc, refused for 0."""

from __future__ import annotations

import platform

import pytest

from app.core.heap import limit_malloc_arenas, release_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_arena_cap_is_applied_on_glibc() -> None:
    assert limit_malloc_arenas(2) is True
    release_freed_memory()


def test_zero_leaves_glibc_default() -> None:
    assert limit_malloc_arenas(0) is False
