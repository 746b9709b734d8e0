"""The model adapter interface.

An adapter wraps one model (usually an ONNX file under ``app/models/weights``) and turns a
batch of inputs into raw predictions. Adapters are synchronous; workers call ``predict`` from
a worker thread (onnxruntime releases the GIL while it runs).

Geometry follows Clarifai: a bounding box is ``top_row, left_col, bottom_row, right_col`` and
polygon points are ``(row, col)``, all normalised to 0..1 of the image height/width.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import enum
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    """One input: an ``H x W x 3`` uint8 RGB image, or a text. ``encoded`` is the image's
    original file (JPEG, PNG, ...) when the worker has it: adapters that send images elsewhere
    may send it instead of re-encoding ``image`` (``remote.images``).

    For an adapter that ``wants_encoded``, the worker may hand over the file alone, not decoded:
    ``image`` None, ``encoded`` the file and ``size`` its (width, height) from its header."""

    image: np.ndarray | None = None
    text: str | None = None
    encoded: bytes | None = None
    size: tuple[int, int] | None = None


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

    @property
    def wants_encoded(self) -> bool:
        """Whether this model reads image files, not pixels: the worker then skips decoding
        and hands it ``AdapterInput(encoded=file, size=(width, height))`` when the file is
        what it would have sent anyway (``remote.images``)."""
        return False

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

    def shared_session(self, model_file: Path, load: Callable[[], bytes] | None = None) -> Any:
        """A session of ``model_file`` shared by every adapter of this class with the same
        session options, whatever the rest of their configs (``top_k``, templates, concepts):
        different configs of one model, and the search's embeddings, then hold one copy of it.
        ``load`` gives the bytes to load instead of the file (a graph with an extra output).
        Held weakly: it goes when the last adapter holding it is dropped (idle unload). A
        subclass whose ``make_session`` answers elsewhere (an inference server) never shares."""
        source = load if load is not None else (lambda: model_file)
        if type(self).make_session is not ModelAdapter.make_session:
            return self.make_session(source())
        key = (
            str(model_file),
            type(self),
            self.num_threads,
            bool(getattr(self.options, "allow_spinning", False)),
            tuple(sorted(RUNTIME_OPTIONS.items())),
        )
        with _shared_lock:
            session = _shared_sessions.get(key)
            if session is None:
                session = _shared_sessions[key] = self.make_session(source())
            return session

    def make_session(self, path: Path | str | bytes) -> BoundedSession:
        """A CPU session over a file, or over a model's bytes (uploaded models), whose runs
        honour the batch's ``Deadline``."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        arena = RUNTIME_OPTIONS["cpu_mem_arena"]
        shrink = arena and RUNTIME_OPTIONS["arena_shrink"]
        opts.enable_cpu_mem_arena = arena
        if shrink:  # weights outside the arena: it only holds a run's tensors, given back after
            opts.add_session_config_entry("session.use_device_allocator_for_initializers", "1")
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # No busy-waiting between kernels: in a worker, the event loop (database writes of the
        # previous batch) shares the cores with inference, and spinning threads starve it and
        # themselves (measured: 3-7x slower predictions under a busy event loop with spinning).
        if not getattr(self.options, "allow_spinning", False):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = path if isinstance(path, bytes) else str(path)
        session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        return BoundedSession(session, shrink_arena=shrink)


# --- process-wide onnxruntime options and the per-batch time bound ---------------------------

# ``ModelAdapter.shared_session``'s sessions: (file, adapter class, session options) -> session
_shared_sessions: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()

# read when a session is made (worker: Settings). The CPU arena keeps every chunk it ever
# grew to until its session is dropped (the adapter cache unloads idle models); "arena_shrink"
# hands the unused ones back at the end of each run (``memory.enable_memory_arena_shrinkage``)
# but measured higher peaks than a growing arena (bench/RESULTS.md), so it is opt-in.
# "run_chunk": the most images one run of a chunked session takes (``BoundedSession.run_chunked``;
# 0: a whole batch at once). A run's activations grow with the images in it (EfficientNet-Lite0:
# ~12 MiB an image at 224 px) while the time per image hardly changes past a few images.
RUNTIME_OPTIONS: dict[str, Any] = {"cpu_mem_arena": True, "arena_shrink": False, "run_chunk": 4}
SHRINK_CPU_ARENA = ("memory.enable_memory_arena_shrinkage", "cpu:0")


def configure_runtime(
    *, cpu_mem_arena: bool, arena_shrink: bool = False, run_chunk: int | None = None
) -> None:
    """Options for sessions made from now on (cached adapters keep theirs; ``run_chunk`` holds
    at once)."""
    RUNTIME_OPTIONS["cpu_mem_arena"] = cpu_mem_arena
    RUNTIME_OPTIONS["arena_shrink"] = arena_shrink
    if run_chunk is not None:
        RUNTIME_OPTIONS["run_chunk"] = run_chunk


class InferenceTimeLimit(Exception):
    """A batch's inference ran past its deadline (``Deadline``); its inputs fail with ``code``."""

    code = "INFERENCE_TIME_LIMIT"


class Deadline:
    """One batch's time bound, enforced from a watchdog thread.

    When it expires, every onnxruntime run in flight under it is terminated (``RunOptions.
    terminate``, which onnxruntime checks between kernels), later runs stop before their first
    kernel, and ``sleep`` (the null adapter's simulated cost) returns at once: the batch ends
    with ``InferenceTimeLimit`` instead of holding the worker.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expired = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[int, Any] = {}
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        return self._expired.is_set()

    def expire(self) -> None:
        with self._lock:
            self._expired.set()
            for options in self._runs.values():
                options.terminate = True

    def error(self) -> InferenceTimeLimit:
        return InferenceTimeLimit(f"inference took longer than the {self.seconds:g} s a batch may take")

    @contextlib.contextmanager
    def watching(self) -> Iterator[Any]:
        """``RunOptions`` for one ``session.run``, terminated when the deadline passes."""
        import onnxruntime as ort

        options = ort.RunOptions()
        with self._lock:
            self._runs[id(options)] = options
            options.terminate = self._expired.is_set()
        try:
            yield options
        finally:
            with self._lock:
                self._runs.pop(id(options), None)

    def sleep(self, seconds: float) -> None:
        if self._expired.wait(seconds):
            raise self.error()


_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "inference_deadline", default=None
)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[Deadline]:
    """Bound the inference run in this context (and the threads ``asyncio.to_thread`` starts
    from it, which copy the context) to ``seconds``."""
    deadline = Deadline(seconds)
    token = _deadline.set(deadline)
    deadline._timer.start()
    try:
        yield deadline
    finally:
        deadline._timer.cancel()
        _deadline.reset(token)


def bounded_sleep(seconds: float) -> None:
    """``time.sleep`` that ends with ``InferenceTimeLimit`` when the current deadline passes."""
    deadline = _deadline.get()
    if deadline is None:
        time.sleep(seconds)
    else:
        deadline.sleep(seconds)


class BoundedSession:
    """An ``InferenceSession`` whose every ``run`` honours the current ``Deadline``: the one
    place adapters' runs get their ``RunOptions`` (adapters call ``run`` as usual)."""

    def __init__(self, session: onnxruntime.InferenceSession, *, shrink_arena: bool = False) -> None:
        self.session = session
        self.shrink_arena = shrink_arena

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run_chunked(self, output_names: Any, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``run`` over at most ``RUNTIME_OPTIONS["run_chunk"]`` items of the batch at a time,
        the outputs joined again: for models whose every input and output has the batch first
        (a classifier's scores and features, a text encoder's embeddings), so the result is
        the same as one run while the run's memory stays that of a chunk."""
        chunk = int(RUNTIME_OPTIONS["run_chunk"])
        size = len(next(iter(input_feed.values())))
        if chunk <= 0 or size <= chunk:
            return list(self.run(output_names, input_feed))
        parts = [
            self.run(output_names, {name: value[k : k + chunk] for name, value in input_feed.items()})
            for k in range(0, size, chunk)
        ]
        return [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        deadline = _deadline.get()
        if deadline is None:
            if self.shrink_arena and run_options is None:
                import onnxruntime as ort

                run_options = ort.RunOptions()
                run_options.add_run_config_entry(*SHRINK_CPU_ARENA)
            return self.session.run(output_names, input_feed, run_options)
        with deadline.watching() as options:
            if self.shrink_arena:
                options.add_run_config_entry(*SHRINK_CPU_ARENA)
            try:
                return self.session.run(output_names, input_feed, options)
            except Exception as exc:
                if deadline.expired:
                    raise deadline.error() from exc
                raise


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
