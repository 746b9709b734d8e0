"""``ls-ml-backend``: a model behind a Label Studio ML backend (``/health``, ``/setup``,
``/predict``), so existing backends plug in.

Images travel inside the request as ``data:`` URIs (PNG by default, lossless, of the image the
worker decoded), because a backend cannot be assumed to reach this service's API, and a URL
would need a credential the backend could keep. A backend that only opens ``http(s)`` URLs
must be taught to read data URIs (a few lines; ``tests/inference_servers/ls_backend.py`` does).

Results map to predictions by their type; every coordinate is a percentage of the image:

=================  ============================================================
``choices``        one whole-image prediction per chosen label
``rectanglelabels`` a box from ``x``, ``y``, ``width``, ``height`` (its bounding box when rotated)
``polygonlabels``  a polygon from ``points`` ``[[x, y], ...]`` -> ``(row, col)``
=================  ============================================================

A result's ``score`` is its confidence (else the prediction's ``score``, else 1). The label
text is the model concept id. Other result types are ignored.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np
from pydantic import Field

from ..base import AdapterInput, Box, ModelConcept, Polygon, Prediction, check_image
from . import images
from .base import RemoteAdapter
from .config import RemoteConfig
from .errors import ERROR, UNAVAILABLE, ServerFailure

MAX_LABELS = 10_000
MAX_LABEL_CONFIG = 64 * 1024
PROJECT = "labelstream"


class LabelStudioConfig(RemoteConfig):
    label_config: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_LABEL_CONFIG,
        description="the labeling XML sent to /setup and /predict",
    )
    labels: list[str] | None = Field(None, max_length=MAX_LABELS, description="label names it outputs")
    image_format: Literal["png", "jpeg"] = Field("png", description="how images travel (data URIs)")
    jpeg_quality: int = Field(95, ge=1, le=100)
    setup: bool = Field(True, description="POST /setup before the first batch")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="drop results scored lower")


def default_label_config(labels: Sequence[str]) -> str:
    """An image with choices, rectangles and polygons over ``labels``."""
    items = "".join(f"<Label value={quoteattr(v)}/>" for v in labels)
    choices = "".join(f"<Choice value={quoteattr(v)}/>" for v in labels)
    return (
        '<View><Image name="image" value="$image"/>'
        f'<Choices name="choice" toName="image">{choices}</Choices>'
        f'<RectangleLabels name="label" toName="image">{items}</RectangleLabels>'
        f'<PolygonLabels name="polygon" toName="image">{items}</PolygonLabels></View>'
    )


def data_uri(img: np.ndarray, fmt: str, quality: int) -> str:
    return f"data:image/{fmt};base64," + base64.b64encode(images.encode(img, fmt, quality)).decode()


def _unit(v: float) -> float:
    return min(1.0, max(0.0, v))


def _rectangle(value: Mapping[str, Any], width: int, height: int) -> Box:
    x, y = float(value["x"]), float(value["y"])
    w, h = float(value["width"]), float(value["height"])
    angle = math.radians(float(value.get("rotation") or 0.0))
    if angle:
        # rotated about its top-left corner, in pixels (Label Studio's convention)
        px, py, pw, ph = x * width / 100, y * height / 100, w * width / 100, h * height / 100
        cos, sin = math.cos(angle), math.sin(angle)
        xs = [px + dx * cos - dy * sin for dx, dy in ((0, 0), (pw, 0), (pw, ph), (0, ph))]
        ys = [py + dx * sin + dy * cos for dx, dy in ((0, 0), (pw, 0), (pw, ph), (0, ph))]
        return Box(
            top=_unit(min(ys) / height),
            left=_unit(min(xs) / width),
            bottom=_unit(max(ys) / height),
            right=_unit(max(xs) / width),
        )
    return Box(
        top=_unit(y / 100), left=_unit(x / 100), bottom=_unit((y + h) / 100), right=_unit((x + w) / 100)
    )


def results_to_predictions(
    prediction: Mapping[str, Any], width: int, height: int, min_confidence: float
) -> list[Prediction]:
    """One task's Label Studio prediction (``{"result": [...], "score": ...}``) as predictions."""
    default = prediction.get("score")
    out: list[Prediction] = []
    for item in prediction.get("result") or []:
        kind = item.get("type")
        value = item.get("value") or {}
        score = item.get("score", value.get("score", default))
        confidence = _unit(float(score)) if score is not None else 1.0
        if confidence < min_confidence:
            continue
        region: Box | Polygon | None
        if kind == "choices":
            names, region = value.get("choices") or [], None
        elif kind == "rectanglelabels":
            names, region = value.get("rectanglelabels") or [], _rectangle(value, width, height)
        elif kind == "polygonlabels":
            points = tuple((_unit(float(p[1]) / 100), _unit(float(p[0]) / 100)) for p in value["points"])
            names, region = value.get("polygonlabels") or [], Polygon(points)
            if len(points) < 3:
                continue
        else:
            continue
        out.extend(
            Prediction(concept=str(name), confidence=confidence, region=region, extra={"name": str(name)})
            for name in names
        )
    return out


class LabelStudioMLAdapter(RemoteAdapter):
    """A Label Studio ML backend; see the module docstring and ``LabelStudioConfig``."""

    name = "ls-ml-backend"
    kind = "DETECTOR"
    kinds = frozenset({"CLASSIFIER", "DETECTOR", "SEGMENTER"})
    config_schema = LabelStudioConfig
    options: LabelStudioConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.labels = list(self.options.labels or [])
        self.label_config = self.options.label_config or default_label_config(self.labels)

    def limit_key(self) -> str:
        return f"{self.options.url}|ls-ml-backend"

    def concepts(self) -> list[ModelConcept]:
        return [ModelConcept(id=c, name=c) for c in self.labels]

    def _load(self) -> None:
        c = self.client
        health = c.request("GET", "/health")
        if health.status != 200:
            raise ServerFailure(UNAVAILABLE, f"the ML backend is not healthy (/health: HTTP {health.status})")
        if self.options.setup:
            body = {"project": PROJECT, "schema": self.label_config, "hostname": "", "access_token": ""}
            c.ok(c.request("POST", "/setup", content=_json(body), headers=_JSON), "/setup")

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        if not batch:
            return []
        images = [check_image(item, self.name) for item in batch]
        self.ensure_loaded()
        return self.in_chunks(images, self.options.batch_size, self._predict)

    def _predict(self, images: Sequence[np.ndarray]) -> list[list[Prediction]]:
        o = self.options
        tasks = [
            {"id": i + 1, "data": {"image": data_uri(img, o.image_format, o.jpeg_quality)}}
            for i, img in enumerate(images)
        ]
        body = {"tasks": tasks, "project": PROJECT, "label_config": self.label_config, "params": {}}
        reply = self.client.ok(
            self.client.request("POST", "/predict", content=_json(body), headers=_JSON), "/predict"
        )
        answer = reply.json()
        results = answer.get("results") if isinstance(answer, dict) else answer
        if not isinstance(results, list) or len(results) != len(images):
            got = len(results) if isinstance(results, list) else type(results).__name__
            raise ServerFailure(ERROR, f"/predict answered {got} results for {len(images)} tasks")
        try:
            return [
                results_to_predictions(
                    r if isinstance(r, dict) else {"result": r}, img.shape[1], img.shape[0], o.min_confidence
                )
                for r, img in zip(results, images, strict=True)
            ]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ServerFailure(ERROR, f"a /predict result is malformed: {exc!r}") from exc


_JSON = {"Content-Type": "application/json"}


def _json(body: Any) -> bytes:
    import orjson

    return orjson.dumps(body)
