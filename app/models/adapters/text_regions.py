"""``text-region-detector``: RapidOCR (PP-OCRv4 det + angle cls + rec, bundled ONNX models).

Every detected text line becomes a ``Polygon`` (4 points, ``(row, col)`` normalised) of the
concept ``text``; the recognised string is in ``extra["text"]`` and the confidence is the
recognition score. The engine keeps ``extra`` with the raw prediction and copies the string to
the routed annotation's ``text`` (GraphQL ``Annotation.text``, editable with ``editAnnotation``,
exported in JSONL and COCO).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from .base import (
    AdapterInput,
    BoundedSession,
    InferenceTimeLimit,
    ModelAdapter,
    ModelConcept,
    Polygon,
    Prediction,
    check_image,
)
from .config import ThreadsConfig


class TextRegionConfig(ThreadsConfig):
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="recognition score below which a line is dropped"
    )
    use_angle_cls: bool = Field(True, description="turn upside-down lines before recognising")


class TextRegionAdapter(ModelAdapter):
    """Config: ``TextRegionConfig`` (``min_confidence`` is rapidocr's ``text_score``;
    ``use_angle_cls``; ``intra_op_num_threads``)."""

    name = "text-region-detector"
    kind = "SEGMENTER"
    config_schema = TextRegionConfig
    options: TextRegionConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.min_confidence = self.options.min_confidence
        self.use_angle_cls = self.options.use_angle_cls
        self._engine: Any = None
        self._call_lock = threading.Lock()  # the rapidocr engine object is not re-entrant

    def concepts(self) -> list[ModelConcept]:
        return [ModelConcept(id="text", name="text")]

    def _load(self) -> None:
        from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]

        n = self.num_threads
        self._engine = RapidOCR(
            text_score=self.min_confidence,
            use_cls=self.use_angle_cls,
            print_verbose=False,
            # rapidocr copies these global values into its det/cls/rec sessions
            intra_op_num_threads=n,
            inter_op_num_threads=1,
        )
        # rapidocr runs its own onnxruntime sessions (det, cls, rec): wrap each one so its runs
        # honour the batch's deadline like every other model's (``BoundedSession``)
        for part, holder in (("text_det", "infer"), ("text_cls", "infer"), ("text_rec", "session")):
            infer: Any = getattr(getattr(self._engine, part, None), holder, None)
            session = getattr(infer, "session", None)
            if isinstance(session, BoundedSession):
                continue
            if session is None:
                raise RuntimeError(f"rapidocr's {part} session is not where this adapter expects it")
            infer.session = BoundedSession(session)

    def _run_one(self, img: np.ndarray) -> list[Prediction]:
        h, w = img.shape[:2]
        bgr = np.ascontiguousarray(img[..., ::-1])
        with self._call_lock:
            try:
                result, _elapse = self._engine(bgr)
            except Exception as exc:  # rapidocr wraps every session error in its own
                if isinstance(exc.__cause__, InferenceTimeLimit):
                    raise exc.__cause__ from None
                raise
        preds: list[Prediction] = []
        for box, text, score in result or []:
            pts = tuple((min(max(float(y) / h, 0.0), 1.0), min(max(float(x) / w, 0.0), 1.0)) for x, y in box)
            preds.append(
                Prediction(
                    concept="text",
                    confidence=float(score),
                    region=Polygon(points=pts),
                    extra={"text": str(text)},
                )
            )
        return preds

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        if not batch:
            return []
        images = [check_image(item, self.name) for item in batch]
        self.ensure_loaded()
        return [self._run_one(img) for img in images]
