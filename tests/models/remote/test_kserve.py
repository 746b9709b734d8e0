"""``kserve-v2`` against KServe's real model server serving the bundled ONNX models."""

from __future__ import annotations

import pytest

from app.core.errors import ErrorCode
from app.embedded import free_port
from app.models.adapters import AdapterError, get_adapter, validate_config
from app.models.adapters.remote import ServerFailure
from app.models.adapters.remote.client import semaphore
from tests.inference_servers.processes import ServerProcess
from tests.models.remote.helpers import assert_same, remote, sample_images

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("binary", [False, True])
def test_served_classifier_predicts_as_the_builtin(kserve: ServerProcess, binary: bool) -> None:
    images = sample_images()
    served = remote(
        "kserve-v2",
        {
            "url": kserve.url,
            "model_name": "efficientnet",
            "preprocess": "efficientnet_lite0",
            "binary_data": binary,
            "batch_size": 2,  # three requests, two at once
        },
    )
    assert_same(served.predict(images), get_adapter("general-image-classifier").predict(images))
    assert served.concepts() == get_adapter("general-image-classifier").concepts()


@pytest.mark.parametrize("binary", [False, True])
def test_served_detector_predicts_as_the_builtin(kserve: ServerProcess, binary: bool) -> None:
    images = sample_images()
    served = remote(
        "kserve-v2",
        {"url": kserve.url, "model_name": "nanodet", "preprocess": "nanodet", "binary_data": binary},
    )
    got = served.predict(images)
    assert_same(got, get_adapter("general-object-detector").predict(images))
    assert any(p.concept == "person" for p in got[2])  # the astronaut
    assert served.per_request == 1  # the graph's fixed batch axis, read from the metadata


def test_generic_processing_reads_the_declared_layout(kserve: ServerProcess) -> None:
    """EfficientNet-Lite0 described by hand (size, mean/std, logits) instead of the preset."""
    builtin = get_adapter("general-image-classifier")
    labels = [c.id for c in builtin.concepts()]
    served = remote(
        "kserve-v2",
        {
            "url": kserve.url,
            "model_name": "efficientnet",
            "generic": {"input_size": [224, 224], "mean": [127, 127, 127], "std": [128, 128, 128]},
            "labels": labels,
            "top_k": 1,
        },
    )
    images = sample_images()
    got = served.predict(images)
    want = builtin.predict(images)
    # the preset shrinks with INTER_AREA, the generic path with INTER_LINEAR: the clear cases agree
    assert [g[0].concept for g in got[:2]] == [w[0].concept for w in want[:2]]
    assert got[0][0].concept == "n02124075"  # Egyptian cat


def test_unreachable_server_fails_the_batch_as_unavailable() -> None:
    adapter = remote(
        "kserve-v2",
        {"url": f"http://127.0.0.1:{free_port()}", "model_name": "m", "retries": 1, "backoff_s": 0.01},
    )
    with pytest.raises(ServerFailure) as caught:
        adapter.predict(sample_images()[:1])
    assert caught.value.code == "INFERENCE_SERVER_UNAVAILABLE"
    assert "after 2 tries" in caught.value.message


def test_unknown_model_is_a_server_error(kserve: ServerProcess) -> None:
    adapter = remote("kserve-v2", {"url": kserve.url, "model_name": "nothing-here", "retries": 0})
    with pytest.raises(ServerFailure) as caught:
        adapter.predict(sample_images()[:1])
    assert caught.value.code == "INFERENCE_SERVER_ERROR"


@pytest.mark.parametrize("url", ["http://10.1.2.3:8080", "http://127.0.0.1:9", "http://[::1]:9"])
def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    adapter = remote("kserve-v2", {"url": url, "model_name": "m", "retries": 0}, allow_private=False)
    with pytest.raises(ServerFailure) as caught:
        adapter.predict(sample_images()[:1])
    assert caught.value.code == "INFERENCE_SERVER_FORBIDDEN"


def test_one_concurrency_limit_per_server_and_model() -> None:
    config = {"url": "http://127.0.0.1:1", "model_name": "shared", "max_concurrency": 3}
    a = get_adapter("kserve-v2", config)
    b = get_adapter("kserve-v2", config | {"timeout_s": 5.0})  # another config, same model
    assert a.limit_key() == b.limit_key()  # type: ignore[attr-defined]
    assert semaphore(a.limit_key(), 3) is semaphore(b.limit_key(), 3)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "config", "field", "code"),
    [
        ("CLASSIFIER", {"model_name": "m"}, "config.url", ErrorCode.REQUIRED),
        ("CLASSIFIER", {"url": "ftp://host/x", "model_name": "m"}, "config.url", ErrorCode.INVALID),
        ("CLASSIFIER", {"url": "http://u:p@host", "model_name": "m"}, "config.url", ErrorCode.INVALID),
        ("CLASSIFIER", {"url": "http://h", "model_name": "a/b"}, "config.model_name", ErrorCode.INVALID),
        (
            "CLASSIFIER",
            {"url": "http://h", "model_name": "m", "batch_size": 0},
            "config.batch_size",
            ErrorCode.OUT_OF_RANGE,
        ),
        (
            "CLASSIFIER",
            {"url": "http://h", "model_name": "m", "retries": 9},
            "config.retries",
            ErrorCode.OUT_OF_RANGE,
        ),
        (
            "CLASSIFIER",
            {"url": "http://h", "model_name": "m", "timeout": 3},
            "config.timeout",
            ErrorCode.UNKNOWN_KEY,
        ),
        (
            "CLASSIFIER",
            {"url": "http://h", "model_name": "m", "preprocess": "nanodet"},
            "config.preprocess",
            ErrorCode.ADAPTER_MISMATCH,
        ),
        (
            "DETECTOR",
            {"url": "http://h", "model_name": "m"},
            "config.generic.output",
            ErrorCode.ADAPTER_MISMATCH,
        ),
        (
            "CLASSIFIER",
            {"url": "http://h", "model_name": "m", "generic": {"output": "yolov8"}},
            "config.generic.output",
            ErrorCode.ADAPTER_MISMATCH,
        ),
        (
            "DETECTOR",
            {"url": "http://h", "model_name": "m", "generic": {"output": "yolov9"}},
            "config.generic.output",
            ErrorCode.INVALID,
        ),
        (
            "SEGMENTER",
            {"url": "http://h", "model_name": "m"},
            "config.generic.output",
            ErrorCode.ADAPTER_MISMATCH,
        ),
        (
            "DETECTOR",
            {"url": "http://h", "model_name": "m", "generic": {"output": "yolov8_seg"}},
            "config.generic.output",
            ErrorCode.ADAPTER_MISMATCH,
        ),
        (
            "CLASSIFIER",
            {"url": "http://h", "model_name": "m", "generic": {"layout": "CHWN"}},
            "config.generic.layout",
            ErrorCode.INVALID,
        ),
    ],
)
def test_bad_configs_are_typed_errors(
    kind: str, config: dict[str, object], field: str, code: ErrorCode
) -> None:
    with pytest.raises(AdapterError) as caught:
        validate_config("kserve-v2", kind, config)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_a_changed_address_rule_applies_to_the_next_batch() -> None:
    adapter = remote("kserve-v2", {"url": f"http://127.0.0.1:{free_port()}", "model_name": "m", "retries": 0})
    with pytest.raises(ServerFailure) as allowed:
        adapter.predict(sample_images()[:1])
    assert allowed.value.code == "INFERENCE_SERVER_UNAVAILABLE"  # checked, allowed, nobody there
    adapter.bind_network(False)
    with pytest.raises(ServerFailure) as refused:
        adapter.predict(sample_images()[:1])
    assert refused.value.code == "INFERENCE_SERVER_FORBIDDEN"
