"""Helpers for the plain HTTP routes (image bytes, exports): the same API-key auth as GraphQL."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.access import Principal
from app.core.errors import DomainError, Unauthenticated
from app.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def principal_of(request: Request) -> Principal:
    return await runtime_of(request).auth.authenticate(request.headers.get("authorization"))


def error_response(exc: DomainError) -> JSONResponse:
    status = 401 if isinstance(exc, Unauthenticated) else 404 if exc.code.value == "NOT_FOUND" else 400
    if exc.code.value == "PERMISSION_DENIED":
        status = 403
    return JSONResponse(
        {"error": {"message": exc.message, "code": exc.code.value, "field": exc.field}},
        status_code=status,
    )
