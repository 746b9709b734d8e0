"""The ASGI application: ``create_app(settings)``; the lifespan opens every client.

Nothing connects at import time. ``labelstream serve`` (uvicorn) calls the factory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.core.auth import Authenticator
from app.core.blobs import LocalBlobStore
from app.core.db import open_database
from app.core.runtime import Runtime
from app.graphql.schema import build_schema
from app.graphql.view import GraphQLView
from app.settings import Settings

log = logging.getLogger("labelstream")


async def open_runtime(settings: Settings) -> Runtime:
    if not settings.mongodb_url:
        raise RuntimeError(
            "no MongoDB configured: set MONGODB_URL, or use `labelstream up` (embedded servers)"
        )
    mongo = await open_database(settings.mongodb_url, settings.mongodb_db)
    redis = None
    if settings.redis_url:
        from app.core.queue import create_pool

        redis = await create_pool(settings.redis_url)
    return Runtime(
        settings=settings,
        mongo=mongo,
        redis=redis,
        blobs=LocalBlobStore(settings.resolved_blob_dir),
        auth=Authenticator(settings.key_last_used_resolution_s),
    )


async def close_runtime(runtime: Runtime) -> None:
    if runtime.redis is not None:
        await runtime.redis.aclose()
    await runtime.mongo.close()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    view = GraphQLView(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        multipart_uploads_enabled=True,
        allow_queries_via_get=True,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await open_runtime(settings)
        app.state.runtime = runtime
        view.runtime = runtime
        try:
            yield
        finally:
            await close_runtime(runtime)

    async def health(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        await runtime.mongo.admin.command("ping")
        return JSONResponse({"status": "ok"})

    async def root(request: Request) -> Response:
        return RedirectResponse("/graphql")

    from app.inputs.routes import routes as input_routes

    routes = [
        Route("/", root),
        Route("/health", health),
        Route("/graphql", view, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", view),
        *input_routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
