"""The model adapter interface.

An adapter wraps one model (usually an ONNX file under ``app/models/weights``) and turns a
batch of inputs into raw predictions. Adapters are synchronous; workers call ``predict`` from
a worker thread (onnxruntime releases the GIL while it runs).

Geometry follows Clarifai: a bounding box is ``top_row, left_col, bottom_row, right_col`` and
polygon points are ``(row, col)``, all normalised to 0..1 of the image height/width.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

KINDS = ("CLASSIFIER", "DETECTOR", "SEGMENTER", "TEXT_CLASSIFIER")


@dataclass(frozen=True)
class Box:
    """Axis-aligned box, normalised 0..1 (Clarifai ``bounding_box``)."""

    top: float
    left: float
    bottom: float
    right: float


@dataclass(frozen=True)
class Polygon:
    """Polygon as ``(row, col)`` points normalised 0..1."""

    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Prediction:
    """One raw model output. ``concept`` is the *model's* concept id."""

    concept: str
    confidence: float
    region: Box | Polygon | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdapterInput:
    """One input: an ``H x W x 3`` uint8 RGB image, or a text."""

    image: np.ndarray | None = None
    text: str | None = None


@dataclass(frozen=True)
class ModelConcept:
    id: str
    name: str


class ModelAdapter(abc.ABC):
    """Base class of every model adapter."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "CLASSIFIER" | "DETECTOR" | "SEGMENTER" | "TEXT_CLASSIFIER"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self._load_lock = threading.Lock()
        self._loaded = False

    @abc.abstractmethod
    def concepts(self) -> list[ModelConcept]:
        """The concepts this model can output (empty for zero-shot models)."""

    @abc.abstractmethod
    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        """One list of predictions per input, in input order.

        ``concepts`` is only used by zero-shot models (the concept names to score).
        """

    # ----------------------------------------------------------------- helpers
    @property
    def num_threads(self) -> int:
        return int(self.config.get("intra_op_num_threads", 2))

    def ensure_loaded(self) -> None:
        """Load weights once (thread-safe); subclasses implement ``_load``."""
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:  # noqa: B027 - optional hook, overridden where needed
        """Load the model; called at most once, lazily, by ``ensure_loaded``."""

    def make_session(self, path: Path | str) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # No busy-waiting between kernels: in a worker, the event loop (database writes of the
        # previous batch) shares the cores with inference, and spinning threads starve it and
        # themselves (measured: 3-7x slower predictions under a busy event loop with spinning).
        if not self.config.get("allow_spinning", False):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_image(item: AdapterInput, model: str) -> np.ndarray:
    """Return the input's image, validated as ``H x W x 3`` uint8, or raise ValueError."""
    if not isinstance(item, AdapterInput):
        raise ValueError(f"{model}: expected an AdapterInput, got {type(item).__name__}")
    img = item.image
    if img is None:
        if item.text is not None:
            raise ValueError(f"{model}: this model takes images, but a text input was given")
        raise ValueError(f"{model}: input has no image")
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{model}: image must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{model}: image dtype must be uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{model}: image must have shape (H, W, 3), got {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{model}: image is empty {img.shape}")
    return img


def check_text(item: AdapterInput, model: str) -> str:
    """Return the input's text, or raise ValueError."""
    if not isinstance(item, AdapterInput):
        raise ValueError(f"{model}: expected an AdapterInput, got {type(item).__name__}")
    if item.text is None:
        if item.image is not None:
            raise ValueError(f"{model}: this model takes texts, but an image input was given")
        raise ValueError(f"{model}: input has no text")
    if not isinstance(item.text, str):
        raise ValueError(f"{model}: text must be a str, got {type(item.text).__name__}")
    return item.text


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))
