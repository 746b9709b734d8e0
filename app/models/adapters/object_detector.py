"""``general-object-detector``: NanoDet-m 416 (COCO-80) on onnxruntime.

Pre-processing, box decoding (GFL integral over 11 distance bins) and class-wise NMS are
done in numpy. Boxes are returned normalised to the input image (top, left, bottom, right).
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


def concept_id(name: str) -> str:
    return name.replace(" ", "-")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> list[int]:
    """Greedy NMS on ``[x1, y1, x2, y2]`` boxes; returns kept indices, best first (at most
    ``limit``: the first ``limit`` of the full result, found without computing the rest)."""
    order = np.argsort(-scores)
    areas = np.maximum(0.0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0.0, boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size and (limit is None or len(keep) < limit):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


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
        self._centers = {}
        for s in STRIDES:
            n = INPUT_SIZE // s
            ys, xs = np.divmod(np.arange(n * n), n)
            self._centers[s] = ((xs + 0.5) * s, (ys + 0.5) * s)

    def concepts(self) -> list[ModelConcept]:
        if self._concepts is None:
            names = [n.strip() for n in CLASSES_FILE.read_text(encoding="utf-8").splitlines()]
            self._concepts = [ModelConcept(id=concept_id(n), name=n) for n in names if n]
        return list(self._concepts)

    def _load(self) -> None:
        self.concepts()
        self._session = self.make_session(MODEL_FILE)

    @staticmethod
    def preprocess(img: np.ndarray) -> np.ndarray:
        import cv2

        x = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        x = (x[..., ::-1].astype(np.float32) - MEAN_BGR) / STD_BGR  # RGB -> BGR, normalise
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def _decode(self, outs: dict[str, np.ndarray]) -> list[Prediction]:
        assert self._concepts is not None
        all_boxes, all_scores, all_labels = [], [], []
        for s in STRIDES:
            cls = outs[f"cls_{s}"][0]
            cells, labels = np.nonzero(cls > self.min_confidence)
            if cells.size == 0:
                continue
            if cells.size > MAX_CANDIDATES:
                best = np.argpartition(-cls[cells, labels], MAX_CANDIDATES - 1)[:MAX_CANDIDATES]
                cells, labels = cells[best], labels[best]
            reg = outs[f"reg_{s}"][0][cells].reshape(-1, 4, REG_BINS)
            reg = np.exp(reg - reg.max(-1, keepdims=True))
            reg /= reg.sum(-1, keepdims=True)
            dist = (reg * np.arange(REG_BINS, dtype=np.float32)).sum(-1) * s  # l, t, r, b
            cx, cy = self._centers[s][0][cells], self._centers[s][1][cells]
            all_boxes.append(
                np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
            )
            all_scores.append(cls[cells, labels])
            all_labels.append(labels)
        if not all_boxes:
            return []
        boxes = np.clip(np.concatenate(all_boxes) / INPUT_SIZE, 0.0, 1.0)
        scores = np.concatenate(all_scores)
        labels = np.concatenate(all_labels)
        # class-wise NMS via the coordinate-offset trick
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
            res = self._session.run(names, {"input": self.preprocess(img)})
            out.append(self._decode(dict(zip(names, res, strict=True))))
        return out
