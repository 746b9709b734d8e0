"""The waking worker (app/core/waking.py) on the session's real Redis: idle, it waits for a
notification instead of polling, and it still starts every job: notified ones, deferred ones,
retried ones, queued behind a busy slot, and ones enqueued without a notification.

Every worker here has an ``idle_wait_s`` far longer than the tests' 30 s result timeout, so a
job that starts at all started because of the mechanism under test, not the fallback read."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import create_pool as arq_create_pool
from arq.jobs import Job
from arq.worker import Retry

from app.core.queue import QueuePool, create_pool_from_settings, redis_settings
from app.core.waking import WakingWorker
from tests.servers import Servers

LONG = 600.0  # idle_wait_s: never reached within a test


class CountingWorker(WakingWorker):
    """Counts its reads of the queue."""

    reads = 0

    async def _poll_iteration(self) -> None:
        self.reads += 1
        await super()._poll_iteration()


async def ping(ctx: dict[str, Any]) -> str:
    return "pong"


async def nap(ctx: dict[str, Any], seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


async def flaky(ctx: dict[str, Any]) -> int:
    if ctx["job_try"] == 1:
        raise Retry(defer=0.3)
    return int(ctx["job_try"])


@pytest.fixture
def queue() -> str:
    return f"test-wake-{secrets.token_hex(4)}"


@pytest.fixture
async def pool(servers: Servers, queue: str) -> AsyncIterator[QueuePool]:
    made = await create_pool_from_settings(redis_settings(servers.redis_url), default_queue_name=queue)
    yield made
    await made.aclose()


@contextlib.asynccontextmanager
async def running(servers: Servers, queue: str, **options: Any) -> AsyncIterator[CountingWorker]:
    worker = CountingWorker(
        functions=[ping, nap, flaky],  # type: ignore[list-item]
        queue_name=queue,
        redis_settings=redis_settings(servers.redis_url),
        handle_signals=False,
        poll_delay=0.01,
        keep_result=60,
        **({"idle_wait_s": LONG} | options),
    )
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()


async def until_idle(worker: CountingWorker) -> None:
    """Until the worker waits on its wake event (subscribed, queue read)."""
    for _ in range(3000):
        if worker._listener is not None and worker.reads >= 1 and not worker._wake.is_set():
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never became idle")


async def result(job: Job | None) -> Any:
    assert job is not None
    return await job.result(timeout=30, poll_delay=0.05)


async def test_an_idle_worker_does_not_read_the_queue_until_woken(
    servers: Servers, queue: str, pool: QueuePool
) -> None:
    async with running(servers, queue) as worker:
        await until_idle(worker)
        reads = worker.reads
        await asyncio.sleep(0.3)  # arq would read the queue ~30 times at poll_delay 0.01
        assert worker.reads == reads

        assert await result(await pool.enqueue_job("ping")) == "pong"
        assert worker.reads > reads


async def test_a_job_enqueued_while_the_worker_waits_starts(
    servers: Servers, queue: str, pool: QueuePool
) -> None:
    async with running(servers, queue) as worker:
        await until_idle(worker)
        jobs = [await pool.enqueue_job("ping") for _ in range(5)]
        assert [await result(job) for job in jobs] == ["pong"] * 5


async def test_a_deferred_job_starts_when_due_without_a_notification(servers: Servers, queue: str) -> None:
    plain = await arq_create_pool(redis_settings(servers.redis_url), default_queue_name=queue)
    try:
        job = await plain.enqueue_job("ping", _defer_by=0.5)  # arq's own pool: nothing published
        async with running(servers, queue):
            assert await result(job) == "pong"
    finally:
        await plain.aclose()


async def test_a_deferred_job_enqueued_while_idle_starts_when_due(
    servers: Servers, queue: str, pool: QueuePool
) -> None:
    async with running(servers, queue) as worker:
        await until_idle(worker)
        job = await pool.enqueue_job("ping", _defer_by=0.4)
        assert await result(job) == "pong"


async def test_a_retried_job_runs_again_when_its_retry_is_due(
    servers: Servers, queue: str, pool: QueuePool
) -> None:
    async with running(servers, queue) as worker:
        await until_idle(worker)
        assert await result(await pool.enqueue_job("flaky")) == 2


async def test_jobs_queued_behind_a_busy_slot_start_when_it_frees(
    servers: Servers, queue: str, pool: QueuePool
) -> None:
    async with running(servers, queue, max_jobs=1) as worker:
        await until_idle(worker)
        jobs = [await pool.enqueue_job("nap", 0.2) for _ in range(3)]
        assert [await result(job) for job in jobs] == ["rested"] * 3


async def test_a_job_without_a_notification_starts_after_the_idle_wait(servers: Servers, queue: str) -> None:
    plain = await arq_create_pool(redis_settings(servers.redis_url), default_queue_name=queue)
    try:
        async with running(servers, queue, idle_wait_s=0.2) as worker:
            await until_idle(worker)
            assert await result(await plain.enqueue_job("ping")) == "pong"
    finally:
        await plain.aclose()


async def test_a_refused_duplicate_is_not_announced(servers: Servers, queue: str, pool: QueuePool) -> None:
    listener = pool.pubsub(ignore_subscribe_messages=True)
    await listener.subscribe(f"{queue}:wake")
    try:
        once = f"once-{queue}"
        assert await pool.enqueue_job("ping", _job_id=once) is not None
        assert await pool.enqueue_job("ping", _job_id=once) is None
        # None also stands for the (ignored) subscribe confirmation: read a few times
        seen = [m for _ in range(4) if (m := await listener.get_message(timeout=0.2)) is not None]
        assert len(seen) == 1
    finally:
        await listener.aclose()


async def test_a_worker_cancelled_as_it_is_woken_stops(servers: Servers, queue: str) -> None:
    """A cancellation (SIGTERM, shutdown) that arrives in the same loop step as a wake-up stops
    the worker; asyncio.wait_for on Python 3.11 swallowed it and the worker went on waiting."""
    worker = CountingWorker(
        functions=[ping],  # type: ignore[list-item]
        queue_name=queue,
        redis_settings=redis_settings(servers.redis_url),
        handle_signals=False,
        idle_wait_s=LONG,
    )
    task = asyncio.create_task(worker.async_run())
    try:
        await until_idle(worker)
        worker._wake.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the worker went on after its cancellation"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await worker.close()


def test_the_idle_wait_must_be_positive(servers: Servers, queue: str) -> None:
    with pytest.raises(ValueError, match="idle_wait_s"):
        WakingWorker(
            functions=[ping],
            queue_name=queue,
            redis_settings=redis_settings(servers.redis_url),
            idle_wait_s=0,
        )  # type: ignore[list-item]
