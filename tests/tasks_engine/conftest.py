"""Fixtures for running labeling tasks: a real arq worker over the test Redis, in burst mode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from arq.worker import Worker
from starlette.applications import Starlette

from app.core.queue import QUEUE_NAME, redis_settings
from app.settings import Settings
from app.tasks.jobs import FUNCTIONS

Drain = Callable[..., Awaitable[Worker]]


def make_worker(asgi_app: Starlette, settings: Settings, **options: Any) -> Worker:
    """A worker sharing the app's runtime (same MongoDB client, blob store and Redis pool)."""
    assert settings.redis_url
    kwargs: dict[str, Any] = {
        "burst": True,
        "poll_delay": 0.01,
        "handle_signals": False,
        "max_jobs": 2,
        "keep_result": 60,
    } | options
    return Worker(
        functions=FUNCTIONS,
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(settings.redis_url),
        ctx={"runtime": asgi_app.state.runtime},
        **kwargs,
    )


async def stop_worker(worker: Worker, running: asyncio.Task[Any]) -> None:
    """Stop a worker started with ``asyncio.create_task(worker.async_run())``.

    arq's ``close()`` cancels the jobs still running and gathers them, so it raises the
    ``CancelledError`` of a job caught mid-flight: that is the expected end of a stop here.
    """
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()


@pytest.fixture
async def drain(asgi_app: Starlette, settings: Settings) -> Drain:
    """``await drain()`` runs every queued job (``max_burst_jobs=N`` stops after N)."""
    await asgi_app.state.runtime.redis.flushdb()

    async def run(**options: Any) -> Worker:
        worker = make_worker(asgi_app, settings, **options)
        try:
            await worker.async_run()
        finally:
            await worker.close()
        return worker

    return run
