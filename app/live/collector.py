"""Keeps full garbage collections off the live fan-out's path.

Each subscriber's connection holds a few hundred objects the garbage collector tracks (its
socket, protocol, tasks, GraphQL operation). With 1,000 subscribers a full collection walks
about 300,000 objects: ~370 ms on the two-core machine kind, and no event goes out meanwhile.
CPython starts one whenever a quarter as many objects again reached the oldest generation,
which a fan-out's short-lived objects do within about half a minute of events
(bench/RESULTS.md: one event held ~350 ms for every subscriber).

So once the subscriptions have settled (no subscribe or unsubscribe for ``settle_s``), what is
alive is moved out of the collector's sight (``gc.freeze``, which costs nothing): the
collections that follow walk only what was allocated since.

Frozen objects are still freed by reference counting; only reference cycles among them wait.
So when subscriptions went away (at least ``min_released``, and at least a quarter of those
still open), or after ``max_freezes`` freezes without one, the settled moment first runs a full
collection over everything (unfreeze, collect, freeze): the one pause, at a moment
subscriptions change rather than while their events flow, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from app.core.aio import cancel_and_wait

log = logging.getLogger("labelstream.live")


class Collector:
    def __init__(self, settle_s: float = 2.0, *, min_released: int = 100, max_freezes: int = 50) -> None:
        self.settle_s = settle_s
        self.min_released = min_released
        self.max_freezes = max_freezes
        self.live = 0  # open subscriptions
        self.released = 0  # subscriptions ended since the last full collection
        self.freezes = 0  # freezes since the last full collection
        self.full_collections = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribed(self) -> None:
        self.live += 1
        self._changed.set()

    def unsubscribed(self) -> None:
        self.live = max(0, self.live - 1)
        self.released += 1
        self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-collector")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await asyncio.sleep(self.settle_s)
            if not self._changed.is_set():  # nothing changed meanwhile: settled
                self.settle()

    def settle(self) -> None:
        """The subscriptions have settled: freeze what is alive (after a full collection when
        enough went away since the last one)."""
        if self.released >= max(self.min_released, self.live // 4) or self.freezes >= self.max_freezes:
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
            self.released = self.freezes = 0
            log.debug(
                "full collection with %d subscriptions: %.0f ms",
                self.live,
                (time.perf_counter() - started) * 1e3,
            )
        gc.freeze()
        self.freezes += 1
