"""Model adapters and their registry.

``get_adapter(name, config)`` returns a cached adapter instance per (name, config); adapters
load their weights lazily on the first ``predict`` call, so creating one is cheap.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from .base import (
    AdapterInput,
    Box,
    ModelAdapter,
    ModelConcept,
    Polygon,
    Prediction,
)
from .image_classifier import ImageClassifierAdapter
from .null import NullAdapter
from .object_detector import ObjectDetectorAdapter
from .text_classifiers import SentimentAdapter, TextTopicAdapter
from .text_regions import TextRegionAdapter

ADAPTERS: dict[str, type[ModelAdapter]] = {}


def register(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    ADAPTERS[cls.name] = cls
    return cls


register(NullAdapter)
register(ImageClassifierAdapter)
register(ObjectDetectorAdapter)
register(TextRegionAdapter)
register(TextTopicAdapter)
register(SentimentAdapter)

_cache: dict[tuple[str, str], ModelAdapter] = {}
_cache_lock = threading.Lock()


def _config_key(config: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(config or {}), sort_keys=True, default=repr)


def get_adapter(name: str, config: Mapping[str, Any] | None = None) -> ModelAdapter:
    """Return the (cached) adapter ``name`` configured with ``config``.

    Raises ``KeyError`` for an unknown adapter name.
    """
    try:
        cls = ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown model adapter {name!r}; known: {sorted(ADAPTERS)}") from None
    key = (name, _config_key(config))
    with _cache_lock:
        adapter = _cache.get(key)
        if adapter is None:
            adapter = cls(config)
            _cache[key] = adapter
        return adapter


def clear_cache() -> None:
    """Forget cached adapters (their sessions are freed when unreferenced)."""
    with _cache_lock:
        _cache.clear()


__all__ = [
    "ADAPTERS",
    "AdapterInput",
    "Box",
    "ImageClassifierAdapter",
    "ModelAdapter",
    "ModelConcept",
    "NullAdapter",
    "ObjectDetectorAdapter",
    "Polygon",
    "Prediction",
    "SentimentAdapter",
    "TextRegionAdapter",
    "TextTopicAdapter",
    "clear_cache",
    "get_adapter",
    "register",
]
