"""Every supported ONNX output layout decodes exactly (tiny models built with ``onnx.helper``
whose outputs are constants), and the upload check refuses what makes no sense."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from app.core.errors import ErrorCode
from app.models.adapters import (
    AdapterInput,
    AdapterMismatch,
    Box,
    InvalidConfig,
    ModelRejected,
    OnnxModelAdapter,
    Polygon,
    model_files,
)
from app.models.adapters.onnx_check import check_onnx, metadata_names
from tests.models.onnx_files import (
    channel_mean_model,
    constant_model,
    yolov5_output,
    yolov8_output,
)

ABC = [("a", "A"), ("b", "B"), ("c", "C")]


@pytest.fixture(autouse=True)
def no_files_left() -> Iterator[None]:
    yield
    model_files.clear()


def run(data: bytes, kind: str, config: dict | None = None, concepts=ABC, image: np.ndarray | None = None):
    checked = check_onnx(data, kind, config, concepts)
    model_files.provide(checked.config["blob_key"], data)
    adapter = OnnxModelAdapter(checked.config)
    img = np.zeros((64, 128, 3), np.uint8) if image is None else image
    return checked, adapter.predict([AdapterInput(image=img)])[0]


def approx_box(region: object, top: float, left: float, bottom: float, right: float) -> None:
    assert isinstance(region, Box)
    assert (region.top, region.left, region.bottom, region.right) == pytest.approx(
        (top, left, bottom, right), abs=1e-6
    )


# A 64 x 128 (h x w) image letterboxed into the 64 x 64 input: scale 0.5, 16 px bands top and
# bottom. A box centred at (32, 32) of 16 x 8 input pixels is x 24..40, y 28..36 in the input,
# so x 48..80 of 128 and y 24..40 of 64 in the image.
EXPECTED = (24 / 64, 48 / 128, 40 / 64, 80 / 128)


def test_yolov8_transposed_output_with_names_metadata() -> None:
    out = yolov8_output([(32, 32, 16, 8), (10, 40, 4, 4)], [1, 2], [0.9, 0.1], 3)
    data = constant_model({"output0": out}, names="{0: 'person', 1: 'bicycle', 2: 'car'}")
    checked, preds = run(data, "DETECTOR", concepts=None)
    assert checked.layout == "yolov8"
    assert checked.concepts == [("person", "person"), ("bicycle", "bicycle"), ("car", "car")]
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("bicycle", 0.9)]  # 0.1 < 0.25
    approx_box(preds[0].region, *EXPECTED)


def test_yolov8_rows_output_and_request_concepts_win_over_metadata() -> None:
    out = yolov8_output([(32, 32, 16, 8)], [2], [0.8], 3).transpose(0, 2, 1).copy()
    data = constant_model({"output0": out}, names="{0: 'x', 1: 'y'}")  # 2 names: ignored
    checked, preds = run(data, "DETECTOR")
    assert checked.layout == "yolov8"
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("c", 0.8)]
    approx_box(preds[0].region, *EXPECTED)


def test_yolov5_scores_are_objectness_times_class_score() -> None:
    out = yolov5_output([(32, 32, 16, 8), (5, 5, 2, 2)], [0, 1], [0.8, 0.9], [0.5, 0.2], 3)
    checked, preds = run(constant_model({"output0": out}), "DETECTOR")
    assert checked.layout == "yolov5"
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("a", 0.4)]  # 0.9 * 0.2 < 0.25
    approx_box(preds[0].region, *EXPECTED)


def test_nms_suppresses_within_a_class_only() -> None:
    boxes = [(32, 32, 16, 8), (33, 32, 16, 8), (32, 32, 16, 8)]
    out = yolov8_output(boxes, [0, 0, 1], [0.9, 0.8, 0.7], 3)
    _, preds = run(constant_model({"output0": out}), "DETECTOR")
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("a", 0.9), ("b", 0.7)]
    _, preds = run(constant_model({"output0": out}), "DETECTOR", {"iou_threshold": 0.95, "max_detections": 2})
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("a", 0.9), ("a", 0.8)]


def test_boxes_scores_labels_in_pixels_with_a_detection_count() -> None:
    outputs = {
        "boxes": np.array([[[24, 28, 40, 36], [0, 0, 8, 8], [1, 1, 2, 2]]], np.float32),
        "scores": np.array([[0.7, 0.6, 0.9]], np.float32),
        "labels": np.array([[2, 0, 1]], np.int64),
        "num_detections": np.array([2], np.int64),  # the third row is padding
    }
    checked, preds = run(constant_model(outputs), "DETECTOR")
    assert checked.layout == "boxes_scores_labels"
    assert checked.config["box_units"] == "pixels"
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("c", 0.7), ("a", 0.6)]
    approx_box(preds[0].region, *EXPECTED)
    approx_box(preds[1].region, 0.0, 0.0, 0.0, 16 / 128)  # y -16..0 in the image: clipped


def test_torchvision_style_normalized_yxyx_boxes_with_background_label() -> None:
    outputs = {
        "detection_boxes": np.array([[28 / 64, 24 / 64, 36 / 64, 40 / 64]], np.float32),
        "detection_scores": np.array([0.95], np.float32),
        "detection_classes": np.array([3], np.int64),  # 1-based: 0 is the background
    }
    config = {"box_format": "yxyx", "label_offset": 1}
    checked, preds = run(constant_model(outputs), "DETECTOR", config)
    assert checked.config["box_units"] == "normalized"
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("c", 0.95)]
    approx_box(preds[0].region, *EXPECTED)


def test_ssd_per_class_scores_without_labels() -> None:
    outputs = {
        "boxes": np.array([[[24, 28, 40, 36]]], np.float32),
        "scores": np.array([[[0.1, 0.7, 0.2]]], np.float32),
    }
    _, preds = run(constant_model(outputs), "DETECTOR")
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("b", 0.7)]
    approx_box(preds[0].region, *EXPECTED)


def test_classification_logits_get_a_softmax() -> None:
    logits = np.array([[2.0, 0.0, 1.0]], np.float32)
    checked, preds = run(constant_model({"logits": logits}), "CLASSIFIER")
    assert checked.layout == "classification" and checked.config["softmax"] == "always"
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert [p.concept for p in preds] == ["a", "c", "b"]
    assert [p.confidence for p in preds] == pytest.approx([probs[0], probs[2], probs[1]], abs=1e-6)
    assert all(p.region is None for p in preds)


def test_classification_probabilities_are_kept_as_they_are() -> None:
    probs = np.array([[0.2, 0.5, 0.3]], np.float32)
    checked, preds = run(constant_model({"probs": probs}), "CLASSIFIER", {"top_k": 2})
    assert checked.config["softmax"] == "never"
    assert [(p.concept, p.confidence) for p in preds] == [
        ("b", pytest.approx(0.5)),
        ("c", pytest.approx(0.3)),
    ]


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_preprocessing_channel_order_scale_mean_std_and_tensor_layout(nhwc: bool, order: str) -> None:
    image = np.empty((40, 50, 3), np.uint8)
    image[...] = (200, 100, 50)
    config = {
        "channel_order": order, "scale": 1.0, "mean": [10, 20, 30], "std": [2, 4, 5],
        "softmax": "never", "min_confidence": 0.0, "top_k": 3,
    }  # fmt: skip
    checked, preds = run(channel_mean_model(nhwc=nhwc), "CLASSIFIER", config, image=image)
    assert checked.config.get("tensor_layout", "auto") == "auto"  # found from the input shape
    pixels = (200, 100, 50) if order == "RGB" else (50, 100, 200)
    expected = {c: (v - m) / s for c, v, m, s in zip("abc", pixels, (10, 20, 30), (2, 4, 5), strict=True)}
    assert {p.concept: p.confidence for p in preds} == pytest.approx(expected)


def test_default_scale_is_one_over_255() -> None:
    image = np.full((32, 32, 3), 255, np.uint8)
    _, preds = run(channel_mean_model(), "CLASSIFIER", {"softmax": "never"}, image=image)
    assert [p.confidence for p in preds] == pytest.approx([1.0, 1.0, 1.0])


def test_names_metadata_forms() -> None:
    assert metadata_names({"names": "{0: 'person', 1: 'traffic light'}"}) == ["person", "traffic light"]
    assert metadata_names({"names": '["a", "b"]'}) == ["a", "b"]
    assert metadata_names({"names": "{1: 'a'}"}) is None  # not 0..n-1
    assert metadata_names({"names": "__import__('os')"}) is None
    assert metadata_names({}) is None


def rejected(data: bytes, kind: str = "DETECTOR", config: dict | None = None, concepts=ABC) -> ModelRejected:
    with pytest.raises(ModelRejected) as caught:
        check_onnx(data, kind, config, concepts)
    return caught.value


def test_nan_outputs_are_refused() -> None:
    out = yolov8_output([(32, 32, 16, 8)], [0], [0.9], 3)
    out[0, 0, 5] = np.nan
    error = rejected(constant_model({"output0": out}))
    assert error.code is ErrorCode.MODEL_OUTPUT_INVALID and error.field == "file"
    assert "NaN" in error.message


def test_boxes_far_outside_the_input_are_refused() -> None:
    out = yolov8_output([(1e6, 32, 16, 8)], [0], [0.9], 3)
    error = rejected(constant_model({"output0": out}))
    assert error.code is ErrorCode.MODEL_OUTPUT_INVALID and "outside" in error.message


def test_scores_that_are_not_probabilities_are_refused() -> None:
    out = yolov8_output([(32, 32, 16, 8)], [0], [7.5], 3)
    assert rejected(constant_model({"output0": out})).code is ErrorCode.MODEL_OUTPUT_INVALID


def test_labels_outside_the_concepts_are_refused() -> None:
    outputs = {
        "boxes": np.array([[24, 28, 40, 36]], np.float32),
        "scores": np.array([0.9], np.float32),
        "labels": np.array([7], np.int64),
    }
    assert rejected(constant_model(outputs)).code is ErrorCode.MODEL_OUTPUT_INVALID


def test_concept_count_must_match_the_outputs() -> None:
    out = yolov8_output([(32, 32, 16, 8)], [0], [0.9], 80)
    error = rejected(constant_model({"output0": out}))
    assert (error.code, error.field) == (ErrorCode.CONCEPT_COUNT_MISMATCH, "concepts")
    assert "80 classes" in error.message
    error = rejected(constant_model({"logits": np.zeros((1, 5), np.float32)}), "CLASSIFIER")
    assert (error.code, error.field) == (ErrorCode.CONCEPT_COUNT_MISMATCH, "concepts")


def test_inputs_that_are_not_one_three_channel_image_are_refused() -> None:
    out = {"logits": np.zeros((1, 3), np.float32)}
    error = rejected(constant_model(out, inputs=2), "CLASSIFIER")
    assert error.code is ErrorCode.UNSUPPORTED_MODEL_LAYOUT and "2 inputs" in error.message
    error = rejected(constant_model(out, input_shape=(1, 1, 64, 64)), "CLASSIFIER")
    assert error.code is ErrorCode.UNSUPPORTED_MODEL_LAYOUT and "1 channels" in error.message


def test_unknown_output_layouts_are_refused() -> None:
    outputs = {f"out{k}": np.zeros((1, 3), np.float32) for k in range(5)}
    assert rejected(constant_model(outputs)).code is ErrorCode.UNSUPPORTED_MODEL_LAYOUT
    outputs = {"a": np.zeros((1, 7), np.float32), "b": np.zeros((1, 7), np.float32)}  # no boxes
    assert rejected(constant_model(outputs)).code is ErrorCode.UNSUPPORTED_MODEL_LAYOUT


def test_files_that_are_not_onnx_or_are_truncated_do_not_load() -> None:
    assert rejected(b"\x89PNG\r\n not a model").code is ErrorCode.MODEL_LOAD_FAILED
    data = constant_model({"output0": yolov8_output([(32, 32, 16, 8)], [0], [0.9], 3)})
    assert rejected(data[: len(data) // 2]).code is ErrorCode.MODEL_LOAD_FAILED


def test_declared_config_is_bounded() -> None:
    data = constant_model({"logits": np.zeros((1, 3), np.float32)})
    with pytest.raises(InvalidConfig) as caught:
        check_onnx(data, "CLASSIFIER", {"scale": 5}, ABC)
    assert caught.value.field == "config.scale"
    with pytest.raises(InvalidConfig) as caught:
        check_onnx(data, "CLASSIFIER", {"blob_key": "0" * 64}, ABC)  # set by the upload only
    assert caught.value.code is ErrorCode.UNKNOWN_KEY


def seg_outputs(score: float = 0.9) -> dict[str, np.ndarray]:
    """YOLOv8-seg: 1 x (4 + 3 + 1) x N detections with one mask coefficient, and a 1 x 1 x 16 x
    16 prototype that is high on x 4..11, y 4..7 (input x 16..48, y 16..32 of 64 x 64)."""
    det = np.zeros((1, 4 + 3 + 1, 50), np.float32)
    det[0, :4, :] = np.array([32, 32, 4, 4], np.float32)[:, None]
    det[0, :4, 0] = (32, 24, 40, 24)  # a box a little larger than the mask
    det[0, 4 + 1, 0] = score
    det[0, 7, 0] = 1.0
    protos = np.full((1, 1, 16, 16), -10.0, np.float32)
    protos[0, 0, 4:8, 4:12] = 10.0
    return {"output0": det, "output1": protos}


def test_yolov8_seg_instances_become_polygons() -> None:
    checked, preds = run(constant_model(seg_outputs()), "SEGMENTER", image=np.zeros((64, 64, 3), np.uint8))
    assert checked.layout == "yolov8_seg"
    assert [(p.concept, round(p.confidence, 6)) for p in preds] == [("b", 0.9)]
    region = preds[0].region
    assert isinstance(region, Polygon) and len(region.points) >= 4
    rows = [r for r, _ in region.points]
    cols = [c for _, c in region.points]
    # the mask covers rows 0.25..0.5 and columns 0.25..0.75 of the image (one prototype cell = 1/16)
    assert min(rows) == pytest.approx(0.25, abs=1 / 16) and max(rows) == pytest.approx(0.5, abs=1 / 16)
    assert min(cols) == pytest.approx(0.25, abs=1 / 16) and max(cols) == pytest.approx(0.75, abs=1 / 16)


def test_yolov8_seg_needs_its_prototypes_and_the_right_kind() -> None:
    out = yolov8_output([(32, 32, 16, 8)], [0], [0.9], 3)
    assert rejected(constant_model({"output0": out}), "SEGMENTER").code is ErrorCode.UNSUPPORTED_MODEL_LAYOUT
    with pytest.raises(AdapterMismatch):
        check_onnx(constant_model(seg_outputs()), "DETECTOR", {"layout": "yolov8_seg"}, ABC)
