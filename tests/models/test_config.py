"""The adapter registry without servers: config schemas and bounds, kinds, the adapter cache."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.core.errors import DomainError, ErrorCode
from app.models.adapters import (
    ADAPTER_CACHE_SIZE,
    ADAPTERS,
    KINDS,
    MAX_THREADS,
    AdapterCache,
    AdapterError,
    AdapterInput,
    AdapterMismatch,
    InvalidConfig,
    ModelAdapter,
    UnknownAdapter,
    clear_cache,
    describe_adapters,
    describe_configs,
    get_adapter,
    object_detector,
    validate_config,
)
from app.models.adapters.object_detector import MAX_CANDIDATES, MAX_DETECTIONS, STRIDES, nms
from app.models.builtin import BUILTINS
from app.models.models import ModelKind


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def refused(adapter: str, kind: str, config: Any, zero_shot: bool | None = None) -> tuple[str, str | None]:
    with pytest.raises(AdapterError) as caught:
        validate_config(adapter, kind, config, zero_shot=zero_shot)
    return caught.value.code.value, caught.value.field


# --------------------------------------------------------------------------- the registry
def test_every_adapter_declares_a_closed_schema_and_known_kinds() -> None:
    assert KINDS == tuple(ModelKind)
    for name, cls in ADAPTERS.items():
        assert cls.kinds and cls.kinds <= set(KINDS), name
        assert cls.kind in cls.kinds
        assert cls.config_schema.model_config.get("extra") == "forbid", name
        # an empty config runs with the defaults, for every kind the adapter serves (an adapter
        # with required keys, such as an uploaded model's file, refuses it by naming the key);
        # a model on an inference server needs to say where it is (REQUIRED), and nothing more
        required = [k for k, f in cls.config_schema.model_fields.items() if f.is_required()]
        if required and not any(n == name for n, _ in SERVER_MODELS):
            with pytest.raises(InvalidConfig) as caught:
                validate_config(name, next(iter(cls.kinds)), {})
            assert caught.value.code is ErrorCode.REQUIRED and caught.value.field == f"config.{required[0]}"
            continue
        for kind in cls.kinds:
            where = SERVER_MODELS.get((name, kind))
            if where is None:
                assert validate_config(name, kind, {}, zero_shot=True if cls.zero_shot else None) == {}
                continue
            with pytest.raises(AdapterError) as refused:
                validate_config(name, kind, {})
            assert (refused.value.code, refused.value.field) == (ErrorCode.REQUIRED, "config.url")
            assert validate_config(name, kind, where) == where


SERVER_MODELS = {
    ("kserve-v2", "CLASSIFIER"): {"url": "http://h", "model_name": "m"},
    ("kserve-v2", "DETECTOR"): {"url": "http://h", "model_name": "m", "preprocess": "nanodet"},
    ("kserve-v2", "SEGMENTER"): {"url": "http://h", "model_name": "m", "generic": {"output": "yolov8_seg"}},
    ("ls-ml-backend", "CLASSIFIER"): {"url": "http://h"},
    ("ls-ml-backend", "DETECTOR"): {"url": "http://h"},
    ("ls-ml-backend", "SEGMENTER"): {"url": "http://h"},
}


def test_generated_descriptions_name_every_adapter_kind_and_key() -> None:
    adapters, configs = describe_adapters(), describe_configs()
    for name, cls in ADAPTERS.items():
        assert f"`{name}`" in adapters and f"`{name}`" in configs
        for key in cls.config_schema.model_fields:
            assert f"{key}: " in configs, (name, key)
    for kind in KINDS:
        assert kind in adapters


def test_builtin_models_are_runnable_registry_entries() -> None:
    kinds = {spec.name: spec.kind for spec in BUILTINS}
    assert kinds == {
        "general-image-classifier": "CLASSIFIER",
        "general-object-detector": "DETECTOR",
        "text-region-detector": "SEGMENTER",
        "text-topic-classifier": "TEXT_CLASSIFIER",
        "text-sentiment": "TEXT_CLASSIFIER",
    }
    assert [s.name for s in BUILTINS if s.zero_shot] == ["text-topic-classifier"]
    for spec in BUILTINS:
        assert validate_config(spec.adapter, spec.kind, {}, zero_shot=spec.zero_shot) == {}


def test_unknown_adapter_is_a_typed_value_error_not_a_key_error() -> None:
    for call in (lambda: get_adapter("no-such-model"), lambda: validate_config("nope", "CLASSIFIER", {})):
        with pytest.raises(UnknownAdapter) as caught:
            call()
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, DomainError)
        assert not isinstance(caught.value, KeyError)
        assert (caught.value.code, caught.value.field) == (ErrorCode.UNKNOWN_ADAPTER, "adapter")


def test_get_adapter_refuses_a_config_its_schema_refuses() -> None:
    """A model stored before the checks existed fails at once and for good, not mid-batch."""
    with pytest.raises(InvalidConfig) as caught:
        get_adapter("null", {"delay_ms": 20_000})
    assert (caught.value.code, caught.value.field) == (ErrorCode.OUT_OF_RANGE, "config.delay_ms")
    with pytest.raises(InvalidConfig):
        get_adapter("general-object-detector", {"intra_op_num_threads": 200})


@pytest.mark.parametrize(
    ("adapter", "kind", "config", "expected"),
    [
        ("general-object-detector", "CLASSIFIER", {}, ("ADAPTER_MISMATCH", "adapter")),
        ("text-sentiment", "DETECTOR", {}, ("ADAPTER_MISMATCH", "adapter")),
        ("null", "CLASSIFIER", {"kind": "DETECTOR"}, ("ADAPTER_MISMATCH", "config.kind")),
        ("null", "CLASSIFIER", {"dealy_ms": 5}, ("UNKNOWN_KEY", "config.dealy_ms")),
        ("text-sentiment", "TEXT_CLASSIFIER", {"top_k": 1}, ("UNKNOWN_KEY", "config.top_k")),
        ("general-image-classifier", "CLASSIFIER", {"top_k": "5"}, ("WRONG_TYPE", "config.top_k")),
        ("general-image-classifier", "CLASSIFIER", {"top_k": 2.5}, ("WRONG_TYPE", "config.top_k")),
        ("general-image-classifier", "CLASSIFIER", {"center_crop": 1}, ("WRONG_TYPE", "config.center_crop")),
        ("general-image-classifier", "CLASSIFIER", {"intra_op_num_threads": True}, ("WRONG_TYPE", "config.intra_op_num_threads")),
        ("general-image-classifier", "CLASSIFIER", {"intra_op_num_threads": 200}, ("OUT_OF_RANGE", "config.intra_op_num_threads")),
        ("general-image-classifier", "CLASSIFIER", {"intra_op_num_threads": 0}, ("OUT_OF_RANGE", "config.intra_op_num_threads")),
        ("general-object-detector", "DETECTOR", {"min_confidence": 0.0}, ("OUT_OF_RANGE", "config.min_confidence")),
        ("general-object-detector", "DETECTOR", {"min_confidence": 0.3, "iou_threshold": 1.0}, ("OUT_OF_RANGE", "config.iou_threshold")),
        ("general-object-detector", "DETECTOR", {"max_detections": 0}, ("OUT_OF_RANGE", "config.max_detections")),
        ("text-topic-classifier", "TEXT_CLASSIFIER", {"template": "{name:>99999999}"}, ("INVALID", "config.template")),
        ("text-topic-classifier", "TEXT_CLASSIFIER", {"template": "about {topic}"}, ("INVALID", "config.template")),
        ("text-topic-classifier", "TEXT_CLASSIFIER", {"scoring": "cosine"}, ("INVALID", "config.scoring")),
        ("null", "CLASSIFIER", {"predictions": [{"concept": "a", "confidence": 0.5, "region": {"top": 0.5, "left": 0, "bottom": 0.1, "right": 1}}]}, ("INVALID_GEOMETRY", "config.predictions.0.region")),
        ("null", "CLASSIFIER", {"predictions": [{"concept": "a"}]}, ("REQUIRED", "config.predictions.0.confidence")),
    ],
)  # fmt: skip
def test_config_refusals_name_the_key_and_a_code(
    adapter: str, kind: str, config: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert refused(adapter, kind, config) == expected


def test_zero_shot_needs_an_adapter_that_scores_names() -> None:
    assert refused("general-image-classifier", "CLASSIFIER", {}, zero_shot=True) == (
        "ADAPTER_MISMATCH",
        "zeroShot",
    )
    assert refused("text-topic-classifier", "TEXT_CLASSIFIER", {}, zero_shot=False) == (
        "REQUIRED",
        "config.concepts",
    )
    ok = validate_config("text-topic-classifier", "TEXT_CLASSIFIER", {"concepts": ["a"]}, zero_shot=False)
    assert ok == {"concepts": ["a"]}
    # not given: not checked (what a worker re-checking a stored entry does not know)
    assert validate_config("text-topic-classifier", "TEXT_CLASSIFIER", {}) == {}


def test_validated_config_is_stored_as_json_of_the_keys_given() -> None:
    config = {"predictions": [{"concept": "cat", "confidence": 1}], "delay_ms": 15}
    stored = validate_config("null", "TEXT_CLASSIFIER", config)
    assert stored == {"predictions": [{"concept": "cat", "confidence": 1.0}], "delay_ms": 15.0}
    assert "concepts" not in stored and "kind" not in stored


def test_threads_are_capped_by_the_bound_and_the_cores() -> None:
    adapter = get_adapter("general-image-classifier", {"intra_op_num_threads": MAX_THREADS})
    assert 1 <= adapter.num_threads <= MAX_THREADS


# --------------------------------------------------------------------------- the cache
def test_adapter_cache_keeps_only_the_most_recently_used() -> None:
    """Each distinct config used to stay in memory for good; now at most ADAPTER_CACHE_SIZE do."""
    created: list[weakref.ref[ModelAdapter]] = []
    first = get_adapter("null", {"delay_ms": 0})
    for ms in range(1, 3 * ADAPTER_CACHE_SIZE):
        created.append(weakref.ref(get_adapter("null", {"delay_ms": ms})))
        assert get_adapter("null", {"delay_ms": 0}) is first  # used again: stays
    gc.collect()
    alive = [ref for ref in created if ref() is not None]
    assert len(alive) == ADAPTER_CACHE_SIZE - 1  # the others, plus ``first``, fill the cache
    assert created[0]() is None  # the least recently used went first
    assert get_adapter("null", {"delay_ms": 3 * ADAPTER_CACHE_SIZE - 1}) is created[-1]()


def test_adapter_cache_evicts_the_least_recently_used() -> None:
    cache = AdapterCache(2)
    a, b = cache.get("null", {"delay_ms": 1}), cache.get("null", {"delay_ms": 2})
    assert cache.get("null", {"delay_ms": 1}) is a  # a is now the most recent
    cache.get("null", {"delay_ms": 3})  # evicts b
    assert len(cache) == 2
    assert cache.get("null", {"delay_ms": 1}) is a
    assert cache.get("null", {"delay_ms": 2}) is not b
    with pytest.raises(InvalidConfig):
        cache.get("null", {"delay_ms": -1})
    assert len(cache) == 2  # a refused config is never cached


# --------------------------------------------------------------------------- detector cost
def test_nms_limit_returns_the_head_of_the_full_result() -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 0.8, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.2, (300, 2))], axis=1)
    scores = rng.uniform(0, 1, 300)
    full = nms(boxes, scores, 0.5)
    assert nms(boxes, scores, 0.5, limit=7) == full[:7]


def test_detector_candidates_are_bounded_whatever_the_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lowest threshold the schema allows, with almost no suppression, still sends at most
    MAX_CANDIDATES boxes per stride into NMS (it used to send all ~280k: minutes per image)."""
    adapter = get_adapter(
        "general-object-detector",
        {"min_confidence": 0.001, "iou_threshold": 0.999, "max_detections": MAX_DETECTIONS},
    )
    seen: list[int] = []

    def counting(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int | None = None) -> list[int]:
        seen.append(len(scores))
        return nms(boxes, scores, iou, limit)

    monkeypatch.setattr(object_detector, "nms", counting)
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    (preds,) = adapter.predict([AdapterInput(image=image)])
    assert seen == [len(STRIDES) * MAX_CANDIDATES]
    assert len(preds) == MAX_DETECTIONS


def test_adapter_errors_are_permanent_validation_errors() -> None:
    for exc in (UnknownAdapter("x", []), AdapterMismatch("m"), InvalidConfig("c")):
        assert isinstance(exc, ValueError) and isinstance(exc, DomainError)
