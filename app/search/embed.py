"""Turning crops, images and texts into vectors (synchronous, CPU: call from a thread).

Two embedding models, each named with a version; a stored vector carries the name@version of
the model that made it and is only ever compared with vectors of the same one:

* images and region crops: EfficientNet-Lite0's pooled penultimate features (1280-d), from
  the built-in image classifier's own onnxruntime session (an extra graph output, no new
  weights);
* texts: all-MiniLM-L6-v2 mean-pooled sentence embeddings (384-d), the text topic
  classifier's session.

Vectors are L2-normalised, so cosine similarity is a dot product.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.annotations.crops import Box, crop_image
from app.models.adapters import ImageClassifierAdapter, TextTopicAdapter, get_adapter
from app.search.codec import normalise

# Images per classifier run: onnxruntime's arena keeps the largest run's activations, and 8
# crops kept the detector task's worker peak at 451 MiB against 537 with 16 (bench/RESULTS.md).
BATCH = 8
TEXT_BATCH = 16  # MiniLM: faster than 64 or 256 on short texts (less padding)
# Decoded images are reduced to this long side first: the classifier looks at 224x224, and a
# crop of a small region of a big photo keeps enough pixels at this size.
MAX_SIDE = 1024


@dataclass(frozen=True)
class EmbeddingModel:
    name: str
    version: str
    dim: int

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


IMAGE_MODEL = EmbeddingModel("efficientnet-lite0-avgpool", "1", 1280)
TEXT_MODEL = EmbeddingModel("all-minilm-l6-v2-mean", "1", 384)
MODELS = {m.key: m for m in (IMAGE_MODEL, TEXT_MODEL)}


def _classifier() -> ImageClassifierAdapter:
    adapter = get_adapter("general-image-classifier")
    assert isinstance(adapter, ImageClassifierAdapter)
    return adapter


def _text_model() -> TextTopicAdapter:
    adapter = get_adapter("text-topic-classifier")
    assert isinstance(adapter, TextTopicAdapter)
    return adapter


def embed_arrays(images: Sequence[np.ndarray]) -> np.ndarray:
    """``H x W x 3`` uint8 RGB arrays -> ``(n, 1280)`` normalised vectors."""
    if not images:
        return np.zeros((0, IMAGE_MODEL.dim), np.float32)
    adapter = _classifier()
    parts = [adapter.features(images[k : k + BATCH]) for k in range(0, len(images), BATCH)]
    return normalise(np.concatenate(parts))


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, TEXT_MODEL.dim), np.float32)
    adapter = _text_model()
    parts = [adapter.embed(texts[k : k + TEXT_BATCH]) for k in range(0, len(texts), TEXT_BATCH)]
    return normalise(np.concatenate(parts))


# A region is decoded so that it is at least this many pixels each way (the classifier's 224
# px input, twice over: its area filter then gives about what it gives from a full-size
# decode), the whole image being at most ``MAX_SIDE``: JPEGs are decoded smaller at once.
EMBED_SIDE = 448


def decode_size(box: Box | None) -> tuple[int, int]:
    """The size (w, h) a JPEG's decoder may scale down to for ``box`` (the whole image: None)."""
    top, left, bottom, right = box if box is not None else (0.0, 0.0, 1.0, 1.0)
    w = EMBED_SIDE / max(right - left, 1e-3)
    h = EMBED_SIDE / max(bottom - top, 1e-3)
    return min(MAX_SIDE, int(w) + 1), min(MAX_SIDE, int(h) + 1)


def open_image(data: bytes, size: tuple[int, int] = (MAX_SIDE, MAX_SIDE)) -> Image.Image:
    """Decode, reduced at once for JPEG (the decoder's own scaling, never below ``size``), to
    at most ``MAX_SIDE``."""
    img: Image.Image = Image.open(io.BytesIO(data))
    img.draft("RGB", size)  # type: ignore[attr-defined]
    img = img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    return img


def image_array(data: bytes, box: Box | None = None) -> np.ndarray:
    """The whole image, or the region ``box`` of it, as an RGB array."""
    with open_image(data, decode_size(box)) as img:
        return np.asarray(crop_image(img, box) if box is not None else img, np.uint8)


def _arrays(items: Sequence[tuple[bytes, Box | None]]) -> list[np.ndarray]:
    """Each item's pixels; an image with several regions here is decoded once, at the size its
    smallest region needs."""
    sizes: dict[int, tuple[int, int]] = {}
    for data, box in items:
        w, h = decode_size(box)
        old = sizes.get(id(data), (0, 0))
        sizes[id(data)] = (max(old[0], w), max(old[1], h))
    decoded: dict[int, Image.Image] = {}
    try:
        out = []
        for data, box in items:
            img = decoded.get(id(data))
            if img is None:
                img = decoded[id(data)] = open_image(data, sizes[id(data)])
            out.append(np.asarray(crop_image(img, box) if box is not None else img, np.uint8))
        return out
    finally:
        for img in decoded.values():
            img.close()


def embed_images(items: Sequence[tuple[bytes, Box | None]]) -> np.ndarray:
    """Encoded images, each whole (None) or cropped to a normalised box. Decoded ``BATCH`` at a
    time, so no more than one batch of pixels is held."""
    if not items:
        return np.zeros((0, IMAGE_MODEL.dim), np.float32)
    adapter = _classifier()
    parts = [adapter.features(_arrays(items[k : k + BATCH])) for k in range(0, len(items), BATCH)]
    return normalise(np.concatenate(parts))
