"""A small LRU of configured adapters, shared by a process's jobs.

An adapter holds its loaded sessions (tens of MB each), so the cache keeps the
``ADAPTER_CACHE_SIZE`` most recently used (name, config) pairs and drops the rest: a new config
costs a reload, never unbounded memory. An evicted adapter still in use by a running batch stays
alive until that batch lets go of it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .base import ModelAdapter
from .registry import adapter_class

# The five built-in models plus one custom one stay loaded side by side.
ADAPTER_CACHE_SIZE = 6


def _config_key(config: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(config or {}), sort_keys=True, default=repr)


class AdapterCache:
    """Thread-safe LRU of adapter instances keyed by (name, config)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("an adapter cache holds at least one adapter")
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], ModelAdapter] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str, config: Mapping[str, Any] | None) -> ModelAdapter:
        cls = adapter_class(name)
        key = (name, _config_key(config))
        with self._lock:
            adapter = self._items.get(key)
            if adapter is not None:
                self._items.move_to_end(key)
                return adapter
            adapter = cls(config)  # validates the config: InvalidConfig is never cached
            self._items[key] = adapter
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return adapter

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


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
