"""``kserve-v2`` with ``generic.output: yolov5 / yolov8 / yolov8_seg``: a served ultralytics-style
detector or segmenter decodes as the same ONNX file uploaded (``onnx_layouts``), on KServe's real
model server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.models.adapters import AdapterInput, Box, OnnxModelAdapter, Polygon, model_files
from app.models.adapters.onnx_check import check_onnx
from app.models.adapters.remote import ServerFailure
from tests.inference_servers.processes import ServerProcess, kserve_server
from tests.models.onnx_files import constant_model, yolov5_output, yolov8_output
from tests.models.remote.helpers import remote
from tests.models.test_onnx_layouts import seg_outputs

pytestmark = pytest.mark.slow

LABELS = ["a", "b", "c"]
# boxes (cx, cy, w, h) in the 64 x 64 input's pixels, their classes and scores
BOXES = [(32, 32, 16, 8), (10, 40, 4, 4), (50, 12, 10, 6)]
CLASSES = [1, 2, 0]
SCORES = [0.9, 0.1, 0.6]
MODELS = {
    "yolo8": constant_model({"output0": yolov8_output(BOXES, CLASSES, SCORES, 3)}),
    "yolo8rows": constant_model(
        {"output0": yolov8_output(BOXES, CLASSES, SCORES, 3).transpose(0, 2, 1).copy()}
    ),
    "yolo5": constant_model({"output0": yolov5_output(BOXES, CLASSES, [1.0, 1.0, 1.0], SCORES, 3)}),
    "seg": constant_model(seg_outputs()),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("yolo")
    files = {}
    for name, data in MODELS.items():
        files[name] = folder / f"{name}.onnx"
        files[name].write_bytes(data)
    process = kserve_server(folder / "server.log", models=files).start()
    yield process
    process.stop()


def _uploaded(data: bytes, image: np.ndarray, kind: str = "DETECTOR") -> list:
    checked = check_onnx(data, kind, None, [(x, x.upper()) for x in LABELS])
    model_files.provide(checked.config["blob_key"], data)
    try:
        return OnnxModelAdapter(checked.config).predict([AdapterInput(image=image)])[0]
    finally:
        model_files.clear()


def _served(server: ServerProcess, model: str, output: str, labels: list[str] | None = LABELS) -> object:
    config = {
        "url": server.url,
        "model_name": model,
        "generic": {"input_size": [64, 64], "resize": "letterbox", "output": output},
        "min_confidence": 0.25,
    }
    if labels is not None:
        config["labels"] = labels
    return remote("kserve-v2", config)


def _boxes(predictions: list) -> list[tuple[str, float, tuple[float, ...]]]:
    out = []
    for p in predictions:
        assert isinstance(p.region, Box)
        r = p.region
        out.append(
            (
                p.concept,
                round(p.confidence, 5),
                tuple(round(v, 5) for v in (r.top, r.left, r.bottom, r.right)),
            )
        )
    return sorted(out)


@pytest.mark.parametrize(
    ("model", "output"), [("yolo8", "yolov8"), ("yolo8rows", "yolov8"), ("yolo5", "yolov5")]
)
def test_a_served_yolo_output_decodes_as_the_same_file_uploaded(
    server: ServerProcess, model: str, output: str
) -> None:
    image = np.zeros((64, 128, 3), np.uint8)  # letterboxed: scale 0.5, 16 px bands
    got = _served(server, model, output).predict([AdapterInput(image=image)])[0]
    want = _uploaded(MODELS[model], image)
    assert _boxes(got) == _boxes(want)
    # the 0.9 box of class b, centred in the input (x 24..40, y 28..36) -> x 48..80, y 24..40
    assert ("b", 0.9, (0.375, 0.375, 0.625, 0.625)) in _boxes(got)
    assert [c for c, _, _ in _boxes(got)] == ["a", "b"]  # the 0.1 box is under min_confidence


def test_without_labels_the_classes_come_from_the_shape(server: ServerProcess) -> None:
    got = _served(server, "yolo8", "yolov8", labels=None).predict(
        [AdapterInput(image=np.zeros((64, 64, 3), np.uint8))]
    )
    assert sorted(p.concept for p in got[0]) == ["0", "1"]


def test_a_served_output_that_is_not_the_declared_layout_fails_the_batch(server: ServerProcess) -> None:
    # yolov8's attributes x anchors declared as yolov5; and a class count that does not fit
    for adapter in (
        _served(server, "yolo8", "yolov5"),
        _served(server, "yolo8", "yolov8", labels=["a", "b"]),
    ):
        with pytest.raises(ServerFailure) as caught:
            adapter.predict([AdapterInput(image=np.zeros((64, 64, 3), np.uint8))])
        assert caught.value.code == "INFERENCE_SERVER_ERROR"
        assert "config.generic.output" in caught.value.message


def _polygons(predictions: list) -> list[tuple[str, float, tuple[tuple[float, float], ...]]]:
    out = []
    for p in predictions:
        assert isinstance(p.region, Polygon)
        points = tuple((round(r, 5), round(c, 5)) for r, c in p.region.points)
        out.append((p.concept, round(p.confidence, 5), points))
    return sorted(out)


def test_a_served_yolov8_seg_output_decodes_as_the_same_file_uploaded(server: ServerProcess) -> None:
    image = np.zeros((64, 128, 3), np.uint8)  # letterboxed: scale 0.5, 16 px bands
    got = _served(server, "seg", "yolov8_seg").predict([AdapterInput(image=image)])[0]
    want = _uploaded(MODELS["seg"], image, "SEGMENTER")
    assert len(got) == 1 and got[0].concept == "b"
    assert _polygons(got) == _polygons(want)
    # the mask's input rows 16..32 of 64 (band 16..48 is the image) -> image rows 0..0.5
    rows = [r for r, _ in got[0].region.points]
    assert min(rows) == pytest.approx(0.0, abs=1 / 8) and max(rows) == pytest.approx(0.5, abs=1 / 8)


def test_a_served_output_that_is_not_yolov8_seg_fails_the_batch(server: ServerProcess) -> None:
    # a single-output detector declared as a segmenter; a segmenter read with a wrong class count
    for adapter in (
        _served(server, "yolo8", "yolov8_seg"),
        _served(server, "seg", "yolov8_seg", labels=["a"]),
    ):
        with pytest.raises(ServerFailure) as caught:
            adapter.predict([AdapterInput(image=np.zeros((64, 64, 3), np.uint8))])
        assert caught.value.code == "INFERENCE_SERVER_ERROR"
