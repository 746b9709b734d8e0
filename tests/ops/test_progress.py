"""Progress while a batch runs, and subscriptions that complete after the final state.

Given one batch of 40 inputs (batch size 40), the worker announces progress every few inputs
(``progress_every_inputs``, or sooner when inputs are slow), not only at the batch's end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from app.core import pubsub
from app.settings import Settings
from app.tasks.engine import ChunkSizes
from tests.factories import Api, world
from tests.live.helpers import client
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import create_dataset, create_task, image_inputs, null_model

PROGRESS = """subscription($t: ID!, $c: Boolean!) { labelingTaskProgress(taskId: $t, completeOnFinal: $c) {
  status final snapshot metrics { labelingPercent } } }"""


async def _task(api: Api, n: int, **fields: Any) -> tuple[Any, dict[str, Any]]:
    w = await world(api)
    c = await api.concept(w.owner, w.app_id, "cat")
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, n)
    model = await null_model(api, w.owner, w.app_id, [{"concept": "cat", "confidence": 0.95}])
    task = await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=[c], **fields
    )
    return w, task


async def test_one_batch_of_40_inputs_announces_intermediate_progress(
    api: Api, settings: Settings, drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "task_batch_size", 40)
    monkeypatch.setattr(settings, "progress_every_inputs", 10)
    assert settings.redis_url
    listener = aioredis.from_url(settings.redis_url)
    channel = listener.pubsub()
    try:
        _, task = await _task(api, 40)
        await channel.subscribe(pubsub.task_channel(task["id"]))
        await drain()
        seen: list[dict[str, Any]] = []
        while True:
            message = await channel.get_message(timeout=1.0)
            if message is None:
                break
            if message["type"] == "message":
                seen.append(orjson.loads(message["data"]))
    finally:
        await channel.aclose()
        await listener.aclose()
    percents = [e["metrics"]["labelingPercent"] for e in seen]
    assert percents == sorted(percents), percents
    intermediate = {p for p in percents if 0 < p < 100}
    assert len(intermediate) >= 3, percents  # every 10 inputs at most: 40 inputs in 4+ steps
    assert seen[-1]["status"] == "DONE" and percents[-1] == 100.0


def test_chunks_cover_the_batch_never_exceed_n_and_follow_the_time_per_input() -> None:
    fresh = list(ChunkSizes(40, 10, 0.5))
    assert sum(fresh) == 40 and max(fresh) <= 10 and fresh[0] == 1  # the first one measures
    slow = list(ChunkSizes(40, 10, 0.5, per_input_s=2.0))  # an input takes longer than 0.5 s
    assert slow[0] == 1 and sum(slow) == 40
    fast = ChunkSizes(40, 10, 0.5, per_input_s=0.0001)
    assert next(fast) == 10  # measured before (an earlier batch of the run): no probe chunk
    assert list(ChunkSizes(0, 10, 0.5)) == []
    # no tail chunk of a few inputs: at 20 ms an input, a chunk is 25, and 31 left are one
    # chunk (25 would leave 6, less than half a chunk), not two
    assert list(ChunkSizes(31, 250, 0.5, per_input_s=0.02)) == [31]
    assert list(ChunkSizes(40, 250, 0.5, per_input_s=0.02)) == [25, 15]  # 15 is over half
    assert list(ChunkSizes(300, 250, 0.5, per_input_s=0.0001)) == [250, 50]  # never over ``every``


class _Clock:
    """A clock the test moves by hand (chunk sizing reads ``time.monotonic``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_chunk_sizes_leave_out_the_bookkeeping_that_costs_the_same_for_any_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr("app.tasks.engine.time.monotonic", clock)
    # given inputs that take 8 ms each, and bookkeeping of 600 ms per chunk (a busy machine)
    sizes = ChunkSizes(200, 50, 0.5)
    assert next(sizes) == 1  # the probe
    clock.now += 0.008
    sizes.writing()
    clock.now += 0.600
    # then the next chunk is sized from the inputs' own time: 0.5 s / 8 ms, capped at 50
    assert next(sizes) == 50
    # and a chunk whose inputs never reached the writes (all failed early) counts whole
    clock.now += 1.0
    assert next(sizes) == 25  # (0.008 + 1.0) s over 51 inputs: ~20 ms each


def test_chunk_sizes_leave_out_the_wait_for_another_batchs_inference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr("app.tasks.engine.time.monotonic", clock)
    # two batches of a task share a worker's inference: this one waits 400 ms for the other's
    sizes = ChunkSizes(200, 50, 0.5)
    assert next(sizes) == 1
    clock.now += 0.400
    sizes.waited(0.400)
    clock.now += 0.008  # then its input takes 8 ms
    sizes.writing()
    assert next(sizes) == 50  # sized from the 8 ms (0.5 s / 8 ms, capped), not 408 ms (1 input)
    clock.now += 0.300
    sizes.waited(0.300)
    clock.now += 0.400  # 50 inputs of 8 ms
    sizes.writing()
    assert next(sizes) == 50
    clock.now += 1.0  # the wait is forgotten once a chunk is over: this one counts whole
    assert next(sizes) == 35  # 0.5 s / ((0.408 + 1.0) s / 101 inputs)


async def test_a_subscription_with_complete_on_final_completes_after_the_final_state(
    api: Api, asgi_app: Starlette, ws_url: str, drain: Drain
) -> None:
    w, task = await _task(api, 6)
    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"], c=True)
        first = await ws.data("p", "labelingTaskProgress")
        assert first["snapshot"] and not first["final"]
        runner = asyncio.create_task(drain())
        seen = [first]
        while True:
            message = await ws.next("p", wait=60)
            if message["type"] == "complete":
                break
            assert message["type"] == "next", message
            seen.append(message["payload"]["data"]["labelingTaskProgress"])
        await runner
        assert seen[-1]["final"] and seen[-1]["status"] == "DONE"
        assert all(not s["final"] for s in seen[:-1])

        # a client subscribing to a finished task gets the final state, then completion
        await ws.subscribe("q", PROGRESS, t=task["id"], c=True)
        snap = await ws.data("q", "labelingTaskProgress")
        assert snap["snapshot"] and snap["final"] and snap["status"] == "DONE"
        assert (await ws.next("q"))["type"] == "complete"

        # without the option, the stream stays open after the final state
        await ws.subscribe("r", PROGRESS, t=task["id"], c=False)
        assert (await ws.data("r", "labelingTaskProgress"))["final"]
        with pytest.raises(TimeoutError):
            await ws.next("r", wait=0.5)
