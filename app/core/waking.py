"""An arq worker that sleeps until there is work, instead of polling Redis every few ms.

arq's worker reads its queue every ``poll_delay`` (10 ms here, for a short enqueue-to-start
delay): an idle worker spent ~9 % of a core on it. ``WakingWorker`` keeps arq's loop, but after
each read, when nothing more is due, it waits for the first of:

* a notification on the queue's wake channel (``app.core.queue``: every enqueue publishes one,
  after its write), read by one pub/sub connection per worker;
* one of its own jobs finishing (a slot is free again; a job it retried may be due);
* the due time of the earliest deferred job in the queue (arq's ``_defer_by``, retries), so
  deferred work starts on time without any notification;
* ``idle_wait_s`` at most: a lost notification (pub/sub is at-most-once, e.g. across a Redis
  restart), a job another worker deferred, or a job whose worker died (its in-progress key
  expired) is picked up within that bound.

While jobs keep coming it reads the queue at most every ``poll_delay``, as arq does. Burst mode
(tests, ``labelstream worker --burst``) is arq's loop unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from arq.worker import Worker

from app.core.queue import create_pool_from_settings, wake_channel

log = logging.getLogger("labelstream.worker")


class WakingWorker(Worker):
    """arq's ``Worker``, idle without polling (module docstring)."""

    def __init__(self, *args: Any, idle_wait_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if idle_wait_s <= 0:
            raise ValueError("idle_wait_s must be positive")
        self.idle_wait_s = idle_wait_s
        self._wake = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._fetched = 0

    # ---------------------------------------------------------------- the loop
    async def main(self) -> None:
        if self._pool is None:  # a QueuePool: jobs that enqueue through ctx["redis"] wake workers
            assert self.redis_settings is not None  # arq sets it whenever it has no pool
            self._pool = await create_pool_from_settings(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        await super().main()

    async def _poll_iteration(self) -> None:
        if self.burst:
            await super()._poll_iteration()
            return
        if self._listener is None or self._listener.done():
            self._listener = await self._listen()
        # cleared before the read: a job added after the read publishes after it, and sets it
        self._wake.clear()
        self._fetched = 0
        await super()._poll_iteration()
        timeout = await self._idle_timeout()
        if timeout > 0:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the event is set, and the worker would not stop (SIGTERM, close)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        self._fetched = len(job_ids)
        await super().start_jobs(job_ids)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._wake.set()

    async def _idle_timeout(self) -> float:
        """Seconds to wait before reading the queue again (0: read it now)."""
        if self._fetched >= self.queue_read_limit:
            return 0.0  # a full read: more may be due
        now_ms = time.time() * 1000
        # due jobs not started are running elsewhere, or wait for a slot (a finishing job wakes)
        nxt = await self.pool.zrangebyscore(
            self.queue_name, min=f"({now_ms:.0f}", max="+inf", start=0, num=1, withscores=True
        )
        if nxt:
            return max(0.0, min(self.idle_wait_s, (float(nxt[0][1]) - now_ms) / 1000))
        return self.idle_wait_s

    # ------------------------------------------------------- the wake channel
    async def _listen(self) -> asyncio.Task[None]:
        """Subscribe now (so no enqueue after this read is missed), then read in a task."""
        pubsub = self.pool.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(wake_channel(self.queue_name))
        return asyncio.create_task(self._read(pubsub), name="arq-wake-listener")

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis lost: the loop polls every idle_wait_s, resubscribes
            log.warning(
                "wake channel lost (%s); polling every %.1f s until it is back", exc, self.idle_wait_s
            )
            self._wake.set()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        await super().close()
