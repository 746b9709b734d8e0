"""Declared pre- and post-processing for a model the built-in adapters do not know:
resize or letterbox, mean/std, RGB/BGR, NCHW/NHWC in; classification scores, boxes + scores +
labels, an ultralytics YOLO output, or a YOLOv8-seg pair (detections with mask coefficients,
mask prototypes) out, the YOLO ones decoded as for uploaded ONNX files (``onnx_layouts``).
Boxes and polygons come back normalised to the original image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..base import Box, Prediction, softmax
from ..config import AdapterConfig
from ..object_detector import nms

Triple = tuple[float, float, float]


class GenericSpec(AdapterConfig):
    """How to turn an RGB image into the input tensor and the outputs into predictions."""

    input_size: tuple[int, int] = Field((224, 224), description="[width, height] of the input")
    resize: Literal["stretch", "letterbox"] = Field("stretch", description="letterbox keeps the aspect")
    pad_value: int = Field(114, ge=0, le=255, description="letterbox border colour")
    mean: Triple = Field((0.0, 0.0, 0.0), description="subtracted per channel (0..255 scale)")
    std: Triple = Field((255.0, 255.0, 255.0), description="divided per channel, in channel_order")
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    output: Literal["probabilities", "logits", "boxes_scores_labels", "yolov5", "yolov8", "yolov8_seg"] = (
        Field(
            "logits",
            description=(
                "classification scores (softmax applied to logits), or detections: three outputs "
                "(boxes, scores, labels), or one ultralytics YOLO output (yolov5: N x (5 + C) with "
                "objectness; yolov8, also YOLO11: (4 + C) x N or N x (4 + C); cx, cy, w, h in input "
                "pixels), or instance segmentation: yolov8_seg, also YOLO11-seg, two outputs "
                "((4 + C + M) x N detections with M mask coefficients, then M x h x w prototypes)"
            ),
        )
    )
    box_format: Literal["xyxy", "xywh"] = Field("xyxy", description="detections: corners or corner+size")
    boxes_normalized: bool = Field(False, description="detections: boxes in 0..1 of the input, else pixels")

    @model_validator(mode="after")
    def _sizes(self) -> GenericSpec:
        if not all(16 <= s <= 4096 for s in self.input_size):
            raise ValueError("input_size: each side must be 16..4096")
        if any(s <= 0 for s in self.std):
            raise ValueError("std: every value must be positive")
        return self


@dataclass(frozen=True)
class Fit:
    """Where the image landed in the input: ``scale`` and padding, to map boxes back."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def fit(img: np.ndarray, spec: GenericSpec) -> tuple[np.ndarray, Fit]:
    import cv2

    w, h = spec.input_size
    where = placement(img.shape[1], img.shape[0], spec)
    if spec.resize == "stretch":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR), where
    nw, nh = max(1, round(where.width * where.scale_x)), max(1, round(where.height * where.scale_y))
    canvas = np.full((h, w, 3), spec.pad_value, np.uint8)
    px, py = int(where.pad_x), int(where.pad_y)
    canvas[py : py + nh, px : px + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, where


def placement(iw: int, ih: int, spec: GenericSpec) -> Fit:
    """Where ``fit`` puts an ``iw x ih`` image in the input (also what a server that
    preprocesses encoded images is declared to do, to map its boxes back)."""
    w, h = spec.input_size
    if spec.resize == "stretch":
        return Fit(w / iw, h / ih, 0, 0, iw, ih)
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    return Fit(scale, scale, (w - nw) // 2, (h - nh) // 2, iw, ih)


def to_tensor(img: np.ndarray, spec: GenericSpec) -> tuple[np.ndarray, Fit]:
    """One image as a float32 ``C x H x W`` or ``H x W x C`` array (no batch axis)."""
    x, where = fit(img, spec)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x.astype(np.float32) - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x), where


def classify(
    scores: np.ndarray, spec: GenericSpec, labels: list[str], top_k: int, min_confidence: float
) -> list[Prediction]:
    """One image's class scores (any shape with one non-unit axis) as its best predictions."""
    row = scores.astype(np.float64).reshape(-1)
    if spec.output == "logits":
        row = softmax(row)
    out = []
    for i in np.argsort(-row)[:top_k]:
        conf = float(row[i])
        if conf < min_confidence:
            break
        out.append(Prediction(concept=label(labels, int(i)), confidence=min(1.0, max(0.0, conf))))
    return out


def detect(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    where: Fit,
    spec: GenericSpec,
    labels: list[str],
    *,
    min_confidence: float,
    iou_threshold: float,
    max_detections: int,
) -> list[Prediction]:
    """One image's ``N x 4`` boxes, ``N`` scores and ``N`` class indices as predictions."""
    b = boxes.reshape(-1, 4).astype(np.float64)
    s = scores.reshape(-1).astype(np.float64)
    c = classes.reshape(-1).astype(np.int64)
    if not (len(b) == len(s) == len(c)):
        raise ValueError(f"boxes, scores and labels differ in length: {len(b)}, {len(s)}, {len(c)}")
    keep = s >= min_confidence
    b, s, c = b[keep], s[keep], c[keep]
    if spec.box_format == "xywh":
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    if spec.boxes_normalized:
        b = b * np.array(spec.input_size * 2, np.float64)
    # undo the resize or letterbox: input pixels -> original pixels -> 0..1
    b = (b - [where.pad_x, where.pad_y, where.pad_x, where.pad_y]) / [
        where.scale_x,
        where.scale_y,
        where.scale_x,
        where.scale_y,
    ]
    b = np.clip(b / [where.width, where.height, where.width, where.height], 0.0, 1.0)
    chosen = nms(b + c[:, None] * 2.0, s, iou_threshold, max_detections) if len(b) else []
    return [
        Prediction(
            concept=label(labels, int(c[i])),
            confidence=float(min(1.0, s[i])),
            region=Box(top=float(b[i, 1]), left=float(b[i, 0]), bottom=float(b[i, 3]), right=float(b[i, 2])),
        )
        for i in chosen
    ]


DETECTIONS = ("boxes_scores_labels", "yolov5", "yolov8")
YOLO = ("yolov5", "yolov8")
SEGMENTS = ("yolov8_seg",)


def outputs_needed(spec: GenericSpec) -> int:
    """How many output tensors the declared layout reads."""
    return {"boxes_scores_labels": 3, "yolov8_seg": 2}.get(spec.output, 1)


def yolo_candidates(
    value: np.ndarray, spec: GenericSpec, labels: list[str], min_confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, GenericSpec]:
    """One image's YOLO output (``1 x a x b`` or ``a x b``) as ``detect``'s boxes, scores and
    class indices, decoded as for an uploaded model (``onnx_layouts``), with the spec ``detect``
    reads them by (corners in input pixels). Without labels the class count is read from the
    shape; a ``ValueError`` names an output that is not the declared layout."""
    from ..onnx_layouts import decode_yolo, yolo_orientation

    rows = value if value.ndim == 3 else value[None]
    a, b = int(rows.shape[1]), int(rows.shape[2])
    if labels:
        n_classes = len(labels)
    else:  # yolov5: N x (5 + C); yolov8: (4 + C) x N, or N x (4 + C)
        n_classes = b - 5 if spec.output == "yolov5" else min(a, b) - 4
    if n_classes < 1:
        raise ValueError(f"a {spec.output} output of shape {tuple(value.shape)} has no class scores")
    layout, transposed = yolo_orientation(rows.shape, n_classes, spec.output)
    found = decode_yolo(rows, layout, transposed, n_classes, min_confidence, limit=30_000)
    pixels = spec.model_copy(update={"box_format": "xyxy", "boxes_normalized": False})
    return found.boxes, found.scores, found.labels, pixels


def segment(
    detections: np.ndarray,
    protos: np.ndarray,
    where: Fit,
    spec: GenericSpec,
    labels: list[str],
    *,
    min_confidence: float,
    iou_threshold: float,
    max_detections: int,
) -> list[Prediction]:
    """One image's YOLOv8-seg outputs as polygon predictions, decoded as for an uploaded model
    (``onnx_layouts``: candidates, class-wise NMS on the image's boxes, each kept instance's mask
    outline). Without labels the class count is read from the shapes; a ``ValueError`` names
    outputs that are not the layout."""
    from ..onnx_layouts import decode_yolo_seg, image_polygon, mask_polygon

    if protos.ndim < 3:
        raise ValueError(f"mask prototypes of shape {tuple(protos.shape)}: expected M x h x w")
    m = int(protos.shape[-3])
    rows = detections if detections.ndim == 2 else detections.reshape(detections.shape[-2:])
    n_classes = len(labels) if labels else min(rows.shape) - 4 - m
    if n_classes < 1:
        raise ValueError(f"detections of shape {tuple(detections.shape)} have no class scores")
    found = decode_yolo_seg(rows, protos, n_classes, min_confidence, limit=30_000)
    if not found.scores.size or found.coefficients is None:
        return []
    w_in, h_in = spec.input_size
    shift = np.array([where.pad_x, where.pad_y, where.pad_x, where.pad_y])
    scale = np.array([where.scale_x, where.scale_y, where.scale_x, where.scale_y])
    size = np.array([where.width, where.height, where.width, where.height], np.float64)
    boxes = np.clip((found.boxes - shift) / scale / size, 0.0, 1.0)
    classes = found.labels.astype(np.int64)
    sides = (where.width, where.height)
    out = []
    for i in nms(boxes + classes[:, None] * 2.0, found.scores, iou_threshold, max_detections):
        points = mask_polygon(found.coefficients[i], protos, found.boxes[i], w_in, h_in)
        if points is None:
            continue
        region = image_polygon(points, (where.pad_x, where.pad_y), (where.scale_x, where.scale_y), sides)
        concept = label(labels, int(classes[i]))
        out.append(Prediction(concept=concept, confidence=float(min(1.0, found.scores[i])), region=region))
    return out


def label(labels: list[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)
