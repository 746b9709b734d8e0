"""Model adapters on real weights (skimage sample images and toy texts), plus input checks."""

from __future__ import annotations

import numpy as np
import pytest

from app.models.adapters import (
    ADAPTERS,
    AdapterInput,
    Box,
    ModelAdapter,
    Polygon,
    Prediction,
    UnknownAdapter,
    get_adapter,
)

data = pytest.importorskip("skimage.data")


def rgb(name: str) -> np.ndarray:
    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def top(preds: list[Prediction]) -> Prediction:
    assert preds, "no predictions"
    return max(preds, key=lambda p: p.confidence)


def in_unit(v: float) -> bool:
    return 0.0 <= v <= 1.0


# --------------------------------------------------------------------------- registry / null
def test_registry_lists_all_adapters() -> None:
    assert set(ADAPTERS) >= {
        "null",
        "general-image-classifier",
        "general-object-detector",
        "text-region-detector",
        "text-topic-classifier",
        "text-sentiment",
    }
    for name, cls in ADAPTERS.items():
        assert cls.name == name
        assert cls.kind in ("CLASSIFIER", "DETECTOR", "SEGMENTER", "TEXT_CLASSIFIER")


def test_get_adapter_caches_per_config() -> None:
    a = get_adapter("null", {"delay_ms": 0})
    assert get_adapter("null", {"delay_ms": 0}) is a
    assert get_adapter("null", {"delay_ms": 1}) is not a
    with pytest.raises(UnknownAdapter):
        get_adapter("no-such-model")


def test_null_adapter_defaults() -> None:
    adapter = get_adapter("null")
    out = adapter.predict([AdapterInput(text="a"), AdapterInput(image=rgb("coffee"))])
    assert len(out) == 2
    assert all(len(preds) == 3 for preds in out)
    assert [c.id for c in adapter.concepts()] == [p.concept for p in out[0]]


def test_null_adapter_configured_predictions() -> None:
    adapter = get_adapter(
        "null",
        {
            "kind": "DETECTOR",
            "predictions": [
                {
                    "concept": "dog",
                    "confidence": 0.8,
                    "region": {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6},
                },
                {
                    "concept": "lake",
                    "confidence": 0.3,
                    "region": {"points": [[0, 0], [0, 1], [1, 1]]},
                },
            ],
        },
    )
    assert adapter.kind == "DETECTOR"
    (preds,) = adapter.predict([AdapterInput(text="x")])
    assert preds[0] == Prediction("dog", 0.8, Box(0.1, 0.2, 0.5, 0.6))
    assert preds[1].region == Polygon(((0.0, 0.0), (0.0, 1.0), (1.0, 1.0)))
    assert adapter.predict([]) == []


# --------------------------------------------------------------------------- image classifier
@pytest.fixture(scope="module")
def classifier() -> ModelAdapter:
    return get_adapter("general-image-classifier")


def test_classifier_cat(classifier: ModelAdapter) -> None:
    (preds,) = classifier.predict([AdapterInput(image=rgb("chelsea"))])
    assert len(preds) == 5
    best = top(preds)
    names = {c.id: c.name for c in classifier.concepts()}
    assert "cat" in names[best.concept]  # Egyptian cat / tabby / tiger cat
    assert best.concept == "n02124075" and best.confidence > 0.5
    assert preds == sorted(preds, key=lambda p: -p.confidence)
    assert all(p.region is None for p in preds)


def test_classifier_coffee_and_batch(classifier: ModelAdapter) -> None:
    out = classifier.predict([AdapterInput(image=rgb("coffee")), AdapterInput(image=rgb("chelsea"))])
    assert len(out) == 2
    assert out[0][0].extra["name"] in ("espresso", "cup")
    assert out[1][0].concept == "n02124075"


def test_classifier_top_k_config() -> None:
    (preds,) = get_adapter("general-image-classifier", {"top_k": 2}).predict(
        [AdapterInput(image=rgb("coffee"))]
    )
    assert len(preds) == 2


def test_classifier_concepts(classifier: ModelAdapter) -> None:
    concepts = classifier.concepts()
    assert len(concepts) == 1000
    assert {"id": "n02124075", "name": "Egyptian cat"} in [vars(c) for c in concepts]


# --------------------------------------------------------------------------- object detector
@pytest.fixture(scope="module")
def detector() -> ModelAdapter:
    return get_adapter("general-object-detector")


@pytest.mark.parametrize(
    ("image", "expected"),
    [("astronaut", "person"), ("coffee", "cup"), ("stereo_motorcycle", "motorcycle")],
)
def test_detector(detector: ModelAdapter, image: str, expected: str) -> None:
    (preds,) = detector.predict([AdapterInput(image=rgb(image))])
    # letterboxed, the coffee photo's table (0.52) outranks its cup (0.27): both are there
    best = top([p for p in preds if p.concept == expected])
    assert isinstance(best.region, Box)
    box = best.region
    assert all(in_unit(v) for v in (box.top, box.left, box.bottom, box.right))
    assert box.top < box.bottom and box.left < box.right
    # a large object: the box covers a good part of the image
    assert (box.bottom - box.top) * (box.right - box.left) > 0.2


def test_detector_concepts(detector: ModelAdapter) -> None:
    ids = [c.id for c in detector.concepts()]
    assert len(ids) == 80 and ids[0] == "person" and "dining-table" in ids


# --------------------------------------------------------------------------- text regions
def test_text_regions_page() -> None:
    adapter = get_adapter("text-region-detector")
    (preds,) = adapter.predict([AdapterInput(image=rgb("page"))])
    assert len(preds) >= 3
    for p in preds:
        assert p.concept == "text"
        assert isinstance(p.region, Polygon) and len(p.region.points) == 4
        assert all(in_unit(r) and in_unit(c) for r, c in p.region.points)
        assert isinstance(p.extra["text"], str) and p.extra["text"]
        assert 0.0 < p.confidence <= 1.0
    texts = " ".join(p.extra["text"] for p in preds).lower()
    assert "segmentation" in texts


# --------------------------------------------------------------------------- text models
TOPIC_TEXTS = {
    "sports": "The striker scored twice in the final and the crowd went wild.",
    "finance": "Shares fell 3% after the quarterly earnings call.",
    "complaint": "My order arrived broken and customer support never answered my emails.",
    "cooking": "Simmer the onions slowly in butter until golden, then add garlic.",
}


def test_topic_zero_shot() -> None:
    adapter = get_adapter("text-topic-classifier")
    concepts = list(TOPIC_TEXTS)
    out = adapter.predict([AdapterInput(text=t) for t in TOPIC_TEXTS.values()], concepts)
    for expected, preds in zip(TOPIC_TEXTS, out, strict=True):
        assert {p.concept for p in preds} == set(concepts)
        assert top(preds).concept == expected
        assert abs(sum(p.confidence for p in preds) - 1.0) < 1e-6
        assert -1.0 <= preds[0].extra["similarity"] <= 1.0


def test_topic_single_concept_uses_independent_score() -> None:
    adapter = get_adapter("text-topic-classifier")
    (match,), (other,) = adapter.predict(
        [AdapterInput(text=TOPIC_TEXTS["sports"]), AdapterInput(text=TOPIC_TEXTS["finance"])],
        ["sports"],
    )
    assert match.confidence > 0.5 > other.confidence


def test_topic_needs_concepts() -> None:
    with pytest.raises(ValueError, match="concept"):
        get_adapter("text-topic-classifier").predict([AdapterInput(text="hello")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I love this, it is wonderful!", "positive"),
        ("This is terrible and I hate it.", "negative"),
        ("The box is on the table.", "neutral"),
    ],
)
def test_sentiment(text: str, expected: str) -> None:
    (preds,) = get_adapter("text-sentiment").predict([AdapterInput(text=text)])
    assert top(preds).concept == expected
    assert {p.concept for p in preds} == {"positive", "negative", "neutral"}
    assert abs(sum(p.confidence for p in preds) - 1.0) < 1e-6
    assert all(p.confidence >= 0 for p in preds)


# --------------------------------------------------------------------------- bad inputs
IMAGE_MODELS = ["general-image-classifier", "general-object-detector", "text-region-detector"]
TEXT_MODELS = ["text-topic-classifier", "text-sentiment"]


@pytest.mark.parametrize("name", IMAGE_MODELS + TEXT_MODELS)
def test_empty_batch(name: str) -> None:
    assert get_adapter(name).predict([], ["sports"]) == []


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize(
    "image",
    [
        np.zeros((32, 32), np.uint8),  # grey, no channel axis
        np.zeros((32, 32, 4), np.uint8),  # RGBA
        np.zeros((32, 32, 3), np.float32),  # wrong dtype
        np.zeros((0, 32, 3), np.uint8),  # empty
    ],
    ids=["2d", "rgba", "float32", "empty"],
)
def test_image_model_rejects_bad_image(name: str, image: np.ndarray) -> None:
    with pytest.raises(ValueError):
        get_adapter(name).predict([AdapterInput(image=image)])


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_model_rejects_text(name: str) -> None:
    with pytest.raises(ValueError, match="text input"):
        get_adapter(name).predict([AdapterInput(text="a cat")])


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_text_model_rejects_image(name: str) -> None:
    with pytest.raises(ValueError, match="image input"):
        get_adapter(name).predict([AdapterInput(image=rgb("coffee"))], ["sports"])


def test_small_image_works() -> None:
    tiny = np.full((5, 7, 3), 127, np.uint8)
    for name in IMAGE_MODELS:
        (preds,) = get_adapter(name).predict([AdapterInput(image=tiny)])
        assert isinstance(preds, list)
