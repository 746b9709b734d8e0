"""Live updates across real processes: two API processes (uvicorn), an arq worker process, and a
Redis that is restarted under connected subscribers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.embedded import EmbeddedRedis
from app.settings import Settings
from app.tasks.models import LabelingTask
from tests.factories import Api, Caller, world
from tests.live.helpers import LEGACY, PROGRESS, TRANSPORT, Client, api_processes, client, env_for, run_worker
from tests.tasks_engine.helpers import create_dataset, create_task, image_inputs, null_model

pytestmark = pytest.mark.slow

START = """mutation($id: ID!) { startLabelingTask(id: $id) { __typename ... on Error { code message } } }"""


async def _task(api: Api, owner: Caller, app_id: str, n: int, **fields: Any) -> dict[str, Any]:
    c = await api.concept(owner, app_id, "cat")
    ds = await create_dataset(api, owner, app_id)
    await image_inputs(api, owner, app_id, ds, n)
    model = await null_model(api, owner, app_id, [{"concept": "cat", "confidence": 0.95}], delay_ms=150)
    return await create_task(api, owner, appId=app_id, datasetId=ds, modelId=model, conceptIds=[c], **fields)


async def _until_final(ws: Client, op_id: str = "p") -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while not seen or not seen[-1]["final"]:
        seen.append(await ws.data(op_id, "labelingTaskProgress", wait=60))
    return seen


async def _matches_database(progress: dict[str, Any]) -> None:
    doc = await LabelingTask.get(progress["taskId"])
    assert doc is not None
    assert progress["status"] == doc.status.value
    assert progress["metrics"]["processed"] == doc.metrics.inputs_processed + doc.metrics.inputs_failed
    assert progress["metrics"]["inputsTotal"] == doc.metrics.inputs_total


def _env(settings: Settings, redis_url: str, **extra: str) -> dict[str, str]:
    assert settings.mongodb_url
    return env_for(settings.mongodb_url, redis_url, settings.mongodb_db, settings.data_dir, **extra)


async def test_subscribers_on_two_api_processes_follow_a_task_run_by_a_worker_process(
    api: Api, asgi_app: Starlette, settings: Settings, tmp_path: Path
) -> None:
    assert settings.redis_url
    await asgi_app.state.runtime.redis.flushdb()
    env = _env(settings, settings.redis_url, LABELSTREAM_WORKER_MAX_JOBS="1")
    w = await world(api)
    task = await _task(api, w.owner, w.app_id, n=8)  # QUEUED, 4 jobs of 2 inputs in Redis
    with api_processes(2, env, tmp_path) as (one, two):
        async with (
            client(one.ws_url, TRANSPORT, key=w.owner.key) as a,
            client(two.ws_url, LEGACY, key=w.owner.key) as b,
        ):
            for ws in (a, b):
                await ws.subscribe("p", PROGRESS, t=task["id"])
                snap = await ws.data("p", "labelingTaskProgress")
                assert snap["snapshot"] and snap["status"] == "QUEUED"
            worker = asyncio.create_task(asyncio.to_thread(run_worker, env, tmp_path / "worker.log"))
            seen_a, seen_b = await asyncio.gather(_until_final(a), _until_final(b))
            await worker
    for seen in (seen_a, seen_b):
        percents = [m["metrics"]["labelingPercent"] for m in seen]
        assert percents == sorted(percents)
        assert len(set(percents)) >= 2 and percents[-1] == 100.0, percents
        assert seen[-1]["status"] == "DONE"
        await _matches_database(seen[-1])


async def test_server_pings_and_a_small_subscription_cap(
    api: Api, asgi_app: Starlette, settings: Settings, tmp_path: Path
) -> None:
    assert settings.redis_url
    env = _env(
        settings,
        settings.redis_url,
        LABELSTREAM_WS_KEEP_ALIVE_INTERVAL_S="0.2",
        LABELSTREAM_MAX_SUBSCRIPTIONS_PER_CONNECTION="2",
    )
    w = await world(api)
    with api_processes(1, env, tmp_path) as (one,):
        for protocol in (TRANSPORT, LEGACY):
            async with client(one.ws_url, protocol, key=w.owner.key) as ws:
                await asyncio.sleep(0.7)
                for op_id in ("a", "b", "c"):
                    await ws.subscribe(
                        op_id, "subscription($a: ID!) { labelingTasks(appId: $a) { snapshot } }", a=w.app_id
                    )
                assert (await ws.data("a", "labelingTasks"))["snapshot"]
                assert (await ws.data("b", "labelingTasks"))["snapshot"]
                refused = await ws.next("c")
                errors = refused["payload"] if protocol == TRANSPORT else [refused["payload"]]
                assert refused["type"] == "error" and errors[0]["extensions"]["code"] == "TOO_MANY"
                assert ws.pings >= 2, "the server keeps the connection alive"


async def test_subscribers_survive_a_redis_restart_and_end_in_the_database_state(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", persist=False)
    redis.start()
    try:
        env = _env(settings, redis.url, LABELSTREAM_WORKER_MAX_JOBS="1")
        w = await world(api)
        task = await _task(api, w.owner, w.app_id, n=6, start=False)
        with api_processes(1, env, tmp_path) as (one,):
            async with (
                client(one.ws_url, TRANSPORT, key=w.owner.key) as a,
                client(one.ws_url, LEGACY, key=w.owner.key) as b,
            ):
                for ws in (a, b):
                    await ws.subscribe("p", PROGRESS, t=task["id"])
                    assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
                redis.kill()
                await asyncio.sleep(0.5)
                redis.start()  # same port
                for ws in (a, b):  # the hub re-subscribed: everyone re-reads MongoDB
                    again = await ws.data("p", "labelingTaskProgress", wait=30)
                    assert again["snapshot"] and again["status"] == "QUEUED"
                async with httpx.AsyncClient(base_url=one.http_url, timeout=30) as http:
                    remote = Api(http)
                    for _ in range(5):  # the API's job pool may need one call to reconnect
                        response = await remote.raw(START, {"id": task["id"]}, key=w.owner.key)
                        if response.status_code == 200 and "errors" not in response.json():
                            break
                        await asyncio.sleep(0.5)
                    assert response.json()["data"]["startLabelingTask"]["__typename"] != "ValidationError"
                worker = asyncio.create_task(asyncio.to_thread(run_worker, env, tmp_path / "worker.log"))
                seen_a, seen_b = await asyncio.gather(_until_final(a), _until_final(b))
                await worker
        for seen in (seen_a, seen_b):
            assert seen[-1]["status"] == "DONE" and seen[-1]["metrics"]["labelingPercent"] == 100.0
            await _matches_database(seen[-1])
    finally:
        redis.stop()
