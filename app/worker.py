"""The arq worker: ``labelstream worker``. Jobs take ids, load documents, call services.

The job functions are registered in ``FUNCTIONS``; the lifespan-like ``startup`` opens the
same runtime the API uses (``app.bootstrap``: MongoDB via Beanie, blob store, the annotation
listeners), ``shutdown`` closes it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from arq.connections import RedisSettings

from app.bootstrap import close_runtime, open_runtime
from app.core.queue import QUEUE_NAME, redis_settings
from app.settings import Settings
from app.tasks import scheduler
from app.tasks.jobs import FUNCTIONS as TASK_FUNCTIONS

log = logging.getLogger("labelstream.worker")


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op job: lets operators and tests check that a worker is consuming the queue."""
    return "pong"


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings()
    ctx["runtime"] = runtime = await open_runtime(settings)
    # work that lost its wake-up (Redis emptied) or its worker (lease lapsed) is woken again
    ctx["reconciler"] = asyncio.create_task(scheduler.reconcile_forever(runtime))
    log.info("worker connected to MongoDB and Redis")


async def shutdown(ctx: dict[str, Any]) -> None:
    reconciler = ctx.get("reconciler")
    if reconciler is not None:
        reconciler.cancel()
    runtime = ctx.get("runtime")
    if runtime is not None:
        await close_runtime(runtime)


def _functions() -> list[Any]:
    return [ping, *TASK_FUNCTIONS]


def worker_settings(settings: Settings) -> type:
    if not settings.redis_url:
        raise RuntimeError("no Redis configured: set REDIS_URL, or use `labelstream up`")

    class WorkerSettings:
        functions: ClassVar[list[Any]] = _functions()
        on_startup = staticmethod(startup)
        on_shutdown = staticmethod(shutdown)
        queue_name = QUEUE_NAME
        redis_settings: ClassVar[RedisSettings] = redis_settings(settings.redis_url or "")
        # arq's 0.5 s default poll leaves short jobs waiting (PERFORMANCE.md)
        poll_delay = settings.worker_poll_delay_s
        max_jobs = settings.worker_max_jobs
        ctx: ClassVar[dict[str, Any]] = {"settings": settings}

    return WorkerSettings
