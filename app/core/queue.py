"""The arq job queue: one place that knows queue names, Redis settings and wake-ups.

Every enqueue goes through a ``QueuePool`` (``create_pool``): after arq has put the job in the
queue's sorted set, the pool publishes on the queue's wake channel (``wake_channel``), so an
idle worker (``app.core.waking.WakingWorker``) blocks on that channel instead of polling Redis
every few milliseconds. The notification carries nothing: a woken worker reads the queue.
Publishing after the write means a worker that read the queue before the job was added is
woken after it was added, never before.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from arq import create_pool as arq_create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

QUEUE_NAME = "labelstream:queue"


def wake_channel(queue_name: str = QUEUE_NAME) -> str:
    """The pub/sub channel told about every job enqueued on ``queue_name``."""
    return f"{queue_name}:wake"


def redis_settings(url: str) -> RedisSettings:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must start with redis:// or rediss://, got {url!r}")
    return RedisSettings(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        database=int((parsed.path or "/0").lstrip("/") or 0),
        password=parsed.password,
        username=parsed.username,
        ssl=parsed.scheme == "rediss",
    )


class QueuePool(ArqRedis):
    """An ``ArqRedis`` whose ``enqueue_job`` also wakes the workers of the job's queue."""

    async def enqueue_job(self, function: str, *args: Any, **kwargs: Any) -> Job | None:
        job = await super().enqueue_job(function, *args, **kwargs)
        if job is not None:  # a refused duplicate changed nothing: nobody to wake
            await self.publish(wake_channel(kwargs.get("_queue_name") or self.default_queue_name), b"")
        return job

    @classmethod
    def wrapping(cls, pool: ArqRedis) -> QueuePool:
        """A ``QueuePool`` over ``pool``'s connections (closing it closes them)."""
        wrapped = cls(
            pool.connection_pool,
            job_serializer=pool.job_serializer,
            job_deserializer=pool.job_deserializer,
            default_queue_name=pool.default_queue_name,
            expires_extra_ms=pool.expires_extra_ms,
        )
        wrapped.auto_close_connection_pool = True  # it owns the pool ``create_pool`` made
        return wrapped


async def create_pool_from_settings(settings: RedisSettings, **kwargs: Any) -> QueuePool:
    """arq's ``create_pool`` (retries, sentinels), as a ``QueuePool``."""
    return QueuePool.wrapping(await arq_create_pool(settings, **kwargs))


async def create_pool(url: str) -> QueuePool:
    return await create_pool_from_settings(redis_settings(url), default_queue_name=QUEUE_NAME)
