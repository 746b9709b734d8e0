"""The ASGI application: ``create_app(settings)``; the lifespan opens every client.

Nothing connects at import time. ``labelstream serve`` (uvicorn) calls the factory.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.bootstrap import close_runtime, open_runtime
from app.core import pubsub
from app.exports.routes import routes as export_routes
from app.graphql.schema import build_schema
from app.graphql.view import GraphQLView, graphiql_routes
from app.inputs.routes import routes as input_routes
from app.live import execution as live_execution
from app.live.collector import Collector
from app.live.hub import Hub
from app.live.transport import ServerSendMiddleware
from app.observability import logs
from app.observability.graphql import OperationMetrics, record_operation
from app.observability.routes import RequestIdMiddleware
from app.observability.routes import routes as ops_routes
from app.runtime import Runtime
from app.settings import Settings

log = logging.getLogger("labelstream")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    if logs.unconfigured():  # under uvicorn; a test runner or host application keeps its own
        logs.configure(settings.log_format)
    schema = build_schema(settings)
    schema.extensions = (*schema.extensions, OperationMetrics)  # requests, latency, errors by code
    schema.observe = record_operation  # the same, for operations that skip the extensions
    live_execution.install(schema)  # a shared live event is executed once per distinct operation
    view = GraphQLView(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        multipart_uploads_enabled=True,
        allow_queries_via_get=True,
        keep_alive=settings.ws_keep_alive_interval_s > 0,
        keep_alive_interval=settings.ws_keep_alive_interval_s or 1,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout_s),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await open_runtime(settings)
        if settings.redis_url:
            runtime.live = Hub(
                settings.redis_url,
                interval_s=settings.live_progress_interval_s,
                queue_size=settings.live_queue_size,
                access_recheck_s=settings.live_access_recheck_s,
                collector=Collector(settings.live_gc_settle_s) if settings.gc_freeze else None,
            )
            if runtime.auth.cache is not None:
                runtime.live.listen(pubsub.ACCESS_CHANNEL, runtime.auth.cache.on_access_event)
            await runtime.live.start()
        app.state.runtime = runtime
        view.runtime = runtime
        if settings.gc_freeze:
            # start-up objects live as long as the app: no collection needs to walk them
            gc.freeze()
        try:
            yield
        finally:
            if settings.gc_freeze:
                gc.unfreeze()  # an app started in a longer-lived process (tests) leaves no trace
            if runtime.live is not None:
                await runtime.live.stop()
            await close_runtime(runtime)

    async def health(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        await runtime.mongo.admin.command("ping")
        return JSONResponse({"status": "ok"})

    async def root(request: Request) -> Response:
        return RedirectResponse("/graphql")

    routes = [
        Route("/", root),
        Route("/health", health),
        *ops_routes,  # /healthz, /readyz, /metrics
        Route("/graphql", view, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", view),
        *(graphiql_routes() if settings.graphiql else []),  # the page's own files, no CDN
        *input_routes,
        *export_routes,  # dataset-version exports and annotation crops (object mode)
    ]
    middleware = [Middleware(ServerSendMiddleware), Middleware(RequestIdMiddleware)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.schema = schema
    return app
