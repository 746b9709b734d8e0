"""Ops fixtures: the session app served by uvicorn on a free 127.0.0.1 port (same event loop),
so that tools outside Python (the npm ``graphql-http`` audit) and plain HTTP clients reach it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette

from app.embedded import free_port
from tests.tasks_engine.conftest import drain  # noqa: F401 - the fixture, reused here


@pytest.fixture(scope="session")
async def base_url(asgi_app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        asgi_app, host="127.0.0.1", port=port, lifespan="off", ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
async def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/graphql"
