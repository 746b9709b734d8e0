"""``null``: a model that returns fixed predictions, for tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .base import AdapterInput, Box, ModelAdapter, ModelConcept, Polygon, Prediction

_DEFAULT_CONCEPTS = ("null-a", "null-b", "null-c")


def _region(spec: Any) -> Box | Polygon | None:
    if spec is None:
        return None
    if isinstance(spec, Box | Polygon):
        return spec
    if isinstance(spec, Mapping):
        if "points" in spec:
            return Polygon(tuple((float(r), float(c)) for r, c in spec["points"]))
        return Box(float(spec["top"]), float(spec["left"]), float(spec["bottom"]), float(spec["right"]))
    raise ValueError(f"null: bad region spec {spec!r}")


class NullAdapter(ModelAdapter):
    """Returns the same predictions for every input.

    Config:
      * ``predictions``: list of ``{"concept": str, "confidence": float, "region": ...}``
        (region: ``{"top","left","bottom","right"}`` or ``{"points": [[row, col], ...]}``).
        Default: 3 predictions ``null-a`` 0.9, ``null-b`` 0.5, ``null-c`` 0.1, no region.
      * ``concepts``: list of concept ids (default: those of ``predictions``).
      * ``kind``: reported kind (default ``CLASSIFIER``).
      * ``delay_ms``: sleep per input, to simulate inference cost (default 0).
    """

    name = "null"
    kind = "CLASSIFIER"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        specs = self.config.get("predictions")
        if specs is None:
            specs = [
                {"concept": c, "confidence": p}
                for c, p in zip(_DEFAULT_CONCEPTS, (0.9, 0.5, 0.1), strict=True)
            ]
        self._predictions = [
            Prediction(
                concept=str(s["concept"]),
                confidence=float(s["confidence"]),
                region=_region(s.get("region")),
                extra=dict(s.get("extra", {})),
            )
            for s in specs
        ]
        ids = self.config.get("concepts") or list(dict.fromkeys(p.concept for p in self._predictions))
        self._concepts = [ModelConcept(id=str(c), name=str(c)) for c in ids]
        self.kind = str(self.config.get("kind", "CLASSIFIER"))  # type: ignore[misc]
        self._delay = float(self.config.get("delay_ms", 0)) / 1000.0

    def concepts(self) -> list[ModelConcept]:
        return list(self._concepts)

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        out: list[list[Prediction]] = []
        for item in batch:
            if not isinstance(item, AdapterInput):
                raise ValueError(f"null: expected an AdapterInput, got {type(item).__name__}")
            if self._delay:
                time.sleep(self._delay)
            out.append(list(self._predictions))
        return out
