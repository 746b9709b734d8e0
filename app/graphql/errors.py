"""Typed GraphQL errors and the mapping from domain errors (the one place it happens).

Mutations return a union ``<Verb><Noun>Result`` of a success type and the error types below,
each with ``message``, ``field`` and ``code``. Queries raise; their errors carry
``extensions.code`` (and ``extensions.field``) in the standard ``errors`` list.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec, TypeVar, Union

import strawberry

from app.core.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
)

log = logging.getLogger("labelstream.graphql")

ErrorCodeEnum = strawberry.enum(ErrorCode, name="ErrorCode", description="Machine-readable cause.")


@strawberry.interface(description="Every typed error: what went wrong, where, and a stable code.")
class Error:
    message: str
    field: str | None = strawberry.field(
        description="Path of the offending argument, e.g. `input.thresholds.lower`."
    )
    code: ErrorCodeEnum  # type: ignore[valid-type]


@strawberry.type(description="The input is malformed, out of range or inconsistent.")
class ValidationError(Error):
    pass


@strawberry.type(description="Unknown id, or an id of an app you are not a member of.")
class NotFoundError(Error):
    pass


@strawberry.type(description="You are a member of the app but lack the role this needs.")
class PermissionDeniedError(Error):
    pass


@strawberry.type(description="The change conflicts with existing data (duplicate, in use, ...).")
class ConflictError(Error):
    pass


ERROR_TYPES: tuple[type, ...] = (
    ValidationError,
    NotFoundError,
    PermissionDeniedError,
    ConflictError,
)


def to_graphql_error(exc: DomainError) -> Error:
    cls: type[Error]
    if isinstance(exc, NotFound):
        cls = NotFoundError
    elif isinstance(exc, PermissionDenied):
        cls = PermissionDeniedError
    elif isinstance(exc, Conflict):
        cls = ConflictError
    elif isinstance(exc, Unauthenticated):  # pragma: no cover - the HTTP gate answers first
        cls = PermissionDeniedError
    else:
        cls = ValidationError
    return cls(message=exc.message, field=exc.field, code=exc.code)  # type: ignore[call-arg]


def result_union(name: str, success: type) -> Any:
    """``Annotated[Union[success, <errors>], strawberry.union(name)]``."""
    return Annotated[
        Union[success, *ERROR_TYPES],  # type: ignore[valid-type]
        strawberry.union(name),
    ]


P = ParamSpec("P")
R = TypeVar("R")


def mutation_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn a raised ``DomainError`` into the result union's error member."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except DomainError as exc:
            return to_graphql_error(exc)  # type: ignore[return-value]

    wrapper.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return wrapper


def validation(message: str, field: str, code: ErrorCode = ErrorCode.INVALID) -> ValidationFailed:
    return ValidationFailed(message, field=field, code=code)
