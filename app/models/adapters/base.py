"""The model adapter interface.

An adapter wraps one model (usually an ONNX file under ``app/models/weights``) and turns a
batch of inputs into raw predictions. Adapters are synchronous; workers call ``predict`` from
a worker thread (onnxruntime releases the GIL while it runs).

Geometry follows Clarifai: a bounding box is ``top_row, left_col, bottom_row, right_col`` and
polygon points are ``(row, col)``, all normalised to 0..1 of the image height/width.
"""

from __future__ import annotations

import abc
import enum
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from app.models.adapters.config import DEFAULT_THREADS, AdapterConfig, threads_for
from app.models.adapters.errors import AdapterMismatch

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class ModelKind(enum.StrEnum):
    """What a model outputs; the one list of kinds (registry entries, GraphQL, adapters)."""

    CLASSIFIER = "CLASSIFIER"
    DETECTOR = "DETECTOR"
    SEGMENTER = "SEGMENTER"
    TEXT_CLASSIFIER = "TEXT_CLASSIFIER"


KINDS = tuple(k.value for k in ModelKind)


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
    """Base class of every model adapter.

    ``config_schema`` declares the config it reads (bounded, closed); ``kinds`` the model kinds
    it can serve; ``zero_shot`` whether it scores concept names given at run time.
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # the kind it reports; one of ``kinds``
    kinds: ClassVar[frozenset[str]]
    zero_shot: ClassVar[bool] = False
    config_schema: ClassVar[type[AdapterConfig]] = AdapterConfig
    options: AdapterConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.options = self.config_schema.load(config, self.name)
        self._load_lock = threading.Lock()
        self._loaded = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__ and "kinds" not in cls.__dict__:
            cls.kinds = frozenset({cls.kind})

    @classmethod
    def check_kind(cls, kind: str) -> None:
        """Raise ``AdapterMismatch`` unless this adapter serves models of ``kind``."""
        if kind not in cls.kinds:
            fits = ", ".join(k for k in KINDS if k in cls.kinds)
            raise AdapterMismatch(f"adapter {cls.name!r} serves {fits} models, not {kind}", field="adapter")

    @classmethod
    def check_model(cls, kind: str, options: AdapterConfig, zero_shot: bool | None) -> None:
        """Raise ``AdapterMismatch`` (or ``InvalidConfig``) when a model of ``kind`` (and, when
        given, ``zero_shot``) cannot run on this adapter with these validated options."""
        cls.check_kind(kind)
        if zero_shot and not cls.zero_shot:
            raise AdapterMismatch(
                f"adapter {cls.name!r} cannot score concept names given at run time (zero-shot)",
                field="zeroShot",
            )

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
        return threads_for(getattr(self.options, "intra_op_num_threads", DEFAULT_THREADS))

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

    def make_session(self, path: Path | str | bytes) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # No busy-waiting between kernels: in a worker, the event loop (database writes of the
        # previous batch) shares the cores with inference, and spinning threads starve it and
        # themselves (measured: 3-7x slower predictions under a busy event loop with spinning).
        if not getattr(self.options, "allow_spinning", False):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = path if isinstance(path, bytes) else str(path)  # bytes: a model built in memory
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


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
