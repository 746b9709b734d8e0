"""Output layouts of the ONNX models people export, and their decoding to boxes or classes.

* ``classification``: one output ``B x C`` (or ``B x C x 1 x 1``): logits or probabilities;
* ``yolov5``: one output ``B x N x (5 + C)``: ``cx, cy, w, h, objectness, C class scores``;
* ``yolov8`` (also YOLO11): one output ``B x (4 + C) x N`` (or its transpose ``B x N x (4 + C)``):
  ``cx, cy, w, h, C class scores``, no objectness;
* ``boxes_scores_labels`` (SSD, torchvision, TF object-detection exports): a ``N x 4`` boxes
  output, ``N`` scores and ``N`` integer labels (or ``N x C`` per-class scores and no labels),
  optionally a detection count;
* ``nanodet``: ``cls_<stride>`` (cells x C) and ``reg_<stride>`` (cells x 4 x bins) heads, as in
  the bundled NanoDet-m;
* ``yolov8_seg`` (instance segmentation, YOLOv8-seg / YOLO11-seg): ``B x (4 + C + M) x N``
  detections with M mask coefficients, and ``B x M x h x w`` mask prototypes; an instance's mask
  is ``sigmoid(coefficients . prototypes)`` inside its box, returned as a polygon.

Every decoder takes one image's outputs (batch dimension removed) and returns candidate boxes
``x1, y1, x2, y2`` in model-input pixels, scores and class indices; ``OutputInvalid`` says what
in the outputs makes no sense (NaN, wrong shape, scores outside 0..1, absurd boxes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .base import Polygon

LAYOUTS = ("classification", "yolov5", "yolov8", "boxes_scores_labels", "nanodet", "yolov8_seg")
MAX_POLYGON_POINTS = 200
DETECTION_LAYOUTS = LAYOUTS[1:]
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "cxcywh")
SCORE_SLACK = 1e-3  # scores a hair outside 0..1 are rounding, not nonsense
# A box may reach past the input a little (objects cut by the border); beyond this many input
# sides it is nonsense.
BOX_REACH = 1.0


class OutputInvalid(ValueError):
    """The model's outputs make no sense for its layout (message says which and why)."""


class LayoutUnknown(ValueError):
    """The outputs fit no supported layout."""


class CountMismatch(ValueError):
    """The outputs fit a layout, but for another number of classes than the concepts given."""


@dataclass(frozen=True)
class Candidates:
    boxes: np.ndarray  # N x 4, x1 y1 x2 y2, model-input pixels
    scores: np.ndarray  # N
    labels: np.ndarray  # N, class indices
    coefficients: np.ndarray | None = None  # N x M mask coefficients (yolov8_seg)


def empty() -> Candidates:
    return Candidates(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


def check_finite(name: str, value: np.ndarray) -> None:
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = int((~np.isfinite(value)).sum())
        raise OutputInvalid(f"output {name!r} holds {bad} NaN or infinite value(s)")


def _squeeze_batch(value: np.ndarray, rank: int) -> np.ndarray:
    """One image's output of ``rank`` dimensions, leading size-1 dimensions dropped."""
    while value.ndim > rank and value.shape[0] == 1:
        value = value[0]
    return value


def _check_scores(name: str, scores: np.ndarray) -> None:
    if scores.size and (scores.min() < -SCORE_SLACK or scores.max() > 1 + SCORE_SLACK):
        raise OutputInvalid(
            f"output {name!r} has scores from {float(scores.min()):.4g} to {float(scores.max()):.4g}; "
            "a detector's scores must be probabilities in 0..1"
        )


def check_boxes(boxes: np.ndarray, width: int, height: int) -> None:
    """Boxes (input pixels) must have x1 <= x2, y1 <= y2 and lie near the input."""
    if not boxes.size:
        return
    if (boxes[:, 2] < boxes[:, 0] - 1e-3).any() or (boxes[:, 3] < boxes[:, 1] - 1e-3).any():
        raise OutputInvalid("boxes have a negative width or height (wrong box format?)")
    side = float(max(width, height))
    low, high = -BOX_REACH * side, (1 + BOX_REACH) * side
    if boxes.min() < low or boxes.max() > high:
        raise OutputInvalid(
            f"boxes reach from {float(boxes.min()):.4g} to {float(boxes.max()):.4g} pixels, far outside "
            f"the {width}x{height} input"
        )


def to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    b = boxes.astype(np.float64)
    if box_format == "yxyx":
        return b[:, [1, 0, 3, 2]]
    if box_format == "xywh":
        return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
    if box_format == "cxcywh":
        half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
        return np.stack([b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h], 1)
    return b


# --- classification --------------------------------------------------------------------------


def class_scores(outputs: Sequence[np.ndarray], n_classes: int) -> np.ndarray:
    """``B x C`` class scores of a classification model's single output."""
    if len(outputs) != 1:
        raise LayoutUnknown(f"a classifier has one output, this model has {len(outputs)}")
    value = outputs[0]
    while value.ndim > 2 and value.shape[-1] == 1:
        value = value[..., 0]
    if value.ndim == 1:
        value = value[None]
    if value.ndim != 2:
        raise LayoutUnknown(f"a classifier's output is batch x classes, not {tuple(outputs[0].shape)}")
    if value.shape[1] != n_classes:
        raise CountMismatch(f"the model outputs {value.shape[1]} classes, {n_classes} concepts given")
    return value


def are_probabilities(scores: np.ndarray) -> bool:
    """Rows already in 0..1 that sum to 1 (a softmax inside the model): no softmax again."""
    return bool(
        scores.size
        and scores.min() >= 0.0
        and scores.max() <= 1.0
        and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3)
    )


# --- YOLO ------------------------------------------------------------------------------------


def yolo_orientation(shape: Sequence[int], n_classes: int, layout: str) -> tuple[str, bool]:
    """(layout, transposed) for one ``B x a x b`` YOLO output; ``transposed`` means attributes
    along ``a`` (YOLOv8's ``4 + C`` rows x N anchors)."""
    if len(shape) != 3:
        raise LayoutUnknown(f"a YOLO output is batch x rows x columns, not {tuple(shape)}")
    a, b = int(shape[1]), int(shape[2])
    if a < b:  # few attributes by many anchors: YOLOv8 / YOLO11 as exported
        if layout == "yolov5":
            raise LayoutUnknown(f"output {tuple(shape)} is attributes x anchors: that is yolov8, not yolov5")
        if a - 4 != n_classes:
            raise CountMismatch(
                f"output {tuple(shape)} is yolov8 with {a - 4} classes (4 + C rows), "
                f"{n_classes} concepts given"
            )
        return "yolov8", True
    if layout in ("auto", "yolov5") and b == 5 + n_classes:
        return "yolov5", False
    if layout in ("auto", "yolov8") and b == 4 + n_classes:
        return "yolov8", False
    wanted = {"yolov5": "5 + C", "yolov8": "4 + C"}.get(layout, "5 + C (yolov5) or 4 + C (yolov8)")
    raise CountMismatch(
        f"output {tuple(shape)} has rows of {b} values; {wanted} with C = {n_classes} concepts"
    )


def decode_yolo(
    value: np.ndarray, layout: str, transposed: bool, n_classes: int, min_confidence: float, limit: int
) -> Candidates:
    rows = _squeeze_batch(value, 2)
    if transposed:
        rows = rows.T
    width = 5 + n_classes if layout == "yolov5" else 4 + n_classes
    if rows.ndim != 2 or rows.shape[1] != width:
        raise OutputInvalid(f"{layout} output rows have shape {tuple(rows.shape)}, expected N x {width}")
    if layout == "yolov5":
        objectness = rows[:, 4]
        _check_scores("objectness", objectness)
        classes = rows[:, 5:]
        _check_scores("class scores", classes)
        all_scores = classes * objectness[:, None]
    else:
        all_scores = rows[:, 4:]
        _check_scores("class scores", all_scores)
    labels = all_scores.argmax(axis=1)
    scores = all_scores[np.arange(len(rows)), labels]
    keep = np.nonzero(scores >= min_confidence)[0]
    if keep.size > limit:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:limit]]
    boxes = to_xyxy(rows[keep, :4], "cxcywh")
    return Candidates(boxes, scores[keep].astype(np.float64), labels[keep])


# --- boxes + scores + labels -----------------------------------------------------------------


@dataclass(frozen=True)
class BslRoles:
    """Which output is which, by index."""

    boxes: int
    scores: int
    labels: int | None
    count: int | None


def _named(names: Sequence[str], words: Sequence[str], among: Sequence[int]) -> int | None:
    for i in among:
        if any(w in names[i].lower() for w in words):
            return i
    return None


def bsl_roles(names: Sequence[str], shapes: Sequence[Sequence[int]], int_outputs: Sequence[bool]) -> BslRoles:
    """Find boxes (last dimension 4), scores, labels (integers, or named so) and an optional
    detection count among 2 to 4 outputs, by name first and shape second."""
    if not 2 <= len(names) <= 4:
        raise LayoutUnknown(f"boxes + scores + labels needs 2 to 4 outputs, this model has {len(names)}")
    idx = list(range(len(names)))
    boxes_of = [i for i in idx if len(shapes[i]) >= 2 and shapes[i][-1] == 4 and not int_outputs[i]]
    if not boxes_of:
        raise LayoutUnknown("no output holds boxes (a last dimension of 4)")
    boxes = _named(names, ("box",), boxes_of)
    boxes = boxes_of[0] if boxes is None else boxes
    rest = [i for i in idx if i != boxes]
    count = _named(names, ("num",), rest)
    if count is None:
        singles = [i for i in rest if int(np.prod(shapes[i] or [1])) == 1]
        count = singles[0] if singles and len(rest) == 3 else None
    rest = [i for i in rest if i != count]
    labels = _named(names, ("label", "class"), rest)
    if labels is None:
        ints = [i for i in rest if int_outputs[i]]
        labels = ints[0] if ints else None
    rest = [i for i in rest if i != labels]
    scores = _named(names, ("score", "conf", "prob"), rest)
    if scores is None and rest:
        scores = rest[0]
    if scores is None or len([i for i in rest if i != scores]) > 0:
        raise LayoutUnknown(
            "cannot tell boxes, scores and labels apart among the outputs " + ", ".join(names)
        )
    return BslRoles(boxes, scores, labels, count)


def decode_bsl(
    outputs: Sequence[np.ndarray],
    roles: BslRoles,
    n_classes: int,
    *,
    box_format: str,
    normalized: bool | None,
    label_offset: int,
    width: int,
    height: int,
    min_confidence: float,
) -> Candidates:
    boxes = _squeeze_batch(outputs[roles.boxes], 2)
    scores = _squeeze_batch(outputs[roles.scores], 2 if roles.labels is None else 1)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise OutputInvalid(f"boxes output has shape {tuple(outputs[roles.boxes].shape)}, expected N x 4")
    if roles.labels is None:  # per-class scores: N x C
        if scores.ndim != 2 or scores.shape[1] != n_classes:
            raise CountMismatch(
                f"scores output {tuple(outputs[roles.scores].shape)} should be N x {n_classes} "
                "(one per concept)"
            )
        labels = scores.argmax(axis=1)
        scores = scores[np.arange(len(scores)), labels]
    else:
        raw_labels = _squeeze_batch(outputs[roles.labels], 1)
        if raw_labels.ndim != 1 or raw_labels.shape[0] != boxes.shape[0]:
            raise OutputInvalid(
                f"labels output has shape {tuple(raw_labels.shape)} for {boxes.shape[0]} boxes"
            )
        labels = np.rint(raw_labels).astype(np.int64) - label_offset
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise OutputInvalid(f"scores output has shape {tuple(scores.shape)} for {boxes.shape[0]} boxes")
    n = boxes.shape[0]
    if roles.count is not None:
        n = min(n, max(0, int(np.asarray(outputs[roles.count]).reshape(-1)[0])))
    boxes, scores, labels = boxes[:n], scores[:n].astype(np.float64), labels[:n]
    _check_scores("scores", scores)
    keep = scores >= min_confidence
    boxes, scores, labels = to_xyxy(boxes[keep], box_format), scores[keep], labels[keep]
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise OutputInvalid(
            f"labels run from {int(labels.min())} to {int(labels.max())}, outside the {n_classes} concepts "
            "(set config.label_offset when label 0 is the background)"
        )
    if normalized is None:  # decided from the values: everything within 0..1 is normalised
        normalized = bool(boxes.size) and float(np.abs(boxes).max()) <= 1.0 + 1e-6
    if normalized:
        boxes = boxes * np.array([width, height, width, height], dtype=np.float64)
    return Candidates(boxes, scores, labels)


def nanodet_strides(names: Sequence[str]) -> list[int]:
    """The strides of ``cls_<s>`` / ``reg_<s>`` output pairs (empty when not that layout)."""
    cls = {n[4:] for n in names if n.startswith("cls_")}
    reg = {n[4:] for n in names if n.startswith("reg_")}
    if not cls or cls != reg or len(names) != 2 * len(cls) or not all(s.isdigit() for s in cls):
        return []
    return sorted(int(s) for s in cls)


def by_name(names: Sequence[str], values: Sequence[np.ndarray]) -> Mapping[str, np.ndarray]:
    return dict(zip(names, values, strict=True))


# --- YOLOv8 instance segmentation ------------------------------------------------------------


def seg_roles(shapes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(detections, prototypes) output indices: the rank-4 output holds the prototypes."""
    if len(shapes) != 2:
        raise LayoutUnknown(f"yolov8_seg has 2 outputs (detections, mask prototypes), not {len(shapes)}")
    ranks = [len(s) for s in shapes]
    if sorted(ranks) != [3, 4]:
        raise LayoutUnknown(
            f"yolov8_seg wants a 3-d detections and a 4-d prototypes output, not ranks {ranks}"
        )
    protos = ranks.index(4)
    return 1 - protos, protos


def decode_yolo_seg(
    detections: np.ndarray, protos: np.ndarray, n_classes: int, min_confidence: float, limit: int
) -> Candidates:
    rows = _squeeze_batch(detections, 2)
    masks = _squeeze_batch(protos, 3)
    if masks.ndim != 3:
        raise OutputInvalid(f"mask prototypes have shape {tuple(protos.shape)}, expected M x h x w")
    m = masks.shape[0]
    if rows.ndim != 2:
        raise OutputInvalid(f"detections have shape {tuple(detections.shape)}")
    if rows.shape[0] == 4 + n_classes + m:
        rows = rows.T
    elif rows.shape[1] != 4 + n_classes + m:
        wanted = 4 + n_classes + m
        raise CountMismatch(
            f"detections {tuple(detections.shape)} should have {wanted} rows (4 + C + {m} mask coefficients)"
        )
    all_scores = rows[:, 4 : 4 + n_classes]
    _check_scores("class scores", all_scores)
    labels = all_scores.argmax(axis=1)
    scores = all_scores[np.arange(len(rows)), labels]
    keep = np.nonzero(scores >= min_confidence)[0]
    if keep.size > limit:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:limit]]
    boxes = to_xyxy(rows[keep, :4], "cxcywh")
    coefficients = rows[keep, 4 + n_classes :].astype(np.float64)
    return Candidates(boxes, scores[keep].astype(np.float64), labels[keep], coefficients)


def mask_polygon(
    coefficients: np.ndarray, protos: np.ndarray, box: np.ndarray, width: int, height: int
) -> np.ndarray | None:
    """The instance's outline as ``K x 2`` input-pixel (x, y) points, or None when its mask is
    empty: the mask at prototype resolution, cut to its box, its largest outline simplified."""
    import cv2

    masks = _squeeze_batch(protos, 3)
    m, mh, mw = masks.shape
    logits = coefficients @ masks.reshape(m, -1).astype(np.float64)
    mask = (logits.reshape(mh, mw) > 0.0).astype(np.uint8)  # sigmoid > 0.5
    sx, sy = mw / width, mh / height
    x1, y1 = max(0, int(np.floor(box[0] * sx))), max(0, int(np.floor(box[1] * sy)))
    x2, y2 = min(mw, int(np.ceil(box[2] * sx))), min(mh, int(np.ceil(box[3] * sy)))
    cut = np.zeros_like(mask)
    cut[y1:y2, x1:x2] = mask[y1:y2, x1:x2]
    contours, _ = cv2.findContours(cut, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    outline = cv2.approxPolyDP(outline, 0.005 * cv2.arcLength(outline, True), True)
    points = outline.reshape(-1, 2).astype(np.float64)[:MAX_POLYGON_POINTS]
    if len(points) < 3:
        return None
    # pixel centres at prototype resolution -> input pixels
    return np.stack([(points[:, 0] + 0.5) / sx, (points[:, 1] + 0.5) / sy], 1)


def image_polygon(
    points: np.ndarray, pad: tuple[float, float], scale: tuple[float, float], size: tuple[int, int]
) -> Polygon:
    """``mask_polygon``'s input-pixel (x, y) points as a polygon normalised to the image: the
    resize or letterbox undone (``pad``, ``scale``: x, y), divided by the image ``size`` (w, h)."""
    xs = np.clip((points[:, 0] - pad[0]) / scale[0] / size[0], 0.0, 1.0)
    ys = np.clip((points[:, 1] - pad[1]) / scale[1] / size[1], 0.0, 1.0)
    return Polygon(tuple((float(r), float(c)) for r, c in zip(ys, xs, strict=True)))
