"""Fitting an image into a model's fixed input, and mapping boxes back to the image.

``letterbox`` keeps the aspect ratio (scale to fit, pad the rest evenly); ``stretch`` resizes
each side on its own. Both return a ``Fit`` that maps boxes found in the model's input
(pixels, ``x1, y1, x2, y2``) back to the image, normalised 0..1 and clipped, so a detector never
sees a squashed image and its boxes land where the object is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fit:
    """Where the image sits in the model input: ``input = image * scale + pad``."""

    image_width: int
    image_height: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """``N x 4`` input-pixel ``x1, y1, x2, y2`` -> normalised image ``x1, y1, x2, y2`` in 0..1."""
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, 0] = (boxes[:, 0] - self.pad_x) / self.scale_x / self.image_width
        out[:, 2] = (boxes[:, 2] - self.pad_x) / self.scale_x / self.image_width
        out[:, 1] = (boxes[:, 1] - self.pad_y) / self.scale_y / self.image_height
        out[:, 3] = (boxes[:, 3] - self.pad_y) / self.scale_y / self.image_height
        return np.clip(out, 0.0, 1.0)


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    interp = cv2.INTER_AREA if h >= height and w >= width else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(img, (width, height), interpolation=interp))


def stretch(img: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Fit]:
    h, w = img.shape[:2]
    return resize(img, width, height), Fit(w, h, width / w, height / h, 0.0, 0.0)


def letterbox(img: np.ndarray, width: int, height: int, pad_value: int = 114) -> tuple[np.ndarray, Fit]:
    """The image scaled to fit ``width x height`` with its aspect ratio, centred, the borders
    filled with ``pad_value`` (ultralytics uses 114)."""
    fit = letterbox_fit(img.shape[1], img.shape[0], width, height)
    new_w, new_h = round(fit.scale_x * fit.image_width), round(fit.scale_y * fit.image_height)
    left, top = int(fit.pad_x), int(fit.pad_y)
    canvas = np.full((height, width, img.shape[2]), pad_value, dtype=img.dtype)
    canvas[top : top + new_h, left : left + new_w] = resize(img, new_w, new_h)
    return canvas, fit


def letterbox_fit(w: int, h: int, width: int, height: int) -> Fit:
    """Where ``letterbox`` puts a ``w x h`` image in ``width x height`` (no pixels touched)."""
    scale = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return Fit(w, h, new_w / w, new_h / h, float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> list[int]:
    """Greedy NMS on ``[x1, y1, x2, y2]`` boxes; returns kept indices, best first (at most
    ``limit``: the first ``limit`` of the full result, found without computing the rest)."""
    order = np.argsort(-scores, kind="stable")
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


def classwise_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, limit: int
) -> list[int]:
    """NMS within each class (boxes of different classes never suppress each other): every
    class's boxes are shifted apart by more than the largest coordinate."""
    if boxes.size == 0:
        return []
    offset = float(np.abs(boxes).max()) * 2.0 + 1.0
    return nms(boxes + labels[:, None].astype(np.float64) * offset, scores, iou_threshold, limit)
