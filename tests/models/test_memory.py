"""Lean workers' memory: models nobody uses are unloaded and load again on demand, and
onnxruntime's arena can give its chunks back after each run without changing a prediction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
from beanie import init_beanie
from starlette.applications import Starlette

from app.documents import DOCUMENT_MODELS
from app.models.adapters import AdapterCache, AdapterInput, adapter_cache, get_adapter, unload_idle_forever
from app.models.adapters.base import RUNTIME_OPTIONS, configure_runtime, time_limit
from app.settings import Settings
from app.worker import create_worker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def image() -> AdapterInput:
    rng = np.random.default_rng(3)
    return AdapterInput(image=rng.integers(0, 256, (200, 260, 3), dtype=np.uint8))


@pytest.fixture
def runtime_options() -> Iterator[None]:
    saved = dict(RUNTIME_OPTIONS)
    yield
    RUNTIME_OPTIONS.update(saved)


def test_only_adapters_unused_for_the_idle_time_are_dropped() -> None:
    clock = Clock()
    cache = AdapterCache(4, clock=clock)
    cache.get("null", None)
    clock.now += 30
    cache.get("null", {"delay_ms": 1})
    clock.now += 30
    assert cache.drop_idle(45) == ["null"]  # used 60 s ago; the other 30 s ago
    assert len(cache) == 1
    cache.get("null", {"delay_ms": 1})  # used again: its idle time starts over
    clock.now += 40
    assert cache.drop_idle(45) == []
    clock.now += 10
    assert cache.drop_idle(45) == ["null"]
    assert len(cache) == 0


def test_an_unloaded_model_loads_again_on_demand_with_the_same_predictions() -> None:
    clock = Clock()
    cache = AdapterCache(2, clock=clock)
    first = cache.get("general-image-classifier", None)
    before = first.predict([image()])
    clock.now += 120
    assert cache.drop_idle(60) == ["general-image-classifier"]
    again = cache.get("general-image-classifier", None)
    assert again is not first
    assert again.predict([image()]) == before


async def test_the_unloader_empties_a_cache_nobody_uses() -> None:
    cache = AdapterCache(2)
    cache.get("null", None)
    unloader = asyncio.create_task(unload_idle_forever(0.05, cache))
    try:
        for _ in range(500):
            if len(cache) == 0:
                break
            await asyncio.sleep(0.02)
        assert len(cache) == 0
    finally:
        unloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await unloader


@pytest.mark.parametrize("arena", [True, False])
def test_a_shrinking_arena_predicts_what_a_growing_one_does(runtime_options: None, arena: bool) -> None:
    outputs = []
    for shrink in (False, True):
        configure_runtime(cpu_mem_arena=arena, arena_shrink=shrink)
        adapter = AdapterCache(1).get("general-object-detector", None)
        outputs.append(adapter.predict([image()]))
        with time_limit(60):  # the deadline's RunOptions get the shrink entry too
            outputs.append(adapter.predict([image()]))
        session = adapter._session  # type: ignore[attr-defined]
        assert session.shrink_arena is (arena and shrink)
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]


async def test_a_worker_unloads_models_idle_for_model_idle_unload_s(
    asgi_app: Starlette, settings: Settings
) -> None:
    adapter_cache.clear()
    get_adapter("null")
    worker = create_worker(settings.model_copy(update={"model_idle_unload_s": 0.1}), handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    try:
        job = await asgi_app.state.runtime.redis.enqueue_job("ping")
        assert await job.result(timeout=30, poll_delay=0.05) == "pong"  # started: the unloader runs
        for _ in range(500):
            if len(adapter_cache) == 0:
                break
            await asyncio.sleep(0.02)
        assert len(adapter_cache) == 0
        assert get_adapter("null").predict([AdapterInput(text="back")])  # loads again on demand
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()
        # The worker's startup bound the documents to a client of its own, which its shutdown
        # closed: bind them to the session's client again for the tests that follow.
        await init_beanie(
            database=asgi_app.state.runtime.mongo[settings.mongodb_db],
            document_models=DOCUMENT_MODELS,
            skip_indexes=True,
        )
