"""``null``: a model that returns fixed predictions, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .base import (
    KINDS,
    AdapterInput,
    Box,
    ModelAdapter,
    ModelConcept,
    ModelKind,
    Polygon,
    Prediction,
    bounded_sleep,
)
from .config import AdapterConfig
from .errors import AdapterMismatch

_DEFAULT_CONCEPTS = ("null-a", "null-b", "null-c")
MAX_PREDICTIONS = 100  # per input: every one becomes an annotation write
MAX_CONCEPTS = 1_000
MAX_POLYGON_POINTS = 1_000
MAX_DELAY_MS = 1_000  # per input; the worker is shared by every app
MAX_NAME = 200

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


def _geometry(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_geometry", message)


class RegionSpec(AdapterConfig):
    """A box (``top``, ``left``, ``bottom``, ``right``) or a polygon (``points``), 0..1."""

    top: Unit | None = None
    left: Unit | None = None
    bottom: Unit | None = None
    right: Unit | None = None
    points: list[tuple[Unit, Unit]] | None = Field(None, min_length=3, max_length=MAX_POLYGON_POINTS)

    @model_validator(mode="after")
    def _box_or_polygon(self) -> RegionSpec:
        edges = (self.top, self.left, self.bottom, self.right)
        if self.points is not None:
            if any(v is not None for v in edges):
                raise _geometry("a region is either a box or a polygon (points), not both")
            return self
        if self.top is None or self.left is None or self.bottom is None or self.right is None:
            raise _geometry("a box needs top, left, bottom and right (or give points)")
        if self.top > self.bottom or self.left > self.right:
            raise _geometry("a box needs top <= bottom and left <= right")
        return self

    def region(self) -> Box | Polygon:
        if self.points is not None:
            return Polygon(tuple((float(r), float(c)) for r, c in self.points))
        return Box(*(float(v or 0.0) for v in (self.top, self.left, self.bottom, self.right)))


class PredictionSpec(AdapterConfig):
    concept: Name
    confidence: Unit
    region: RegionSpec | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class NullConfig(AdapterConfig):
    predictions: list[PredictionSpec] | None = Field(
        None,
        max_length=MAX_PREDICTIONS,
        description="what every input gets; default null-a 0.9, null-b 0.5, null-c 0.1",
    )
    concepts: list[Name] | None = Field(
        None, max_length=MAX_CONCEPTS, description="concept ids; default those of predictions"
    )
    kind: ModelKind | None = Field(None, description="the kind it reports; must be the model's")
    delay_ms: float = Field(0.0, ge=0.0, le=MAX_DELAY_MS, description="sleep per input")


class NullAdapter(ModelAdapter):
    """Returns the same predictions for every input; serves every kind of model.

    Config (``NullConfig``):
      * ``predictions``: list of ``{"concept": str, "confidence": float, "region": ..., "extra"}``
        (region: ``{"top","left","bottom","right"}`` or ``{"points": [[row, col], ...]}``).
        Default: 3 predictions ``null-a`` 0.9, ``null-b`` 0.5, ``null-c`` 0.1, no region.
      * ``concepts``: list of concept ids (default: those of ``predictions``).
      * ``kind``: reported kind (default ``CLASSIFIER``); a registered model's must be its own.
      * ``delay_ms``: sleep per input, to simulate inference cost (default 0).
    """

    name = "null"
    kind = "CLASSIFIER"
    kinds = frozenset(KINDS)
    zero_shot = True  # it ignores the names, but tests register it as a zero-shot stand-in
    config_schema = NullConfig
    options: NullConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        opts = self.options
        if opts.predictions is None:
            self._predictions = [
                Prediction(concept=c, confidence=p)
                for c, p in zip(_DEFAULT_CONCEPTS, (0.9, 0.5, 0.1), strict=True)
            ]
        else:
            self._predictions = [
                Prediction(
                    concept=s.concept,
                    confidence=s.confidence,
                    region=s.region.region() if s.region is not None else None,
                    extra=dict(s.extra),
                )
                for s in opts.predictions
            ]
        ids = opts.concepts or list(dict.fromkeys(p.concept for p in self._predictions))
        self._concepts = [ModelConcept(id=c, name=c) for c in ids]
        self.kind = opts.kind or "CLASSIFIER"  # type: ignore[misc]
        self._delay = opts.delay_ms / 1000.0

    @classmethod
    def check_model(cls, kind: str, options: AdapterConfig, zero_shot: bool | None) -> None:
        super().check_model(kind, options, zero_shot)
        reported = getattr(options, "kind", None)
        if reported is not None and reported != kind:
            raise AdapterMismatch(
                f"config.kind {reported} differs from the model's kind {kind}", field="config.kind"
            )

    def concepts(self) -> list[ModelConcept]:
        return list(self._concepts)

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        out: list[list[Prediction]] = []
        for item in batch:
            if not isinstance(item, AdapterInput):
                raise ValueError(f"null: expected an AdapterInput, got {type(item).__name__}")
            if self._delay:  # simulated cost, cut short by the batch's deadline
                bounded_sleep(self._delay)
            out.append(list(self._predictions))
        return out
