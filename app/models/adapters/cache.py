"""A small LRU of configured adapters, shared by a process's jobs.

An adapter holds its loaded sessions (tens of MB each, plus onnxruntime's arena), so the cache
keeps the ``ADAPTER_CACHE_SIZE`` most recently used (name, config) pairs and drops the rest: a
new config costs a reload, never unbounded memory. Workers also drop adapters nobody asked for
during ``model_idle_unload_s`` (``unload_idle_forever``): an idle worker gives its models'
memory back and the next batch loads them again. An evicted adapter still in use by a running
batch stays alive until that batch lets go of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from app.core.heap import release_freed_memory

from .base import ModelAdapter
from .registry import adapter_class

# The five built-in models plus one custom one stay loaded side by side.
ADAPTER_CACHE_SIZE = 6

log = logging.getLogger("labelstream.models")


def _config_key(config: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(config or {}), sort_keys=True, default=repr)


class AdapterCache:
    """Thread-safe LRU of adapter instances keyed by (name, config)."""

    def __init__(self, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("an adapter cache holds at least one adapter")
        self.maxsize = maxsize
        self.clock = clock
        self._items: OrderedDict[tuple[str, str], ModelAdapter] = OrderedDict()
        self._used: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str, config: Mapping[str, Any] | None) -> ModelAdapter:
        cls = adapter_class(name)
        key = (name, _config_key(config))
        with self._lock:
            self._used[key] = self.clock()
            adapter = self._items.get(key)
            if adapter is not None:
                self._items.move_to_end(key)
                return adapter
            try:
                adapter = cls(config)  # validates the config: InvalidConfig is never cached
            except BaseException:
                del self._used[key]
                raise
            self._items[key] = adapter
            while len(self._items) > self.maxsize:
                old, _ = self._items.popitem(last=False)
                self._used.pop(old, None)
            return adapter

    def drop_idle(self, idle_s: float) -> list[str]:
        """Forget the adapters not asked for during the last ``idle_s`` seconds; their names."""
        cutoff = self.clock() - idle_s
        with self._lock:
            stale = [key for key in self._items if self._used.get(key, cutoff) <= cutoff]
            for key in stale:
                del self._items[key]
                self._used.pop(key, None)
        return [name for name, _ in stale]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._used.clear()


adapter_cache = AdapterCache(ADAPTER_CACHE_SIZE)


def get_adapter(name: str, config: Mapping[str, Any] | None = None) -> ModelAdapter:
    """The (cached) adapter ``name`` configured with ``config``.

    Raises ``UnknownAdapter`` for an unknown name and ``InvalidConfig`` for a config its schema
    refuses (both ``AdapterError``, a ``ValueError``; permanent). The model's kind is not known
    here: ``validate_config`` checks that too.
    """
    return adapter_cache.get(name, config)


def clear_cache() -> None:
    """Forget cached adapters (their sessions are freed when unreferenced)."""
    adapter_cache.clear()


async def unload_idle_forever(idle_s: float, cache: AdapterCache = adapter_cache) -> None:
    """Every ``idle_s / 2`` seconds (at most every minute), drop the adapters idle ``idle_s``."""
    while True:
        await asyncio.sleep(min(idle_s / 2, 60.0))
        dropped = cache.drop_idle(idle_s)
        if dropped:
            await asyncio.to_thread(release_freed_memory)
            log.info("unloaded model(s) idle %.0f s: %s", idle_s, ", ".join(dropped))
