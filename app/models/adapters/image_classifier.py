"""``general-image-classifier``: EfficientNet-Lite0 (ImageNet-1k) on onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from .base import (
    WEIGHTS_DIR,
    AdapterInput,
    ModelAdapter,
    ModelConcept,
    Prediction,
    check_image,
    softmax,
)
from .config import OnnxConfig

MODEL_FILE = WEIGHTS_DIR / "efficientnet_lite0.onnx"
CLASSES_FILE = WEIGHTS_DIR / "imagenet_classes.txt"
INPUT_SIZE = 224
NUM_CLASSES = 1000
FEATURES = "features"  # extra graph output: the pooled tensor the final FC layer reads
FEATURE_DIM = 1280


def load_imagenet_concepts() -> list[ModelConcept]:
    out = []
    for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            synset, name = line.split("\t", 1)
            out.append(ModelConcept(id=synset, name=name))
    return out


class ImageClassifierConfig(OnnxConfig):
    top_k: int = Field(5, ge=1, le=NUM_CLASSES, description="best classes kept per image")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="drop classes scored lower")
    center_crop: bool = Field(False, description="shorter side to 256, then a 224 centre crop")


class ImageClassifierAdapter(ModelAdapter):
    """ImageNet classifier; concept ids are WordNet synsets (``n02124075`` = Egyptian cat).

    Config: ``ImageClassifierConfig`` (``top_k``, ``min_confidence``, ``center_crop``: without
    it the whole image is resized to 224x224; threads; defaults and bounds there).
    Confidences are the softmax over the 1000 classes.
    """

    name = "general-image-classifier"
    kind = "CLASSIFIER"
    config_schema = ImageClassifierConfig
    options: ImageClassifierConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.top_k = self.options.top_k
        self.min_confidence = self.options.min_confidence
        self.center_crop = self.options.center_crop
        self._concepts: list[ModelConcept] | None = None
        self._session: Any = None

    def concepts(self) -> list[ModelConcept]:
        if self._concepts is None:
            self._concepts = load_imagenet_concepts()
        return list(self._concepts)

    def _load(self) -> None:
        self.concepts()
        self._session = self.shared_session(MODEL_FILE, lambda: with_features_output(MODEL_FILE))

    @property
    def default_features(self) -> bool:
        """Whether ``features`` equal those of the default configuration (preprocessing is the
        only option that changes them): a task's own pass can then stand for the search's."""
        return not self.center_crop

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled penultimate features (``(n, 1280)`` float32, not normalised) of ``H x W x 3``
        uint8 images, from the same session as ``predict``."""
        self.ensure_loaded()
        if not images:
            return np.zeros((0, FEATURE_DIM), np.float32)
        x = np.stack([self.preprocess(img) for img in images])
        return np.asarray(self._run([FEATURES], x)[0], np.float32)

    def predict_with_features(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> tuple[list[list[Prediction]], np.ndarray]:
        """``predict`` and ``features`` of the same images from one session run (both graph
        outputs at once: the features cost nothing extra)."""
        if not batch:
            return [], np.zeros((0, FEATURE_DIM), np.float32)
        images = [check_image(item, self.name) for item in batch]
        self.ensure_loaded()
        x = np.stack([self.preprocess(img) for img in images])
        logits, features = self._run(["logits", FEATURES], x)
        return self.predictions(logits), np.asarray(features, np.float32)

    def _run(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        """The session's outputs for a batch: the built-in session runs it in chunks
        (``RUNTIME_OPTIONS["run_chunk"]``, the same results with a chunk's memory); a session
        answered elsewhere (an inference server, ``remote.kserve``) takes the batch as it is."""
        run_chunked = getattr(self._session, "run_chunked", None)
        if run_chunked is not None:
            return list(run_chunked(names, {"input": x}))
        return list(self._session.run(names, {"input": x}))

    def preprocess(self, img: np.ndarray) -> np.ndarray:
        import cv2

        if self.center_crop:
            h, w = img.shape[:2]
            scale = 256 / min(h, w)
            img = cv2.resize(
                img,
                (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
            h, w = img.shape[:2]
            top, left = (h - INPUT_SIZE) // 2, (w - INPUT_SIZE) // 2
            img = img[top : top + INPUT_SIZE, left : left + INPUT_SIZE]
        else:
            interp = cv2.INTER_AREA if min(img.shape[:2]) >= INPUT_SIZE else cv2.INTER_LINEAR
            img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=interp)
        # EfficientNet-Lite normalisation: (x - 127) / 128, RGB, NCHW.
        x = (img.astype(np.float32) - 127.0) / 128.0
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        if not batch:
            return []
        images = [check_image(item, self.name) for item in batch]
        self.ensure_loaded()
        assert self._concepts is not None
        x = np.stack([self.preprocess(img) for img in images])
        return self.predictions(self._run(["logits"], x)[0])

    def predictions(self, logits: np.ndarray) -> list[list[Prediction]]:
        """Each row of ``(n, 1000)`` logits as its best classes (``top_k``, ``min_confidence``)."""
        self.concepts()
        assert self._concepts is not None
        probs = softmax(logits.astype(np.float64), axis=1)
        k = max(1, min(self.top_k, probs.shape[1]))
        out: list[list[Prediction]] = []
        for row in probs:
            top = np.argsort(-row)[:k]
            preds = []
            for i in top:
                conf = float(row[i])
                if conf < self.min_confidence:
                    break
                c = self._concepts[int(i)]
                preds.append(Prediction(concept=c.id, confidence=conf, extra={"name": c.name}))
            out.append(preds)
        return out


def with_features_output(path: Path) -> bytes:
    """The model with the input of its final Gemm/MatMul (the flattened global average pool)
    added as graph output ``features``: one session returns scores and features, no new
    weights."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    last = next(n for n in reversed(graph.node) if n.op_type in ("Gemm", "MatMul"))
    pooled = last.input[0]
    graph.node.append(onnx.helper.make_node("Identity", [pooled], [FEATURES], name="features_identity"))
    graph.output.append(onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, None))
    return bytes(model.SerializeToString())
