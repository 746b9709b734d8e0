"""Model adapters, their registry and their cache.

* ``validate_config(adapter, kind, config, zero_shot=...)`` checks a model entry against the
  registry (adapter name, kind, config schema and bounds) and returns the config to store;
* ``get_adapter(name, config)`` returns an adapter from a bounded LRU; adapters load their
  weights lazily on the first ``predict`` call, so creating one is cheap.

Both raise ``AdapterError`` subclasses (``UnknownAdapter``, ``AdapterMismatch``,
``InvalidConfig``): domain validation errors and ``ValueError``s, never worth a retry.
"""

from __future__ import annotations

from .base import (
    KINDS,
    AdapterInput,
    Box,
    ModelAdapter,
    ModelConcept,
    ModelKind,
    Polygon,
    Prediction,
)
from .cache import (
    ADAPTER_CACHE_SIZE,
    AdapterCache,
    adapter_cache,
    clear_cache,
    get_adapter,
    unload_idle_forever,
)
from .config import MAX_THREADS, AdapterConfig
from .errors import AdapterError, AdapterMismatch, InvalidConfig, ModelRejected, UnknownAdapter
from .image_classifier import ImageClassifierAdapter
from .null import NullAdapter
from .object_detector import ObjectDetectorAdapter
from .onnx_model import OnnxModelAdapter
from .registry import (
    ADAPTERS,
    adapter_class,
    describe_adapters,
    describe_configs,
    register,
    validate_config,
)
from .text_classifiers import SentimentAdapter, TextTopicAdapter
from .text_regions import TextRegionAdapter

__all__ = [
    "ADAPTERS",
    "ADAPTER_CACHE_SIZE",
    "KINDS",
    "MAX_THREADS",
    "AdapterCache",
    "AdapterConfig",
    "AdapterError",
    "AdapterInput",
    "AdapterMismatch",
    "Box",
    "ImageClassifierAdapter",
    "InvalidConfig",
    "ModelAdapter",
    "ModelConcept",
    "ModelKind",
    "ModelRejected",
    "NullAdapter",
    "ObjectDetectorAdapter",
    "OnnxModelAdapter",
    "Polygon",
    "Prediction",
    "SentimentAdapter",
    "TextRegionAdapter",
    "TextTopicAdapter",
    "UnknownAdapter",
    "adapter_cache",
    "adapter_class",
    "clear_cache",
    "describe_adapters",
    "describe_configs",
    "get_adapter",
    "register",
    "unload_idle_forever",
    "validate_config",
]
