"""``kserve-v2``: a model on an Open Inference Protocol server (KServe v2 REST; also spoken by
Triton, MLServer, Seldon and OpenVINO Model Server).

Before its first batch the adapter asks the server whether it and the model are ready
(``/v2/health/ready``, ``/v2/models/{name}/ready``) and reads the model's metadata
(``GET /v2/models/{name}[/versions/{v}]``): input and output names, shapes (a fixed batch axis
caps the inputs per request). A batch is then sent as requests of ``batch_size`` images,
``max_concurrency`` at a time, to ``POST .../infer``.

Pre- and post-processing are declared: ``preprocess: "efficientnet_lite0"`` and ``"nanodet"``
run the built-in classifier's and detector's own code (their ONNX graphs served elsewhere give
the same predictions as the built-ins), ``"generic"`` follows ``config.generic``
(``GenericSpec``: size, resize or letterbox, mean/std, RGB/BGR, NCHW/NHWC, and the output
layout).

What travels is declared by ``input.format``: ``tensor`` (default) sends the preprocessed float
tensor; ``encoded_image`` sends each image's file (its original JPEG/PNG, else a PNG or JPEG
re-encode: ``images.py``) as a ``BYTES`` tensor of shape ``[n]``, and the server decodes,
preprocesses and runs the model, as a Triton ensemble or a KServe transformer does; only the
post-processing stays here (``preprocess`` then names what the server does: the built-in's
processing, or ``generic``, whose geometry maps boxes back). A file is ~20-100x smaller than its
float tensor, which is what keeps a Python server's data plane from dominating the time.
The model's metadata must agree (a ``BYTES`` first input for ``encoded_image``, a numeric one
for ``tensor``), or the batch fails with ``INFERENCE_SERVER_ERROR`` naming the mismatch.
With ``encoded_image`` the adapter ``wants_encoded``: the task run then hands it JPEG and PNG
originals undecoded, with their header's size (``app/tasks/run/load.py``), and only the size
is used here (to map boxes back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from pydantic import Field

from ..base import AdapterInput, ModelAdapter, ModelConcept, Prediction, check_image
from ..config import AdapterConfig
from ..errors import AdapterMismatch
from ..image_classifier import NUM_CLASSES, ImageClassifierAdapter
from ..imaging import letterbox_fit
from ..object_detector import INPUT_SIZE as DETECTOR_INPUT
from ..object_detector import MAX_DETECTIONS, ObjectDetectorAdapter
from .base import RemoteAdapter
from .config import RemoteConfig
from .errors import ERROR, UNAVAILABLE, ServerFailure
from .generic import (
    DETECTIONS,
    SEGMENTS,
    YOLO,
    Fit,
    GenericSpec,
    classify,
    detect,
    outputs_needed,
    placement,
    segment,
    to_tensor,
    yolo_candidates,
)
from .images import file_and_size
from .tensors import HEADER, decode_response, encode_bytes_request, encode_request

MAX_LABELS = 10_000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class InputSpec(AdapterConfig):
    """What one request carries per image."""

    format: Literal["tensor", "encoded_image"] = Field(
        "tensor",
        description="tensor: the preprocessed float tensor; encoded_image: the image file as a "
        "BYTES tensor, decoded and preprocessed by the server",
    )
    reencode: Literal["png", "jpeg"] = Field(
        "png", description="encoded_image: how an image without a usable original file is sent"
    )
    jpeg_quality: int = Field(95, ge=1, le=100, description="encoded_image with reencode jpeg")


class KServeConfig(RemoteConfig):
    model_name: str = Field(
        min_length=1, max_length=200, pattern=NAME.pattern, description="name on the server"
    )
    model_version: str | None = Field(None, min_length=1, max_length=100, pattern=NAME.pattern)
    binary_data: bool = Field(False, description="send and ask for tensors in the binary extension")
    input: InputSpec = Field(
        default_factory=InputSpec,
        description="{format: tensor|encoded_image, reencode: png|jpeg, jpeg_quality: 1..100}; "
        "encoded_image sends each image file as a BYTES tensor and the server preprocesses",
    )
    preprocess: Literal["efficientnet_lite0", "nanodet", "generic"] = Field(
        "generic", description="the built-in classifier's or detector's processing, or config.generic"
    )
    generic: GenericSpec | None = Field(None, description="with preprocess generic")
    input_name: str | None = Field(None, max_length=200, description="generic: default the first input")
    output_names: list[str] | None = Field(
        None, min_length=1, max_length=3, description="generic: scores, or boxes, scores, labels"
    )
    labels: list[str] | None = Field(
        None, max_length=MAX_LABELS, description="concept id of each class index"
    )
    top_k: int = Field(5, ge=1, le=NUM_CLASSES, description="classifiers: best classes kept")
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="default 0 (classes), 0.25 (boxes)"
    )
    iou_threshold: float = Field(0.6, gt=0.0, lt=1.0, description="detectors: NMS overlap")
    max_detections: int = Field(100, ge=1, le=MAX_DETECTIONS, description="detectors: boxes per image")
    center_crop: bool = Field(False, description="efficientnet_lite0: as the built-in's center_crop")


@dataclass(frozen=True)
class _Port:
    name: str


class _Session:
    """What the built-in adapters call on an onnxruntime session, answered by the server."""

    def __init__(self, adapter: KServeV2Adapter) -> None:
        self.adapter = adapter

    def get_outputs(self) -> list[_Port]:
        return [_Port(n) for n in self.adapter.output_ports]

    def get_inputs(self) -> list[_Port]:
        return [_Port(n) for n in self.adapter.input_ports]

    def run(self, names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.adapter.infer(feeds, list(names or self.adapter.output_ports))


class _RemoteClassifier(ImageClassifierAdapter):
    remote: _Session

    def make_session(self, path: Any) -> Any:
        return self.remote


class _RemoteDetector(ObjectDetectorAdapter):
    remote: _Session

    def make_session(self, path: Any) -> Any:
        return self.remote


class KServeV2Adapter(RemoteAdapter):
    """Open Inference Protocol over HTTP; see the module docstring and ``KServeConfig``."""

    name = "kserve-v2"
    kind = "CLASSIFIER"
    kinds = frozenset({"CLASSIFIER", "DETECTOR", "SEGMENTER"})
    config_schema = KServeConfig
    options: KServeConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        o = self.options
        self.spec = o.generic or GenericSpec()
        self.labels = list(o.labels or [])
        path = "/v2/models/" + quote(o.model_name, safe="")
        if o.model_version:
            path += "/versions/" + quote(o.model_version, safe="")
        self.model_path = path
        self.input_ports: list[str] = []
        self.input_types: list[str] = []
        self.output_ports: list[str] = []
        self.per_request = o.batch_size
        self.inner: ModelAdapter | None = None
        if o.preprocess == "efficientnet_lite0":
            opts: dict[str, Any] = {"top_k": o.top_k, "center_crop": o.center_crop}
            if o.min_confidence is not None:
                opts["min_confidence"] = o.min_confidence
            self.inner = _RemoteClassifier(opts)
            self.inner.remote = _Session(self)
        elif o.preprocess == "nanodet":
            opts = {"iou_threshold": o.iou_threshold, "max_detections": o.max_detections}
            if o.min_confidence is not None:
                opts["min_confidence"] = max(0.001, o.min_confidence)
            self.inner = _RemoteDetector(opts)
            self.inner.remote = _Session(self)

    def limit_key(self) -> str:
        o = self.options
        return f"{o.url}|kserve|{o.model_name}|{o.model_version or ''}"

    @classmethod
    def check_model(cls, kind: str, options: AdapterConfig, zero_shot: bool | None) -> None:
        super().check_model(kind, options, zero_shot)
        assert isinstance(options, KServeConfig)
        wants = {"efficientnet_lite0": "CLASSIFIER", "nanodet": "DETECTOR"}.get(options.preprocess)
        if wants is None:
            spec = options.generic or GenericSpec()
            if spec.output in SEGMENTS:
                wants = "SEGMENTER"
            else:
                wants = "DETECTOR" if spec.output in DETECTIONS else "CLASSIFIER"
            field = "config.generic.output"
        else:
            field = "config.preprocess"
        if wants != kind:
            raise AdapterMismatch(f"this config makes a {wants} model, not a {kind}", field=field)
        given = options.input.model_fields_set
        if options.input.format == "tensor" and given & {"reencode", "jpeg_quality"}:
            raise AdapterMismatch(
                "input.reencode and input.jpeg_quality apply only with input.format encoded_image",
                field="config.input.format",
            )
        if options.input.format == "encoded_image" and options.center_crop:
            raise AdapterMismatch(
                "with input.format encoded_image the server preprocesses: center_crop is its own",
                field="config.center_crop",
            )
        if "jpeg_quality" in given and options.input.reencode != "jpeg":
            raise AdapterMismatch(
                "input.jpeg_quality applies only with input.reencode jpeg", field="config.input.jpeg_quality"
            )
        if options.preprocess != "generic" and options.generic is not None:
            raise AdapterMismatch(
                "config.generic applies only with preprocess generic", field="config.generic"
            )

    def concepts(self) -> list[ModelConcept]:
        if self.inner is not None:
            return self.inner.concepts()
        return [ModelConcept(id=c, name=c) for c in self.labels]

    # --- the server ------------------------------------------------------------------------

    def _load(self) -> None:
        c = self.client
        if c.request("GET", "/v2/health/ready").status != 200:
            raise ServerFailure(UNAVAILABLE, "the inference server is not ready (/v2/health/ready)")
        ready = c.request("GET", self.model_path + "/ready")
        if ready.status != 200:
            code = ERROR if ready.status == 404 else UNAVAILABLE
            raise ServerFailure(code, f"model {self.options.model_name!r} is not ready (HTTP {ready.status})")
        meta = c.ok(c.request("GET", self.model_path), "model metadata").json()
        try:
            inputs, outputs = meta["inputs"], meta["outputs"]
            self.input_ports = [str(t["name"]) for t in inputs]
            self.input_types = [str(t.get("datatype", "")).upper() for t in inputs]
            self.output_ports = [str(t["name"]) for t in outputs]
            first = inputs[0]["shape"][0] if inputs and inputs[0].get("shape") else -1
        except (KeyError, TypeError, IndexError) as exc:
            raise ServerFailure(ERROR, f"the model metadata lacks inputs or outputs: {exc!r}") from exc
        if isinstance(first, int) and first > 0:  # a fixed batch axis
            self.per_request = min(self.per_request, first)
        self._check_input_format()
        if self.inner is not None and not self.encoded:
            self.inner.ensure_loaded()  # its make_session answers with the server

    @property
    def encoded(self) -> bool:
        return self.options.input.format == "encoded_image"

    @property
    def wants_encoded(self) -> bool:
        return self.encoded

    def _check_input_format(self) -> None:
        o = self.options
        name = o.input_name or (self.input_ports[0] if self.input_ports else None)
        if name is None or name not in self.input_ports:
            raise ServerFailure(ERROR, f"model {o.model_name!r} has no input {name!r}")
        datatype = self.input_types[self.input_ports.index(name)]
        if not datatype:
            return  # metadata without datatypes: trust the config
        if self.encoded and datatype != "BYTES":
            raise ServerFailure(
                ERROR,
                f"input.format is encoded_image but the model's input {name!r} takes {datatype} "
                "tensors, not BYTES (set input.format: tensor)",
            )
        if not self.encoded and datatype == "BYTES":
            raise ServerFailure(
                ERROR,
                f"the model's input {name!r} takes BYTES (encoded images): set input.format: encoded_image",
            )

    def infer(self, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        body, headers = encode_request(feeds, outputs, self.options.binary_data)
        return self._post(body, headers, outputs)

    def infer_files(self, files: Sequence[bytes], outputs: list[str]) -> list[np.ndarray]:
        """``outputs`` for encoded images, each with the batch axis first (checked)."""
        name = self.options.input_name or self.input_ports[0]
        body, headers = encode_bytes_request(name, files, outputs, self.options.binary_data)
        got = self._post(body, headers, outputs)
        if any(a.ndim == 0 or len(a) != len(files) for a in got):
            raise ServerFailure(
                ERROR, f"outputs of {[a.shape for a in got]} for a batch of {len(files)} images"
            )
        return got

    def _post(self, body: bytes, headers: dict[str, str], outputs: list[str]) -> list[np.ndarray]:
        reply = self.client.ok(
            self.client.request("POST", self.model_path + "/infer", content=body, headers=headers), "infer"
        )
        got = decode_response(reply.body, reply.headers.get(HEADER))
        missing = [n for n in outputs if n not in got]
        if missing:
            raise ServerFailure(ERROR, f"the infer answer lacks output(s) {', '.join(missing)}")
        return [got[n] for n in outputs]

    # --- predictions -----------------------------------------------------------------------

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        if not batch:
            return []
        if self.encoded:
            o = self.options
            files = [file_and_size(item, o.input.reencode, o.input.jpeg_quality, self.name) for item in batch]
            self.ensure_loaded()
            return self.in_chunks(files, self.per_request, self._encoded)
        images = [check_image(item, self.name) for item in batch]
        self.ensure_loaded()
        inner = self.inner
        if inner is not None:
            return self.in_chunks(
                images, self.per_request, lambda ch: inner.predict([AdapterInput(image=i) for i in ch])
            )
        return self.in_chunks(images, self.per_request, self._generic)

    def _generic(self, images: Sequence[np.ndarray]) -> list[list[Prediction]]:
        o, spec = self.options, self.spec
        tensors, fits = zip(*(to_tensor(img, spec) for img in images), strict=True)
        input_name = o.input_name or self.input_ports[0]
        names = self._output_names()
        outs = self.infer({input_name: np.stack(tensors)}, names)
        n = len(images)
        if any(len(a) != n for a in outs):
            raise ServerFailure(ERROR, f"outputs of {[a.shape for a in outs]} for a batch of {n}")
        return self._generic_predictions(outs, list(fits))

    def _output_names(self) -> list[str]:
        """The outputs the declared layout reads: as configured, else the model's first ones."""
        needed = outputs_needed(self.spec)
        names = list(self.options.output_names or self.output_ports[:needed])
        if len(names) != needed:
            raise ServerFailure(ERROR, f"expected {needed} output(s), the model names {names}")
        return names

    def _generic_predictions(self, outs: list[np.ndarray], fits: list[Fit]) -> list[list[Prediction]]:
        o, spec = self.options, self.spec
        n = len(fits)
        if spec.output not in DETECTIONS + SEGMENTS:
            low = o.min_confidence or 0.0
            return [classify(outs[0][i], spec, self.labels, o.top_k, low) for i in range(n)]
        low = o.min_confidence if o.min_confidence is not None else 0.25
        if spec.output in SEGMENTS:
            try:
                return [
                    segment(
                        outs[0][i],
                        outs[1][i],
                        fits[i],
                        spec,
                        self.labels,
                        min_confidence=low,
                        iou_threshold=o.iou_threshold,
                        max_detections=o.max_detections,
                    )
                    for i in range(n)
                ]
            except ValueError as exc:  # the served outputs are not the declared layout
                raise ServerFailure(ERROR, f"config.generic.output {spec.output}: {exc}") from exc
        out = []
        for i in range(n):
            if spec.output in YOLO:
                try:
                    *candidates, read_as = yolo_candidates(outs[0][i], spec, self.labels, low)
                except ValueError as exc:  # the served output is not the declared layout
                    raise ServerFailure(ERROR, f"config.generic.output {spec.output}: {exc}") from exc
            else:
                candidates, read_as = [outs[0][i], outs[1][i], outs[2][i]], spec
            boxes, scores, classes = candidates
            out.append(
                detect(
                    boxes,
                    scores,
                    classes,
                    fits[i],
                    read_as,
                    self.labels,
                    min_confidence=low,
                    iou_threshold=o.iou_threshold,
                    max_detections=o.max_detections,
                )
            )
        return out

    def _encoded(self, items: Sequence[tuple[bytes, tuple[int, int]]]) -> list[list[Prediction]]:
        """One request of image files (with their sizes); the server preprocesses,
        post-processing happens here."""
        o = self.options
        files = [f for f, _ in items]
        sizes = [size for _, size in items]
        inner = self.inner
        if isinstance(inner, ImageClassifierAdapter):
            (logits,) = self.infer_files(files, list(o.output_names or ["logits"]))
            return inner.predictions(logits.reshape(len(files), -1))
        if isinstance(inner, ObjectDetectorAdapter):
            names = list(o.output_names or self.output_ports)
            outs = self.infer_files(files, names)
            inner.concepts()
            return [
                inner.decode(
                    {n: a[i : i + 1] for n, a in zip(names, outs, strict=True)},
                    letterbox_fit(w, h, DETECTOR_INPUT, DETECTOR_INPUT),
                )
                for i, (w, h) in enumerate(sizes)
            ]
        outs = self.infer_files(files, self._output_names())
        return self._generic_predictions(outs, [placement(w, h, self.spec) for w, h in sizes])
