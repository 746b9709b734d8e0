"""The arq worker: ``labelstream worker``. Jobs take ids, load documents, call services.

The job functions are registered in ``FUNCTIONS``; the lifespan-like ``startup`` opens the
same runtime the API uses (``app.bootstrap``: MongoDB via Beanie, blob store, the annotation
listeners), ``shutdown`` closes it.

Idle, a worker sleeps on its queue's wake channel (``WakingWorker``, app/core/waking.py) rather
than polling Redis; ``create_worker`` builds it from the settings. It unloads models nobody used
for ``model_idle_unload_s`` (``unload_idle_forever``), giving their memory back. At start and
every ``blob_recover_interval_s`` it decides for blobs a dead release left retired
(``app.blob_refs.recover_forever``).

Operations (app/observability): ``startup`` sets up logging (``log_format``), starts the
heartbeat ``/readyz`` of the API looks for (every ``worker_heartbeat_interval_s``, in Redis),
and, when ``worker_metrics_port`` is set, a small HTTP server answering ``/metrics``. Every job
runs ``instrumented``: its log lines carry ``job_id``, and it moves the jobs running / failed
metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from arq.connections import RedisSettings
from arq.worker import Function, func, get_kwargs

from app import blob_refs
from app.bootstrap import close_runtime, open_runtime
from app.core.aio import cancel_and_wait
from app.core.heap import limit_malloc_arenas
from app.core.queue import QUEUE_NAME, redis_settings
from app.core.waking import WakingWorker
from app.models.adapters import unload_idle_forever
from app.observability import health, logs, metrics
from app.settings import Settings
from app.tasks import scheduler
from app.tasks.jobs import FUNCTIONS as TASK_FUNCTIONS
from app.tasks.jobs import worker_identity

log = logging.getLogger("labelstream.worker")


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op job: lets operators and tests check that a worker is consuming the queue."""
    return "pong"


def instrumented(coroutine: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A job function whose log lines carry the job id, counted in the job metrics."""

    name = getattr(coroutine, "__name__", "job")

    @functools.wraps(coroutine)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        token = logs.job_id.set(str(ctx.get("job_id") or "") or None)
        metrics.worker_jobs_running.inc()
        started = time.monotonic()
        try:
            result = await coroutine(ctx, *args, **kwargs)
            log.info("job %s finished in %.2f s: %s", name, time.monotonic() - started, result)
            return result
        except Exception:
            metrics.jobs_failed.inc()
            raise
        finally:
            metrics.worker_jobs_running.dec()
            logs.job_id.reset(token)

    return run


def job_functions() -> list[Function]:
    """Every job this worker runs, instrumented (``instrumented``)."""
    out: list[Function] = []
    for f in [ping, *TASK_FUNCTIONS]:
        fn = f if isinstance(f, Function) else func(f)  # type: ignore[arg-type]
        wrapped: Any = instrumented(fn.coroutine)
        out.append(dataclasses.replace(fn, coroutine=wrapped))
    return out


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings()
    logs.configure(settings.log_format)
    limit_malloc_arenas(settings.worker_malloc_arenas)  # before the inference threads start
    ctx["runtime"] = runtime = await open_runtime(settings)
    # work that lost its wake-up (Redis emptied) or its worker (lease lapsed) is woken again
    ctx["reconciler"] = asyncio.create_task(scheduler.reconcile_forever(runtime))
    ctx["blob_recovery"] = asyncio.create_task(
        blob_refs.recover_forever(runtime.blobs, settings.blob_recover_interval_s)
    )
    if settings.model_idle_unload_s > 0:
        ctx["unloader"] = asyncio.create_task(unload_idle_forever(settings.model_idle_unload_s))
    identity = ctx.setdefault("worker_identity", worker_identity())
    ctx["heartbeat"] = asyncio.create_task(
        health.heartbeat_forever(runtime.redis, identity, settings.worker_heartbeat_interval_s)
    )
    if settings.worker_metrics_port:
        try:
            ctx["metrics_server"] = metrics.serve_worker_metrics(
                settings.worker_metrics_port, settings.worker_metrics_host
            )
        except OSError as exc:  # another worker process took the port: give each its own
            log.warning("no worker /metrics on port %s: %s", settings.worker_metrics_port, exc)
    log.info("worker %s connected to MongoDB and Redis", identity)


async def shutdown(ctx: dict[str, Any]) -> None:
    for name in ("reconciler", "heartbeat", "unloader", "blob_recovery"):
        await cancel_and_wait(ctx.get(name))
    server = ctx.pop("metrics_server", None)
    if server is not None:
        server.shutdown()
        server.server_close()
    runtime = ctx.get("runtime")
    if runtime is not None:
        if ctx.get("worker_identity") and runtime.redis is not None:
            await health.forget(runtime.redis, ctx["worker_identity"])
        await close_runtime(runtime)


def _functions() -> list[Any]:
    return list(job_functions())


def worker_settings(settings: Settings) -> type:
    if not settings.redis_url:
        raise RuntimeError("no Redis configured: set REDIS_URL, or use `labelstream up`")
    logs.configure(settings.log_format)  # before arq's first line

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


def create_worker(settings: Settings, **overrides: Any) -> WakingWorker:
    """The worker ``labelstream worker`` runs: ``worker_settings`` on a ``WakingWorker``."""
    options: dict[str, Any] = {**get_kwargs(worker_settings(settings)), **overrides}
    return WakingWorker(idle_wait_s=settings.worker_idle_wait_s, **options)
