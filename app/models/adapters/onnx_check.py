"""The check an uploaded ONNX file passes before anything is stored (synchronous: run it in a
thread). It loads the file, checks the one image input, finds the output layout, runs the model
once on a sample image and decodes the result with the same code a worker uses, refusing:

* ``MODEL_LOAD_FAILED`` (``file``): not ONNX, truncated, or fails on the sample image;
* ``UNSUPPORTED_MODEL_LAYOUT`` (``file``): not exactly one 3-channel image input, or outputs
  that fit no supported layout;
* ``MODEL_OUTPUT_INVALID`` (``file``): NaN or infinite values, scores outside 0..1, boxes with a
  negative size or far outside the input, labels outside the concepts;
* ``CONCEPT_COUNT_MISMATCH`` (``concepts``): the outputs fit a layout for another number of
  classes than the concepts (given, or read from the ``names`` metadata);
* ``REQUIRED`` (``concepts``): no concepts given and no ``names`` metadata;
* ``InvalidConfig`` / ``AdapterMismatch`` (``config.<key>``) for declared settings.

The returned config is complete: every "auto" the sample could settle (layout, softmax, box
units) is resolved, so a worker decodes the way the check did.
"""

from __future__ import annotations

import ast
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.core.errors import ErrorCode, ValidationFailed

from .errors import AdapterMismatch, ModelRejected
from .onnx_layouts import (
    CountMismatch,
    LayoutUnknown,
    OutputInvalid,
    are_probabilities,
    check_boxes,
    class_scores,
    nanodet_strides,
    yolo_orientation,
)
from .onnx_model import OnnxModelAdapter, OnnxModelConfig, OnnxUserConfig, nhwc_shape, static

SAMPLE = Path(__file__).resolve().parents[2] / "demo" / "samples" / "chelsea.jpg"
MAX_NAMES_CHARS = 2_000_000


@dataclass(frozen=True)
class Checked:
    config: dict[str, Any]  # the stored config (OnnxModelConfig, resolved)
    concepts: list[tuple[str, str]]  # (id, name) in output order
    layout: str


@cache
def sample_image() -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(SAMPLE.read_bytes())) as img:
        return np.asarray(img.convert("RGB"))


def metadata_names(meta: Mapping[str, str]) -> list[str] | None:
    """Class names from ultralytics' ``names`` metadata (``{0: 'person', ...}``, a Python dict
    literal) or a JSON list/dict; None when absent or unreadable."""
    text = meta.get("names")
    if not text or len(text) > MAX_NAMES_CHARS:
        return None
    value: Any
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if isinstance(value, dict):
        try:
            items = sorted((int(k), v) for k, v in value.items())
        except (TypeError, ValueError):
            return None
        if [k for k, _ in items] != list(range(len(items))):
            return None
        value = [v for _, v in items]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    return None


def _rejected(code: ErrorCode, message: str, field: str = "file") -> ModelRejected:
    return ModelRejected(message, code=code, field=field)


def _session(data: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise _rejected(
            ErrorCode.MODEL_LOAD_FAILED, f"the file is not a loadable ONNX model: {first}"
        ) from None


def _check_input(session: Any, user: OnnxUserConfig) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise _rejected(
            ErrorCode.UNSUPPORTED_MODEL_LAYOUT,
            f"the model has {len(inputs)} inputs ({names}); one image input is needed",
        )
    inp = inputs[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise _rejected(
            ErrorCode.UNSUPPORTED_MODEL_LAYOUT,
            f"the input {inp.name!r} has shape {shape}; an image batch has 4 dimensions (NCHW or NHWC)",
        )
    if inp.type not in ("tensor(float)", "tensor(uint8)"):
        raise _rejected(
            ErrorCode.UNSUPPORTED_MODEL_LAYOUT, f"the input {inp.name!r} is {inp.type}; float or uint8 needed"
        )
    nhwc = user.tensor_layout == "NHWC" or (user.tensor_layout == "auto" and nhwc_shape(shape))
    channels = static(shape[3] if nhwc else shape[1])
    if channels is not None and channels != 3:
        raise _rejected(
            ErrorCode.UNSUPPORTED_MODEL_LAYOUT,
            f"the input {inp.name!r} has {channels} channels ({'NHWC' if nhwc else 'NCHW'} {shape}); "
            "3 (an RGB or BGR image) are needed",
        )


def _layout(session: Any, kind: str, user: OnnxUserConfig) -> str:
    if user.layout != "auto":
        return user.layout
    if kind == "CLASSIFIER":
        return "classification"
    if kind == "SEGMENTER":
        return "yolov8_seg"
    names = [o.name for o in session.get_outputs()]
    if nanodet_strides(names):
        return "nanodet"
    if len(names) == 1:
        return "yolo"  # v5 or v8: told apart by the output shape on the sample
    if 2 <= len(names) <= 4:
        return "boxes_scores_labels"
    raise _rejected(
        ErrorCode.UNSUPPORTED_MODEL_LAYOUT,
        f"{len(names)} outputs ({', '.join(names)}) fit no supported detection layout",
    )


def _concepts(
    given: Sequence[tuple[str, str]] | None, meta: Mapping[str, str], fallback: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    if given:
        return list(given)
    names = metadata_names(meta)
    if names is None and fallback:
        return list(fallback)
    if names is None:
        raise ValidationFailed(
            "give the model's concepts: the file has no `names` metadata to read them from",
            field="concepts",
            code=ErrorCode.REQUIRED,
        )
    return [(name, name) for name in names]


def check_onnx(
    data: bytes,
    kind: str,
    config: Mapping[str, Any] | None,
    concepts: Sequence[tuple[str, str]] | None,
    fallback: Sequence[tuple[str, str]] = (),
) -> Checked:
    """The stored config and concepts of an uploaded model, or the typed reason it is refused.
    Concepts: ``concepts`` when given, else the ``names`` metadata, else ``fallback``."""
    if kind not in OnnxModelAdapter.kinds:
        raise AdapterMismatch(
            f"an uploaded ONNX model is a CLASSIFIER or a DETECTOR, not {kind}", field="kind"
        )
    user = OnnxUserConfig.load(config, OnnxModelAdapter.name)
    session = _session(data)
    _check_input(session, user)
    found = _concepts(concepts, session.get_modelmeta().custom_metadata_map or {}, fallback)
    layout = _layout(session, kind, user)
    resolved = user.stored() | {
        "layout": "yolov8" if layout == "yolo" else layout,  # refined below from the output shape
        "blob_key": hashlib.sha256(data).hexdigest(),
        "labels": [cid for cid, _ in found],
    }
    try:
        resolved = _try_sample(session, kind, layout, resolved)
    except CountMismatch as exc:
        raise _rejected(
            ErrorCode.CONCEPT_COUNT_MISMATCH, f"{exc} ({len(found)} concepts)", "concepts"
        ) from None
    except LayoutUnknown as exc:
        raise _rejected(ErrorCode.UNSUPPORTED_MODEL_LAYOUT, str(exc)) from None
    except OutputInvalid as exc:
        raise _rejected(ErrorCode.MODEL_OUTPUT_INVALID, f"on a sample image, {exc}") from None
    return Checked(config=resolved, concepts=found, layout=str(resolved["layout"]))


def _adapter(kind: str, resolved: dict[str, Any], session: Any) -> OnnxModelAdapter:
    options = OnnxModelConfig.load(resolved, OnnxModelAdapter.name)
    OnnxModelAdapter.check_model(kind, options, None)
    adapter = OnnxModelAdapter(resolved)
    adapter.attach(session)
    return adapter


def _run(adapter: OnnxModelAdapter) -> tuple[list[np.ndarray], Any]:
    try:
        outputs, fits = adapter.run([sample_image()])
    except (ValueError, TypeError) as exc:
        raise _rejected(ErrorCode.MODEL_LOAD_FAILED, f"the model failed on a sample image: {exc}") from None
    except Exception as exc:  # onnxruntime's own errors (wrong input size, bad graph)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise _rejected(ErrorCode.MODEL_LOAD_FAILED, f"the model failed on a sample image: {first}") from None
    return outputs[0], fits[0]


def _try_sample(session: Any, kind: str, layout: str, resolved: dict[str, Any]) -> dict[str, Any]:
    adapter = _adapter(kind, resolved, session)
    outs, fit = _run(adapter)
    n_classes = len(resolved["labels"])
    if layout in ("yolo", "yolov5", "yolov8"):
        if len(outs) != 1:
            raise LayoutUnknown(f"a YOLO model has one output, this one has {len(outs)}")
        found, _ = yolo_orientation(outs[0].shape, n_classes, "auto" if layout == "yolo" else layout)
        if found != resolved["layout"]:
            resolved = resolved | {"layout": found}
            adapter = _adapter(kind, resolved, session)
    elif layout == "classification":
        scores = class_scores(outs, n_classes)
        if resolved.get("softmax", "auto") == "auto" and np.isfinite(scores).all():
            resolved = resolved | {"softmax": "never" if are_probabilities(scores) else "always"}
            adapter = _adapter(kind, resolved, session)
    adapter.decode(outs, fit)  # NaN, scores, labels, shapes: as a worker would decode
    if layout != "classification":
        width, height = adapter.input_size
        candidates = adapter.candidates(outs)
        check_boxes(candidates.boxes, width, height)
        if resolved["layout"] == "boxes_scores_labels" and resolved.get("box_units", "auto") == "auto":
            if candidates.boxes.size:
                raw = outs[adapter.roles.boxes if adapter.roles else 0]
                normalized = float(np.abs(raw).max()) <= 1.0 + 1e-6
                resolved = resolved | {"box_units": "normalized" if normalized else "pixels"}
    return resolved
