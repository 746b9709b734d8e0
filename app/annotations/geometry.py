"""Region checks. Coordinates are normalised to [0, 1] (row = y from the top, col = x from the
left); a box is ``[top, left, bottom, right]`` with ``top < bottom`` and ``left < right``; a
polygon has at least three points and a non-zero area. Errors carry ``INVALID_GEOMETRY`` and the
path of the offending value (``box.top``, ``polygon.2.col``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.core.errors import ErrorCode, ValidationFailed

MAX_POLYGON_POINTS = 1_000
MIN_POLYGON_AREA = 1e-12

BOX_SIDES = ("top", "left", "bottom", "right")


def _bad(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, field=field, code=ErrorCode.INVALID_GEOMETRY)


def _unit(value: float, field: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _bad(f"{field} must be between 0 and 1", field)
    return float(value)


def check_box(top: float, left: float, bottom: float, right: float, field: str = "box") -> list[float]:
    """The box as stored, ``[top, left, bottom, right]``."""
    values = [
        _unit(v, f"{field}.{side}") for v, side in zip((top, left, bottom, right), BOX_SIDES, strict=True)
    ]
    if values[0] >= values[2]:
        raise _bad("top must be above bottom (top < bottom)", f"{field}.bottom")
    if values[1] >= values[3]:
        raise _bad("left must be left of right (left < right)", f"{field}.right")
    return values


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Shoelace area (absolute) of a closed polygon given as (row, col) points."""
    total = 0.0
    for (r1, c1), (r2, c2) in zip(points, [*points[1:], points[0]], strict=True):
        total += c1 * r2 - c2 * r1
    return abs(total) / 2.0


def check_polygon(points: Sequence[tuple[float, float]], field: str = "polygon") -> list[float]:
    """The polygon as stored, flat: ``[row0, col0, row1, col1, ...]``."""
    if len(points) < 3:
        raise _bad("a polygon needs at least 3 points", field)
    if len(points) > MAX_POLYGON_POINTS:
        raise _bad(f"a polygon may have at most {MAX_POLYGON_POINTS} points", field)
    flat: list[float] = []
    for index, (row, col) in enumerate(points):
        flat.append(_unit(row, f"{field}.{index}.row"))
        flat.append(_unit(col, f"{field}.{index}.col"))
    if polygon_area(points) < MIN_POLYGON_AREA:
        raise _bad("the polygon has no area (its points are on one line)", field)
    return flat


def unflatten(flat: Sequence[float]) -> list[tuple[float, float]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]
