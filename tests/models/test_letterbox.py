"""The built-in detector letterboxes (keeps the aspect ratio, pads) and maps boxes back; the
cases of the issue that found the squashing, on scikit-image's photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as samples

from app.models.adapters import AdapterInput, Box, ModelAdapter, Prediction, get_adapter
from app.models.adapters.imaging import letterbox, stretch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector() -> ModelAdapter:
    return get_adapter("general-object-detector")


def detect(detector: ModelAdapter, image: np.ndarray) -> list[Prediction]:
    (preds,) = detector.predict([AdapterInput(image=np.ascontiguousarray(image))])
    return preds


def side_by_side(*images: np.ndarray) -> np.ndarray:
    height = min(i.shape[0] for i in images)
    return np.concatenate(
        [cv2.resize(i, (round(i.shape[1] * height / i.shape[0]), height)) for i in images], axis=1
    )


def best(preds: list[Prediction], concept: str) -> Prediction:
    found = [p for p in preds if p.concept == concept]
    assert found, [(p.concept, round(p.confidence, 2)) for p in preds]
    return max(found, key=lambda p: p.confidence)


def test_letterbox_keeps_the_aspect_ratio_and_maps_boxes_back() -> None:
    image = np.full((100, 400, 3), 200, np.uint8)
    fitted, fit = letterbox(image, 64, 64, pad_value=7)
    assert fitted.shape == (64, 64, 3)
    assert (fitted[:24] == 7).all() and (fitted[40:] == 7).all() and (fitted[24:40] == 200).all()
    # the whole image sits at x 0..64, y 24..40 of the input
    mapped = fit.to_image(np.array([[0.0, 24.0, 64.0, 40.0], [16.0, 0.0, 32.0, 64.0]]))
    np.testing.assert_allclose(mapped, [[0, 0, 1, 1], [0.25, 0, 0.5, 1]])
    _, squash = stretch(image, 64, 64)
    np.testing.assert_allclose(squash.to_image(np.array([[0.0, 0.0, 32.0, 32.0]])), [[0, 0, 0.5, 0.5]])


def test_detector_finds_the_cat_on_chelsea(detector: ModelAdapter) -> None:
    preds = detect(detector, samples.chelsea())
    assert preds[0].concept == "cat" and preds[0].confidence > 0.5  # squashed: person 0.56


def test_detector_finds_the_cat_on_chelsea_padded_into_a_wide_frame(detector: ModelAdapter) -> None:
    cat = samples.chelsea()  # 300 x 451
    frame = np.zeros((300, 1200, 3), np.uint8)
    frame[:, 600:1051] = cat
    preds = detect(detector, frame)
    found = best(preds, "cat")
    assert preds[0] is found and found.confidence > 0.4
    box = found.region
    assert isinstance(box, Box)
    # the box lies on the cat's part of the frame (x 0.5 .. 0.876), not on the black band
    assert box.left >= 0.45 and box.right <= 0.9 and box.right - box.left > 0.15


def test_detector_finds_the_cat_and_the_cup_side_by_side(detector: ModelAdapter) -> None:
    preds = detect(detector, side_by_side(samples.chelsea(), samples.coffee()))
    assert {p.concept for p in preds[:2]} == {"cat", "cup"}  # squashed: zebra 0.32
    cat, cup = best(preds, "cat"), best(preds, "cup")
    assert isinstance(cat.region, Box) and isinstance(cup.region, Box)
    assert cat.region.right < 0.55 < cup.region.left + 0.1  # the cat left, the cup right


def test_detector_finds_the_astronaut_beside_the_motorcycle(detector: ModelAdapter) -> None:
    preds = detect(detector, side_by_side(samples.astronaut(), samples.stereo_motorcycle()[0]))
    person = best(preds, "person")
    assert preds[0] is person and person.confidence > 0.6  # squashed: person 0.31
    assert best(preds, "motorcycle").confidence > 0.5
