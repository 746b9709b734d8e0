"""The API's operations endpoints and its request-id middleware.

    GET /healthz   200 while the process serves requests (no dependency is checked)
    GET /readyz    200 when MongoDB and Redis answer and a worker heartbeat is recent, else 503;
                   the body names each check: {"status": "ready"|"not ready", "checks": {...}}
    GET /metrics   Prometheus text format (app.observability.metrics)

None needs an API key: they say nothing about anyone's data, and probes and scrapers carry no
key. Expose them only where operators can reach them if that matters to you.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import health, logs, metrics
from app.tasks.models import BatchState, TaskBatch

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
COUNT_CAP = 100_000  # the batch gauges stop counting there: a scrape stays cheap


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    runtime = request.app.state.runtime
    settings = runtime.settings
    result = await health.readiness(
        runtime.mongo,
        runtime.redis,
        heartbeat_timeout_s=settings.worker_heartbeat_timeout_s,
        timeout_s=settings.readiness_timeout_s,
    )
    body = {"status": "ready" if result.ready else "not ready", "checks": result.checks}
    return JSONResponse(body, status_code=200 if result.ready else 503)


async def _count_batches(state: BatchState) -> int:
    coll = TaskBatch.get_pymongo_collection()
    return int(await coll.count_documents({"state": state.value}, limit=COUNT_CAP, maxTimeMS=2000))


async def metrics_endpoint(request: Request) -> Response:
    try:
        metrics.jobs_queued.set(await _count_batches(BatchState.PENDING))
        metrics.jobs_running.set(await _count_batches(BatchState.LEASED))
    except Exception:  # MongoDB away: the gauges keep their last values; /readyz tells why
        pass
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a new one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _REQUEST_ID.fullmatch(text):
                return text
    return logs.new_request_id()


class RequestIdMiddleware:
    """Every HTTP request and WebSocket gets a request id: the client's ``X-Request-ID`` or a
    new one. It is in ``scope["state"]["request_id"]`` (GraphQL errors quote it), in every log
    line written meanwhile, and in the ``X-Request-ID`` response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope.get("headers") or [])
        scope.setdefault("state", {})["request_id"] = rid
        token = logs.request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers") or [])
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            logs.request_id.reset(token)
