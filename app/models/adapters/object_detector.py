"""``general-object-detector``: NanoDet-m 416 (COCO-80) on onnxruntime.

The image is letterboxed into the 416 x 416 input (aspect ratio kept, borders padded), so a
wide or tall photo is not squashed; box decoding (GFL integral over 11 distance bins) and
class-wise NMS are done in numpy, and boxes are mapped back through the letterbox. Boxes are
returned normalised to the input image (top, left, bottom, right).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from .base import (
    WEIGHTS_DIR,
    AdapterInput,
    Box,
    ModelAdapter,
    ModelConcept,
    Prediction,
    check_image,
)
from .config import OnnxConfig
from .imaging import Fit, letterbox, nms

MODEL_FILE = WEIGHTS_DIR / "nanodet_m_416.onnx"
CLASSES_FILE = WEIGHTS_DIR / "coco_classes.txt"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_BINS = 11  # reg_max 10 -> 11 bins
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
# NMS is quadratic in its candidates: only the best ones per stride enter it, whatever the
# thresholds (a 0.25 threshold leaves far fewer on ordinary images, so results do not change).
MAX_CANDIDATES = 1_000
MAX_DETECTIONS = 300  # per image: each one becomes an annotation write
# The letterbox border, in pixels before normalisation: NanoDet's own keep-ratio transform pads
# with black.
PAD_VALUE = 0


def concept_id(name: str) -> str:
    return name.replace(" ", "-")


def grid_centers(size: int, strides: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Cell centres (x, y) in input pixels of each stride's square grid."""
    centers = {}
    for s in strides:
        n = size // s
        ys, xs = np.divmod(np.arange(n * n), n)
        centers[s] = ((xs + 0.5) * s, (ys + 0.5) * s)
    return centers


def decode_gfl(
    outs: Mapping[str, np.ndarray],
    centers: Mapping[int, tuple[np.ndarray, np.ndarray]],
    min_confidence: float,
    bins: int = REG_BINS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NanoDet heads (``cls_<stride>``: cells x classes, ``reg_<stride>``: cells x 4 x bins)
    -> candidate boxes ``x1, y1, x2, y2`` in input pixels, their scores and class indices."""
    all_boxes, all_scores, all_labels = [], [], []
    for s in sorted(centers):
        cls = outs[f"cls_{s}"][0]
        cells, labels = np.nonzero(cls > min_confidence)
        if cells.size == 0:
            continue
        if cells.size > MAX_CANDIDATES:
            best = np.argpartition(-cls[cells, labels], MAX_CANDIDATES - 1)[:MAX_CANDIDATES]
            cells, labels = cells[best], labels[best]
        reg = outs[f"reg_{s}"][0][cells].reshape(-1, 4, bins)
        reg = np.exp(reg - reg.max(-1, keepdims=True))
        reg /= reg.sum(-1, keepdims=True)
        dist = (reg * np.arange(bins, dtype=np.float32)).sum(-1) * s  # l, t, r, b
        cx, cy = centers[s][0][cells], centers[s][1][cells]
        all_boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        all_scores.append(cls[cells, labels])
        all_labels.append(labels)
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_labels)


class ObjectDetectorConfig(OnnxConfig):
    # Above 0 and below 1: a zero threshold with no suppression turns one image into minutes of NMS.
    min_confidence: float = Field(0.25, ge=0.001, le=1.0, description="drop boxes scored lower")
    iou_threshold: float = Field(0.6, gt=0.0, lt=1.0, description="NMS overlap that suppresses")
    max_detections: int = Field(100, ge=1, le=MAX_DETECTIONS, description="boxes kept per image")


class ObjectDetectorAdapter(ModelAdapter):
    """COCO-80 object detector; concept ids are the COCO names with ``-`` for spaces.

    Config: ``ObjectDetectorConfig`` (``min_confidence``, ``iou_threshold`` of the NMS,
    ``max_detections``, ``intra_op_num_threads``, ``allow_spinning``; defaults and bounds there).
    """

    name = "general-object-detector"
    kind = "DETECTOR"
    config_schema = ObjectDetectorConfig
    options: ObjectDetectorConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.min_confidence = self.options.min_confidence
        self.iou_threshold = self.options.iou_threshold
        self.max_detections = self.options.max_detections
        self._concepts: list[ModelConcept] | None = None
        self._session: Any = None
        self._centers = grid_centers(INPUT_SIZE, STRIDES)

    def concepts(self) -> list[ModelConcept]:
        if self._concepts is None:
            names = [n.strip() for n in CLASSES_FILE.read_text(encoding="utf-8").splitlines()]
            self._concepts = [ModelConcept(id=concept_id(n), name=n) for n in names if n]
        return list(self._concepts)

    def _load(self) -> None:
        self.concepts()
        self._session = self.make_session(MODEL_FILE)

    @staticmethod
    def preprocess(img: np.ndarray) -> tuple[np.ndarray, Fit]:
        x, fit = letterbox(img, INPUT_SIZE, INPUT_SIZE, PAD_VALUE)
        x = (x[..., ::-1].astype(np.float32) - MEAN_BGR) / STD_BGR  # RGB -> BGR, normalise
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), fit

    def decode(self, outs: dict[str, np.ndarray], fit: Fit) -> list[Prediction]:
        assert self._concepts is not None
        boxes, scores, labels = decode_gfl(outs, self._centers, self.min_confidence)
        if not scores.size:
            return []
        boxes = fit.to_image(boxes)
        # class-wise NMS via the coordinate-offset trick (normalised boxes: 2 keeps classes apart)
        keep = nms(boxes + labels[:, None] * 2.0, scores, self.iou_threshold, self.max_detections)
        preds = []
        for i in keep:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            c = self._concepts[int(labels[i])]
            preds.append(
                Prediction(
                    concept=c.id,
                    confidence=float(scores[i]),
                    region=Box(top=y1, left=x1, bottom=y2, right=x2),
                    extra={"name": c.name},
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
        names = [o.name for o in self._session.get_outputs()]
        out: list[list[Prediction]] = []
        for img in images:  # the exported graph has a fixed batch size of 1
            x, fit = self.preprocess(img)
            res = self._session.run(names, {"input": x})
            out.append(self.decode(dict(zip(names, res, strict=True)), fit))
        return out
