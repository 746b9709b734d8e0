"""Per-operation GraphQL metrics: a Strawberry schema extension (``OperationMetrics``).

Counts every operation (HTTP and WebSocket) by operation name and type, times it from parsing to
its result (a subscription: to its first result), and counts the errors of its ``errors`` list
by the code the client sees (``error_code``, the rules of ``app.graphql.view.format_error``).
Requests refused before GraphQL runs (no key, a body that is no GraphQL request) are counted by
the view's answer (``count_http_error``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from app.core.errors import DomainError
from app.observability import metrics


def error_code(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, DomainError):
        return original.code.value
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if original is None or not error.path:
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL"


@functools.lru_cache(maxsize=1024)  # operation names are bounded by metrics.operation_label
def _operation_metrics(name: str, kind: str) -> tuple[Any, Any]:
    return metrics.graphql_requests.labels(name, kind), metrics.graphql_latency.labels(name, kind)


def record_operation(
    operation_name: str | None, kind: str, seconds: float, errors: Iterable[GraphQLError]
) -> None:
    """Count one operation, its time and its errors (also the schema's direct path's report)."""
    count, latency = _operation_metrics(metrics.operation_label(operation_name), kind)
    count.inc()
    latency.observe(seconds)
    for error in errors:
        metrics.graphql_errors.labels(error_code(error)).inc()


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ctx = self.execution_context
        try:
            kind = ctx.operation_type.value
        except Exception:  # a document that does not parse has no operation type
            kind = "unknown"
        errors = list(ctx.pre_execution_errors or [])
        result = ctx.result
        if result is not None and not errors:
            errors = list(getattr(result, "errors", None) or [])
        record_operation(ctx.operation_name, kind, time.perf_counter() - started, errors)


def count_http_error(code: str) -> None:
    metrics.graphql_errors.labels(code).inc()
