"""``onnx``: a model a user uploaded (an ``.onnx`` file), for image classification or detection.

The file lives in the blob store under its SHA-256; the stored config names it (``blob_key``),
lists the model's concept ids in output order (``labels``) and declares the pre-processing and
the output layout (``onnx_layouts``), all checked by ``app.models.upload`` when the file was
uploaded. Adapters are synchronous and cannot read the blob store themselves: the worker hands
the bytes over through ``model_files`` before it asks for the adapter (``app.tasks.run.predict``).

Pre-processing: fit the image into the input (``letterbox`` keeps the aspect ratio and pads,
``stretch`` does not), RGB or BGR, ``x * scale``, then ``(x - mean) / std`` per channel, NCHW or
NHWC. A ``uint8`` input gets the fitted pixels as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from . import model_files
from .base import AdapterInput, Box, ModelAdapter, ModelConcept, Prediction, check_image, softmax
from .config import AdapterConfig, OnnxConfig
from .errors import AdapterMismatch
from .imaging import Fit, letterbox, nms, stretch
from .object_detector import MAX_DETECTIONS, decode_gfl, grid_centers
from .onnx_layouts import (
    BslRoles,
    Candidates,
    OutputInvalid,
    are_probabilities,
    bsl_roles,
    check_finite,
    class_scores,
    decode_bsl,
    decode_yolo,
    decode_yolo_seg,
    image_polygon,
    mask_polygon,
    seg_roles,
)

MAX_LABELS = 10_000
MAX_SIDE = 4096
MAX_CANDIDATES = 10_000  # boxes over the threshold that enter NMS, per image

Channel = Annotated[float, Field(ge=-1e4, le=1e4)]
PositiveChannel = Annotated[float, Field(gt=0.0, le=1e4)]
Label = Annotated[str, Field(min_length=1, max_length=200)]


class OnnxUserConfig(OnnxConfig):
    """What an uploader may declare; every key has a default (read from the model where it
    says, e.g. the input size of a static input shape)."""

    layout: Literal[
        "auto", "classification", "yolov5", "yolov8", "boxes_scores_labels", "nanodet", "yolov8_seg"
    ] = Field("auto", description="output layout; auto-detected from the outputs when unambiguous")
    input_width: int | None = Field(None, ge=8, le=MAX_SIDE, description="default: the model's static input")
    input_height: int | None = Field(None, ge=8, le=MAX_SIDE, description="default: the model's static input")
    resize: Literal["letterbox", "stretch"] | None = Field(
        None, description="keep the aspect ratio and pad (detectors' default) or stretch (classifiers')"
    )
    pad_value: int = Field(114, ge=0, le=255, description="letterbox border, in pixels")
    channel_order: Literal["RGB", "BGR"] = "RGB"
    tensor_layout: Literal["auto", "NCHW", "NHWC"] = Field(
        "auto", description="auto: where the 3 channels are"
    )
    scale: float = Field(1 / 255, gt=0.0, le=1.0, description="pixels are multiplied by this first")
    mean: list[Channel] = Field([0.0, 0.0, 0.0], min_length=3, max_length=3, description="then minus mean")
    std: list[PositiveChannel] = Field([1.0, 1.0, 1.0], min_length=3, max_length=3, description="then / std")
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="score threshold; default 0.25 for detectors, 0 for classifiers"
    )
    iou_threshold: float = Field(0.45, gt=0.0, lt=1.0, description="NMS overlap that suppresses")
    max_detections: int = Field(100, ge=1, le=MAX_DETECTIONS, description="boxes kept per image")
    top_k: int = Field(5, ge=1, le=MAX_LABELS, description="classes kept per image (classifiers)")
    softmax: Literal["auto", "always", "never"] = Field(
        "auto", description="classifiers: auto applies it unless the outputs already sum to 1"
    )
    box_format: Literal["xyxy", "yxyx", "xywh", "cxcywh"] = Field(
        "xyxy", description="boxes_scores_labels: coordinate order"
    )
    box_units: Literal["auto", "pixels", "normalized"] = Field(
        "auto", description="boxes_scores_labels: input pixels or 0..1 (auto: from the values)"
    )
    label_offset: int = Field(0, ge=0, le=10, description="subtracted from labels (1 when 0 is background)")


USER_KEYS = frozenset(OnnxUserConfig.model_fields)


class OnnxModelConfig(OnnxUserConfig):
    """The stored config: the user's keys, resolved, plus what the upload found."""

    blob_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="set by the upload: the file's SHA-256")
    labels: list[Label] = Field(
        min_length=1, max_length=MAX_LABELS, description="set by the upload: concept ids in output order"
    )


def fit_image(img: np.ndarray, cfg: OnnxUserConfig, width: int, height: int) -> tuple[np.ndarray, Fit]:
    if cfg.resize == "stretch" or (cfg.resize is None and cfg.layout == "classification"):
        return stretch(img, width, height)
    return letterbox(img, width, height, cfg.pad_value)


def to_tensor(fitted: np.ndarray, cfg: OnnxUserConfig, nhwc: bool, dtype: str) -> np.ndarray:
    x = fitted[..., ::-1] if cfg.channel_order == "BGR" else fitted
    if dtype != "tensor(uint8)":
        x = x.astype(np.float32)
        if cfg.scale != 1.0:
            x = x * np.float32(cfg.scale)
        x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x if nhwc else x.transpose(2, 0, 1))


class OnnxModelAdapter(ModelAdapter):
    """A user's ONNX classifier or detector (config: ``OnnxModelConfig``; see the module doc)."""

    name = "onnx"
    kind = "DETECTOR"
    kinds = frozenset({"CLASSIFIER", "DETECTOR", "SEGMENTER"})
    config_schema = OnnxModelConfig
    options: OnnxModelConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self._session: Any = None
        self._input: Any = None
        self._nhwc = False
        self._size = (0, 0)  # width, height
        self._batch_one = True
        self._names: list[str] = []
        self._roles: BslRoles | None = None
        self._seg = (0, 1)  # yolov8_seg: (detections, prototypes) output indices

    @classmethod
    def check_model(cls, kind: str, options: AdapterConfig, zero_shot: bool | None) -> None:
        super().check_model(kind, options, zero_shot)
        assert isinstance(options, OnnxModelConfig)
        wanted = {"classification": "CLASSIFIER", "yolov8_seg": "SEGMENTER"}.get(options.layout, "DETECTOR")
        if options.layout == "auto" or wanted != kind:
            raise AdapterMismatch(
                f"a {kind} model cannot have the output layout {options.layout!r}", field="config.layout"
            )

    def concepts(self) -> list[ModelConcept]:
        return [ModelConcept(id=label, name=label) for label in self.options.labels]

    def _load(self) -> None:
        self.attach(self.make_session(model_files.get(self.options.blob_key)))

    def attach(self, session: Any) -> None:
        """Use an already created session (the upload check creates one from the bytes)."""
        cfg = self.options
        inp = session.get_inputs()[0]
        shape = list(inp.shape)
        self._nhwc = cfg.tensor_layout == "NHWC" or (cfg.tensor_layout == "auto" and nhwc_shape(shape))
        spatial = shape[1:3] if self._nhwc else shape[2:4]
        self._size = (
            cfg.input_width or static(spatial[1]) or 640,
            cfg.input_height or static(spatial[0]) or 640,
        )
        self._batch_one = static(shape[0]) == 1
        self._input = inp
        self._names = [o.name for o in session.get_outputs()]
        if cfg.layout == "yolov8_seg":
            self._seg = seg_roles([known(o.shape) for o in session.get_outputs()])
        if cfg.layout == "boxes_scores_labels":
            outs = session.get_outputs()
            self._roles = bsl_roles(
                self._names, [known(o.shape) for o in outs], [is_int(o.type) for o in outs]
            )
        self._session = session

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input."""
        return self._size

    @property
    def roles(self) -> BslRoles | None:
        """Which output is boxes, scores, labels (``boxes_scores_labels`` only)."""
        return self._roles

    def run(self, images: Sequence[np.ndarray]) -> tuple[list[list[np.ndarray]], list[Fit]]:
        """Raw outputs per image (batch dimension kept, size 1) and where each image sat."""
        width, height = self._size
        fitted = [fit_image(img, self.options, width, height) for img in images]
        tensors = [to_tensor(x, self.options, self._nhwc, self._input.type) for x, _ in fitted]
        fits = [f for _, f in fitted]
        if self._batch_one:
            per_image = [self._session.run(self._names, {self._input.name: t[None]}) for t in tensors]
        else:
            res = self._session.run(self._names, {self._input.name: np.stack(tensors)})
            per_image = [[np.asarray(r)[k : k + 1] for r in res] for k in range(len(tensors))]
        return [[np.asarray(v) for v in outs] for outs in per_image], fits

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        if not batch:
            return []
        images = [check_image(item, self.name) for item in batch]
        self.ensure_loaded()
        outputs, fits = self.run(images)
        return [self.decode(outs, fit) for outs, fit in zip(outputs, fits, strict=True)]

    # ---------------------------------------------------------------- decoding
    def decode(self, outs: Sequence[np.ndarray], fit: Fit) -> list[Prediction]:
        for name, value in zip(self._names, outs, strict=True):
            check_finite(name, value)
        if self.options.layout == "classification":
            return self._classes(outs)
        if self.options.layout == "yolov8_seg":
            return self._polygons(outs, fit)
        return self._boxes(self.candidates(outs), fit)

    @property
    def min_confidence(self) -> float:
        given = self.options.min_confidence
        return given if given is not None else (0.0 if self.options.layout == "classification" else 0.25)

    def _classes(self, outs: Sequence[np.ndarray]) -> list[Prediction]:
        cfg = self.options
        scores = class_scores(outs, len(cfg.labels)).astype(np.float64)
        row = scores[0]
        if cfg.softmax == "always" or (cfg.softmax == "auto" and not are_probabilities(scores)):
            row = softmax(scores, axis=1)[0]
        preds = []
        for i in np.argsort(-row)[: max(1, min(cfg.top_k, row.shape[0]))]:
            confidence = float(row[i])
            if confidence < self.min_confidence:
                break
            preds.append(Prediction(concept=cfg.labels[int(i)], confidence=confidence))
        return preds

    def candidates(self, outs: Sequence[np.ndarray]) -> Candidates:
        cfg = self.options
        width, height = self._size
        n_classes = len(cfg.labels)
        if cfg.layout == "yolov8_seg":
            detections, protos = outs[self._seg[0]], outs[self._seg[1]]
            return decode_yolo_seg(detections, protos, n_classes, self.min_confidence, MAX_CANDIDATES)
        if cfg.layout in ("yolov5", "yolov8"):
            value = outs[0]
            transposed = value.ndim == 3 and value.shape[1] < value.shape[2]
            return decode_yolo(value, cfg.layout, transposed, n_classes, self.min_confidence, MAX_CANDIDATES)
        if cfg.layout == "nanodet":
            named = dict(zip(self._names, outs, strict=True))
            for key, value in named.items():
                if key.startswith("cls_") and value.size and (value.min() < -1e-3 or value.max() > 1 + 1e-3):
                    raise OutputInvalid(f"output {key!r} has scores outside 0..1")
            strides = sorted(int(n[4:]) for n in self._names if n.startswith("cls_"))
            bins = named[f"reg_{strides[0]}"].shape[-1] // 4
            boxes, scores, labels = decode_gfl(
                named, grid_centers(width, strides), self.min_confidence, bins=bins
            )
            return Candidates(boxes.astype(np.float64), scores.astype(np.float64), labels)
        assert self._roles is not None
        return decode_bsl(
            outs,
            self._roles,
            n_classes,
            box_format=cfg.box_format,
            normalized=None if cfg.box_units == "auto" else cfg.box_units == "normalized",
            label_offset=cfg.label_offset,
            width=width,
            height=height,
            min_confidence=self.min_confidence,
        )

    def _kept(self, found: Candidates, fit: Fit) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Normalised image boxes, class indices and the indices class-wise NMS keeps."""
        boxes = fit.to_image(found.boxes)
        labels = found.labels.astype(np.int64)
        # class-wise NMS on normalised boxes: an offset of 2 keeps classes apart
        keep = nms(
            boxes + labels[:, None] * 2.0,
            found.scores,
            self.options.iou_threshold,
            self.options.max_detections,
        )
        return boxes, labels, keep

    def _polygons(self, outs: Sequence[np.ndarray], fit: Fit) -> list[Prediction]:
        found = self.candidates(outs)
        if not found.scores.size or found.coefficients is None:
            return []
        _, labels, keep = self._kept(found, fit)
        width, height = self._size
        out = []
        for i in keep:
            points = mask_polygon(found.coefficients[i], outs[self._seg[1]], found.boxes[i], width, height)
            if points is None:
                continue
            pad, scale = (fit.pad_x, fit.pad_y), (fit.scale_x, fit.scale_y)
            region = image_polygon(points, pad, scale, (fit.image_width, fit.image_height))
            concept = self.options.labels[int(labels[i])]
            out.append(Prediction(concept=concept, confidence=float(found.scores[i]), region=region))
        return out

    def _boxes(self, found: Candidates, fit: Fit) -> list[Prediction]:
        if not found.scores.size:
            return []
        boxes, labels, keep = self._kept(found, fit)
        out = []
        for i in keep:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            out.append(
                Prediction(
                    concept=self.options.labels[int(labels[i])],
                    confidence=float(found.scores[i]),
                    region=Box(top=y1, left=x1, bottom=y2, right=x2),
                )
            )
        return out


def static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def known(shape: Sequence[Any]) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def is_int(type_name: str) -> bool:
    return "int" in type_name


def nhwc_shape(shape: Sequence[Any]) -> bool:
    """Channels last when the last dimension is 3 and the second is not."""
    return len(shape) == 4 and shape[3] == 3 and shape[1] != 3
