"""Declared, bounded adapter configs.

Every adapter names a ``config_schema``: a pydantic model that forbids unknown keys, checks
types strictly (as JSON: ``"4"`` is not a number, ``true`` is not an integer) and bounds every
value that costs CPU, memory or time in the shared worker. A stored config is always one that
its schema accepted, so an adapter reads typed, in-range ``options`` and never re-checks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from app.core.errors import ErrorCode
from app.models.adapters.errors import InvalidConfig

# One model call may not take the whole worker: onnxruntime's intra-op pool is capped here, and
# at run time also by the machine's core count (``threads_for``).
MAX_THREADS = 8
DEFAULT_THREADS = 2

_CODES: dict[str, ErrorCode] = {
    "extra_forbidden": ErrorCode.UNKNOWN_KEY,
    "missing": ErrorCode.REQUIRED,
    "greater_than": ErrorCode.OUT_OF_RANGE,
    "greater_than_equal": ErrorCode.OUT_OF_RANGE,
    "less_than": ErrorCode.OUT_OF_RANGE,
    "less_than_equal": ErrorCode.OUT_OF_RANGE,
    "finite_number": ErrorCode.OUT_OF_RANGE,
    "out_of_range": ErrorCode.OUT_OF_RANGE,
    "too_long": ErrorCode.TOO_MANY,
    "string_too_long": ErrorCode.TOO_LONG,
    "too_short": ErrorCode.EMPTY,
    "string_too_short": ErrorCode.EMPTY,
    "literal_error": ErrorCode.INVALID,
    "enum": ErrorCode.INVALID,
    "invalid_geometry": ErrorCode.INVALID_GEOMETRY,
}


def _code(error_type: str) -> ErrorCode:
    if error_type in _CODES:
        return _CODES[error_type]
    if error_type.endswith(("_type", "_parsing")) or error_type in ("int_from_float", "model_type"):
        return ErrorCode.WRONG_TYPE
    return ErrorCode.INVALID


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(["config", *(str(p) for p in loc)])


def _invalid(adapter: str, error: ErrorDetails, schema: type[AdapterConfig], total: int) -> InvalidConfig:
    field = _field(error["loc"])
    if error["type"] == "extra_forbidden":
        text = f"unknown key {str(error['loc'][-1])!r} at {field} for adapter {adapter!r}"
        if len(error["loc"]) == 1:
            keys = ", ".join(schema.model_fields)
            text += f"; known: {keys}" if keys else "; it takes no config"
    else:
        text = f"{field}: {error['msg']}"
    if total > 1:
        text += f" (and {total - 1} more problem{'s' if total > 2 else ''})"
    return InvalidConfig(text, field=field, code=_code(error["type"]))


class AdapterConfig(BaseModel):
    """Base of every adapter's config: closed, strict, finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    @classmethod
    def load(cls, config: Mapping[str, Any] | None, adapter: str) -> Self:
        """The validated config; raises ``InvalidConfig`` naming the first offending key.

        Validation runs on the JSON form, as the config is stored and sent: numbers are numbers,
        an integer key refuses ``4.5``, and a non-JSON value is refused rather than coerced.
        """
        if config is not None and not isinstance(config, Mapping):
            raise InvalidConfig("config must be a JSON object", field="config")
        try:
            raw = orjson.dumps(dict(config or {}))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidConfig(f"config is not valid JSON: {exc}", field="config") from exc
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise _invalid(adapter, errors[0], cls, len(errors)) from None

    def stored(self) -> dict[str, Any]:
        """The keys that were given, in their JSON form (what the registry stores)."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return out


class ThreadsConfig(AdapterConfig):
    intra_op_num_threads: int = Field(
        DEFAULT_THREADS,
        ge=1,
        le=MAX_THREADS,
        description="onnxruntime threads per call, also at most the cores",
    )


class OnnxConfig(ThreadsConfig):
    allow_spinning: bool = Field(False, description="let idle onnxruntime threads busy-wait")


def threads_for(requested: int) -> int:
    """Threads actually used: the configured number, at most the machine's cores."""
    return max(1, min(requested, MAX_THREADS, os.cpu_count() or 1))
