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


MAX_JSON_DEPTH = 32  # MongoDB refuses documents nested deeper than 100 levels
_INT64 = (-(2**63), 2**63 - 1)  # BSON's widest integer


def json_document(
    value: Any, field: str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """A JSON object that MongoDB stores, and GraphQL returns, exactly as given.

    Stricter than ``json_object``: besides the size and key rules it refuses what would pass
    a JSON parser but fail later, in the database or in the response (an ``INTERNAL`` error
    after other writes): ``NaN`` and ``Infinity`` (not JSON, though Python's parser accepts
    them), integers beyond 64 bits, lone surrogates, keys holding NUL, nesting deeper than
    ``max_depth``. Every refusal is ``INVALID`` (size: ``TOO_LONG``) on ``field``, with the
    place inside the value in the message.
    """
    clean = json_object(value, field, max_bytes=max_bytes)  # type, size, '$' and '.' in keys
    problem = _unstorable(clean, field, 0, max_depth)
    if problem is not None:
        raise ValidationFailed(problem, field=field)
    return clean


def _unstorable(value: Any, path: str, depth: int, max_depth: int) -> str | None:
    """Why ``value`` (at ``path``) cannot be stored as it is, or None. Depth is checked before
    descending, so a deep value costs no deep recursion."""
    if isinstance(value, dict | list):
        if depth >= max_depth:
            return f"{path} is nested more than {max_depth} levels deep"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and (bad := _bad_text(key, f"a key in {path}")):
                return bad
            if isinstance(key, str) and "\0" in key:
                return f"a key in {path} contains a NUL character"
            if (found := _unstorable(item, f"{path}.{key}", depth + 1, max_depth)) is not None:
                return found
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        ok = _INT64[0] <= value <= _INT64[1]
        return None if ok else f"{path} is an integer beyond 64 bits"
    if isinstance(value, float):
        ok = math.isfinite(value)
        return None if ok else f"{path} is {value!r}: JSON numbers are finite (no NaN or Infinity)"
    if isinstance(value, str):
        return _bad_text(value, path)
    return f"{path} is not a JSON value ({type(value).__name__})"


def _bad_text(value: str, where: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{where} is not valid Unicode (a lone surrogate)"
    return None


def unicode_text(value: str, field: str) -> str:
    """``value`` if it can be stored as UTF-8; a lone surrogate (``"\\ud800"``, which JSON
    escapes can carry) is ``INVALID`` on ``field`` instead of a database error later."""
    if (problem := _bad_text(value, field)) is not None:
        raise ValidationFailed(problem, field=field)
    return value
