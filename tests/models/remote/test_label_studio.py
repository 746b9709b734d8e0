"""``ls-ml-backend`` against a backend built with the Label Studio ML SDK (``label-studio-ml``)
serving the bundled detector, and the mapping of every result type it reads."""

from __future__ import annotations

import pytest

from app.core.errors import ErrorCode
from app.models.adapters import AdapterError, Box, Polygon, get_adapter, validate_config
from app.models.adapters.remote import ServerFailure
from app.models.adapters.remote.label_studio import results_to_predictions
from tests.inference_servers.processes import ServerProcess, ls_backend
from tests.models.remote.helpers import assert_same, remote, sample_images


@pytest.mark.slow
def test_backend_detector_predicts_as_the_builtin(ls_server: ServerProcess) -> None:
    images = sample_images()
    served = remote("ls-ml-backend", {"url": ls_server.url, "batch_size": 2})
    assert_same(served.predict(images), get_adapter("general-object-detector").predict(images))


@pytest.mark.slow
def test_a_backend_that_fails_is_a_server_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = ls_backend(tmp_path / "log", fail_every=1).start()
    try:
        with pytest.raises(ServerFailure) as caught:
            remote("ls-ml-backend", {"url": server.url}).predict(sample_images()[:1])
        assert caught.value.code == "INFERENCE_SERVER_ERROR"
    finally:
        server.stop()


def test_results_map_to_predictions() -> None:
    prediction = {
        "score": 0.4,
        "result": [
            {"type": "choices", "value": {"choices": ["cat", "pet"]}, "score": 0.9},
            {
                "type": "rectanglelabels",
                "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["dog"]},
            },
            {
                "type": "polygonlabels",
                "value": {"points": [[10, 20], [50, 20], [50, 60]], "polygonlabels": ["road"], "score": 0.7},
            },
            {
                "type": "rectanglelabels",
                "value": {"x": 0, "y": 0, "width": 1, "height": 1, "rectanglelabels": ["x"]},
                "score": 0.01,
            },
            {"type": "textarea", "value": {"text": ["ignored"]}},
        ],
    }
    got = results_to_predictions(prediction, 200, 100, min_confidence=0.05)
    assert [(p.concept, p.confidence) for p in got] == [
        ("cat", 0.9),
        ("pet", 0.9),
        ("dog", 0.4),
        ("road", 0.7),
    ]
    assert got[0].region is None
    assert got[2].region == Box(top=0.2, left=0.1, bottom=0.6, right=0.4)
    assert got[3].region == Polygon(((0.2, 0.1), (0.2, 0.5), (0.6, 0.5)))


def test_a_rotated_rectangle_becomes_its_bounding_box() -> None:
    value = {"x": 50, "y": 50, "width": 10, "height": 10, "rotation": 90, "rectanglelabels": ["a"]}
    (p,) = results_to_predictions({"result": [{"type": "rectanglelabels", "value": value}]}, 100, 100, 0.0)
    assert isinstance(p.region, Box)
    assert p.region.top == pytest.approx(0.5) and p.region.bottom == pytest.approx(0.6)
    assert p.region.left == pytest.approx(0.4) and p.region.right == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("config", "field", "code"),
    [
        ({}, "config.url", ErrorCode.REQUIRED),
        ({"url": "file:///etc/passwd"}, "config.url", ErrorCode.INVALID),
        ({"url": "http://h", "image_format": "gif"}, "config.image_format", ErrorCode.INVALID),
        ({"url": "http://h", "max_concurrency": 100}, "config.max_concurrency", ErrorCode.OUT_OF_RANGE),
    ],
)
def test_bad_configs_are_typed_errors(config: dict[str, object], field: str, code: ErrorCode) -> None:
    with pytest.raises(AdapterError) as caught:
        validate_config("ls-ml-backend", "DETECTOR", config)
    assert (caught.value.field, caught.value.code) == (field, code)
