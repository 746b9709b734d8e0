"""Full garbage collections kept off the fan-out's path (app/live/collector.py): what is alive
once subscriptions settle is frozen; reference cycles frozen with it are collected after enough
subscriptions went away."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from app.live.collector import Collector
from app.live.hub import Hub


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the garbage collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    before = gc.get_freeze_count()
    yield
    if gc.get_freeze_count() > before:
        gc.unfreeze()  # what this test froze goes back (and the app's start-up freeze with it)


async def test_settled_subscriptions_are_frozen_and_their_cycles_collected_after_enough_went_away(
    unfrozen: None,
) -> None:
    collector = Collector(0.05, min_released=3)
    hub = Hub("redis://unused", collector=collector)
    collector.start()
    try:
        subs = [hub.subscribe("c", renderer=None) for _ in range(8)]  # type: ignore[arg-type]
        cycle = Node()
        gone = weakref.ref(cycle)
        await asyncio.sleep(0.3)  # settled: frozen
        assert (collector.live, collector.freezes, collector.full_collections) == (8, 1, 0)
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert gone() is not None  # frozen: a collection does not see it

        hub.unsubscribe(subs[0])
        await asyncio.sleep(0.3)  # one went away: under the threshold, frozen again only
        assert (collector.live, collector.freezes, collector.full_collections) == (7, 2, 0)
        assert gone() is not None
        hub.unsubscribe(subs[0])  # twice: counted once
        for sub in subs[1:3]:
            hub.unsubscribe(sub)
        await asyncio.sleep(0.3)  # three went away in all: a full collection first
        assert (collector.live, collector.freezes, collector.full_collections) == (5, 1, 1)
        assert gone() is None
    finally:
        await collector.stop()


async def test_subscriptions_that_keep_changing_are_not_frozen(unfrozen: None) -> None:
    collector = Collector(0.2)
    hub = Hub("redis://unused", collector=collector)
    collector.start()
    try:
        for _ in range(10):
            hub.unsubscribe(hub.subscribe("c", renderer=None))  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
        assert collector.freezes == 0
        await asyncio.sleep(0.4)
        assert collector.freezes == 1
    finally:
        await collector.stop()
