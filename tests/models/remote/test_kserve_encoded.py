"""``kserve-v2`` with ``input.format: encoded_image``: image files as a ``BYTES`` tensor, decoded
and preprocessed by KServe's real model server (``--image-model`` in
``tests/inference_servers/kserve_onnx.py``), post-processed here."""

from __future__ import annotations

import base64
import io
import struct
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from app.core.errors import ErrorCode
from app.models.adapters import AdapterError, AdapterInput, get_adapter, validate_config
from app.models.adapters.remote import PartialFailure, ServerFailure
from app.models.adapters.remote.images import image_file, same_picture
from app.models.adapters.remote.tensors import HEADER, encode_bytes_request
from tests.inference_servers.processes import ServerProcess, kserve_server
from tests.models.remote.helpers import assert_same, remote, sample_images


def as_file(img: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(img).save(out, format=fmt, quality=90)
    return out.getvalue()


def with_originals(fmt: str) -> list[AdapterInput]:
    """The samples as the worker hands them over: decoded from their file, the file kept."""
    out = []
    for item in sample_images():
        assert item.image is not None
        raw = as_file(item.image, fmt)
        with Image.open(io.BytesIO(raw)) as img:
            out.append(AdapterInput(image=np.asarray(img.convert("RGB")), encoded=raw))
    return out


def encoded(url: str, model: str, preprocess: str, **extra: object) -> dict[str, object]:
    return {
        "url": url,
        "model_name": model,
        "preprocess": preprocess,
        "input": {"format": "encoded_image", **extra.pop("input", {})},  # type: ignore[dict-item]
        **extra,
    }


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", None])
def test_served_classifier_on_encoded_images_predicts_as_the_builtin(
    kserve: ServerProcess, fmt: str | None
) -> None:
    """Original JPEG and PNG files go as they are; without one the array is re-encoded as PNG."""
    images = with_originals(fmt) if fmt else sample_images()
    served = remote(
        "kserve-v2", encoded(kserve.url, "efficientnet-image", "efficientnet_lite0", batch_size=2)
    )
    assert_same(served.predict(images), get_adapter("general-image-classifier").predict(images))


@pytest.mark.slow
def test_served_detector_on_encoded_images_predicts_as_the_builtin(kserve: ServerProcess) -> None:
    images = with_originals("JPEG")
    served = remote("kserve-v2", encoded(kserve.url, "nanodet-image", "nanodet", batch_size=3))
    got = served.predict(images)
    assert_same(got, get_adapter("general-object-detector").predict(images))
    assert any(p.concept == "person" for p in got[2])  # the astronaut
    assert served.per_request == 3  # the BYTES input has no fixed batch axis


@pytest.mark.slow
def test_generic_processing_maps_encoded_outputs_with_the_declared_layout(kserve: ServerProcess) -> None:
    builtin = get_adapter("general-image-classifier")
    served = remote(
        "kserve-v2",
        encoded(
            kserve.url,
            "efficientnet-image",
            "generic",
            labels=[c.id for c in builtin.concepts()],
            top_k=3,
            output_names=["logits"],
        ),
    )
    images = with_originals("JPEG")
    got, want = served.predict(images), builtin.predict(images)
    assert [[p.concept for p in g] for g in got] == [[p.concept for p in w[:3]] for w in want]


@pytest.mark.slow
def test_a_tensor_model_refuses_encoded_images_with_a_server_error(kserve: ServerProcess) -> None:
    served = remote("kserve-v2", encoded(kserve.url, "efficientnet", "efficientnet_lite0"))
    with pytest.raises(ServerFailure) as caught:
        served.predict(sample_images()[:1])
    assert caught.value.code == "INFERENCE_SERVER_ERROR"
    assert "takes FP32 tensors, not BYTES" in caught.value.message


@pytest.mark.slow
def test_an_encoded_image_model_refuses_tensors_with_a_server_error(kserve: ServerProcess) -> None:
    served = remote(
        "kserve-v2",
        {"url": kserve.url, "model_name": "efficientnet-image", "preprocess": "efficientnet_lite0"},
    )
    with pytest.raises(ServerFailure) as caught:
        served.predict(sample_images()[:1])
    assert caught.value.code == "INFERENCE_SERVER_ERROR"
    assert "set input.format: encoded_image" in caught.value.message


def test_the_original_file_is_sent_only_when_it_decodes_to_the_array() -> None:
    img = sample_images()[0].image
    assert img is not None
    jpeg, webp = as_file(img, "JPEG"), as_file(img, "WEBP")
    assert image_file(AdapterInput(image=img, encoded=jpeg), img, "png", 95) is jpeg
    assert same_picture(jpeg, img)
    assert not same_picture(jpeg, img[::2, ::2])  # the worker shrank it: re-encoded
    assert not same_picture(webp, img)
    assert not same_picture(b"not an image", img)
    sent = image_file(AdapterInput(image=img, encoded=webp), img, "png", 95)
    with Image.open(io.BytesIO(sent)) as back:
        assert back.format == "PNG"
        assert np.array_equal(np.asarray(back.convert("RGB")), img)  # lossless
    small = image_file(AdapterInput(image=img), img, "jpeg", 80)
    assert small[:2] == b"\xff\xd8"


def test_bytes_tensors_travel_as_base64_json_or_length_prefixed_binary() -> None:
    files = [b"\x00\xffone", b"two"]
    body, headers = encode_bytes_request("image", files, ["logits"], binary=False)
    (tensor,) = orjson.loads(body)["inputs"]
    assert (tensor["datatype"], tensor["shape"], tensor["parameters"]) == (
        "BYTES",
        [2],
        {"content_type": "base64"},
    )
    assert [base64.b64decode(x) for x in tensor["data"]] == files
    body, headers = encode_bytes_request("image", files, ["logits"], binary=True)
    size = int(headers[HEADER])
    raw = body[size:]
    assert orjson.loads(body[:size])["inputs"][0]["parameters"] == {"binary_data_size": len(raw)}
    assert raw == struct.pack("<I", 5) + files[0] + struct.pack("<I", 3) + files[1]


@pytest.mark.parametrize(
    ("config", "field", "code"),
    [
        ({"input": {"format": "pixels"}}, "config.input.format", ErrorCode.INVALID),
        ({"input": {"format": "encoded_image", "size": 3}}, "config.input.size", ErrorCode.UNKNOWN_KEY),
        (
            {"input": {"format": "encoded_image", "reencode": "jpeg", "jpeg_quality": 0}},
            "config.input.jpeg_quality",
            ErrorCode.OUT_OF_RANGE,
        ),
        ({"input": {"reencode": "jpeg"}}, "config.input.format", ErrorCode.ADAPTER_MISMATCH),
        (
            {"input": {"format": "encoded_image", "jpeg_quality": 80}},
            "config.input.jpeg_quality",
            ErrorCode.ADAPTER_MISMATCH,
        ),
        ({"input": "encoded_image"}, "config.input", ErrorCode.WRONG_TYPE),
        (
            {"input": {"format": "encoded_image"}, "preprocess": "efficientnet_lite0", "center_crop": True},
            "config.center_crop",
            ErrorCode.ADAPTER_MISMATCH,
        ),
    ],
)
def test_bad_input_declarations_are_typed_errors(
    config: dict[str, object], field: str, code: ErrorCode
) -> None:
    with pytest.raises(AdapterError) as caught:
        validate_config("kserve-v2", "CLASSIFIER", {"url": "http://h", "model_name": "m", **config})
    assert (caught.value.field, caught.value.code) == (field, code)


def test_an_encoded_image_config_is_accepted_and_kept() -> None:
    stored = validate_config(
        "kserve-v2",
        "CLASSIFIER",
        {"url": "http://h", "model_name": "m", "input": {"format": "encoded_image", "reencode": "jpeg"}},
    )
    assert stored["input"]["format"] == "encoded_image"


@pytest.mark.slow
def test_a_partly_failed_batch_keeps_the_answered_requests(tmp_path: Path) -> None:
    """Every 2nd infer request fails (HTTP 500); one image a request, one at a time: the 1st and
    3rd images keep their predictions, the 2nd and 4th carry the server's error."""
    server = kserve_server(tmp_path / "kserve.log", fail_every=2).start()
    try:
        served = remote(
            "kserve-v2",
            encoded(server.url, "efficientnet-image", "efficientnet_lite0", batch_size=1, max_concurrency=1),
        )
        images = sample_images()[:4]
        with pytest.raises(PartialFailure) as caught:
            served.predict(images)
    finally:
        server.stop()
    want = get_adapter("general-image-classifier").predict(images)
    results, failures = caught.value.results, caught.value.failures
    assert [r is None for r in results] == [False, True, False, True]
    assert_same([results[0], results[2]], [want[0], want[2]])  # type: ignore[list-item]
    assert [f.code if f else None for f in failures] == [
        None,
        "INFERENCE_SERVER_ERROR",
        None,
        "INFERENCE_SERVER_ERROR",
    ]


@pytest.mark.slow
def test_a_batch_whose_every_request_failed_raises_the_server_failure(tmp_path: Path) -> None:
    server = kserve_server(tmp_path / "kserve.log", fail_every=1).start()
    try:
        served = remote(
            "kserve-v2", encoded(server.url, "efficientnet-image", "efficientnet_lite0", batch_size=2)
        )
        with pytest.raises(ServerFailure) as caught:
            served.predict(sample_images()[:4])
    finally:
        server.stop()
    assert not isinstance(caught.value, PartialFailure)
    assert caught.value.code == "INFERENCE_SERVER_ERROR"
