"""Small validators shared by the services; each raises a ``ValidationFailed`` with a field."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from app.core.errors import ErrorCode, ValidationFailed

MAX_NAME = 200
MAX_DESCRIPTION = 2_000
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def name(value: str, field: str = "name", *, max_len: int = MAX_NAME) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise ValidationFailed(f"{field} must not be empty", field=field, code=ErrorCode.EMPTY)
    if len(cleaned) > max_len:
        raise ValidationFailed(
            f"{field} may be at most {max_len} characters", field=field, code=ErrorCode.TOO_LONG
        )
    return cleaned


def description(value: str, field: str = "description") -> str:
    if len(value) > MAX_DESCRIPTION:
        raise ValidationFailed(
            f"{field} may be at most {MAX_DESCRIPTION} characters",
            field=field,
            code=ErrorCode.TOO_LONG,
        )
    return value.strip()


def email(value: str, field: str = "email") -> str:
    cleaned = value.strip().lower()
    if not _EMAIL_RE.match(cleaned) or len(cleaned) > 254:
        raise ValidationFailed("not a valid email address", field=field, code=ErrorCode.INVALID)
    return cleaned


def unit_interval(value: float, field: str) -> float:
    if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValidationFailed(f"{field} must be between 0 and 1", field=field, code=ErrorCode.OUT_OF_RANGE)
    return float(value)


def json_object(value: Any, field: str, *, max_bytes: int) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field} must be a JSON object", field=field)
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValidationFailed(f"{field} is not valid JSON", field=field) from exc
    if size > max_bytes:
        raise ValidationFailed(
            f"{field} may be at most {max_bytes} bytes of JSON",
            field=field,
            code=ErrorCode.TOO_LONG,
        )
    if any(k.startswith("$") or "." in k for k in _keys(value)):
        raise ValidationFailed(f"{field} keys may not start with '$' or contain '.'", field=field)
    return value


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        out = [str(k) for k in value]
        for v in value.values():
            out.extend(_keys(v))
        return out
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def bounded_list(values: list[Any], field: str, *, max_items: int, allow_empty: bool = False) -> None:
    if not values and not allow_empty:
        raise ValidationFailed(f"{field} must not be empty", field=field, code=ErrorCode.EMPTY)
    if len(values) > max_items:
        raise ValidationFailed(
            f"{field} may hold at most {max_items} items", field=field, code=ErrorCode.TOO_MANY
        )
