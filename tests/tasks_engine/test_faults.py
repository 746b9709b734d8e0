"""Faults while a task runs (issue 11): dead workers, a lost Redis, a restarted MongoDB-wire
server, a start while Redis is down, and priority as an order.

Each fault run ends DONE with exactly the annotations of an undisturbed run of the same model
over the same inputs. Workers are real ``labelstream worker`` processes with short leases, on a
Redis of their own: they learn about the work only from MongoDB (the reconciliation), never
from the wake-ups the API enqueued, which is the durability under test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.annotations.models import Annotation
from app.embedded import EmbeddedRedis
from app.settings import Settings
from tests.factories import Api, Caller, world
from tests.live.helpers import api_processes, env_for
from tests.servers import Servers, restartable_port
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    assert_metrics_match_recount,
    create_dataset,
    create_task,
    get_task,
    image_inputs,
    null_model,
)

pytestmark = pytest.mark.slow

FAST = {
    "LABELSTREAM_BATCH_LEASE_S": "1",
    "LABELSTREAM_RECONCILE_INTERVAL_S": "0.3",
    "LABELSTREAM_WORKER_MAX_JOBS": "1",
    "LABELSTREAM_WORKER_POLL_DELAY_S": "0.05",
}
PREDICTIONS = [{"concept": "cat", "confidence": 0.95}, {"concept": "dog", "confidence": 0.7}]
START = """mutation($id: ID!) { startLabelingTask(id: $id) { __typename ... on Error { code message } } }"""


class Worker:
    """``python -m app.cli worker`` (not burst): runs until killed, like a deployed worker."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def labels(anns: list[Annotation]) -> set[tuple[str, str, str, float]]:
    return {(a.input_id, a.concept_id, a.status.value, round(a.confidence, 6)) for a in anns}


class Scene:
    """A dataset, a slow null model, and the annotations of an undisturbed run over it."""

    def __init__(
        self, api: Api, owner: Caller, app_id: str, common: dict[str, Any], expected: set[Any]
    ) -> None:
        self.api, self.owner, self.app_id, self.common, self.expected = api, owner, app_id, common, expected

    async def task(self, **fields: Any) -> str:
        made = await create_task(self.api, self.owner, start=False, **self.common, **fields)
        task_id: str = made["id"]
        return task_id

    async def start(self, task_id: str) -> None:
        result = await self.api.gql(self.owner, START, id=task_id)
        assert result["startLabelingTask"]["__typename"] == "TaskRunSuccess", result

    async def processed(self, task_id: str) -> int:
        value: int = (await get_task(self.api, self.owner, task_id))["metrics"]["processed"]
        return value

    async def status(self, task_id: str) -> str:
        value: str = (await get_task(self.api, self.owner, task_id))["status"]
        return value

    async def assert_like_undisturbed(self, task_id: str) -> None:
        await until(lambda: self._done(task_id), 120, "the task to finish")
        assert labels(await Annotation.find({"task_id": task_id}).to_list()) == self.expected
        await assert_metrics_match_recount(task_id)

    async def _done(self, task_id: str) -> bool:
        try:
            return await self.status(task_id) == "DONE"
        except AssertionError as exc:  # the API answers UNAVAILABLE while MongoDB is away
            if "UNAVAILABLE" in str(exc):
                return False
            raise


async def scene(api: Api, drain: Drain, n: int = 12, delay_ms: int = 120) -> Scene:
    w = await world(api)
    concepts = {c: await api.concept(w.owner, w.app_id, c) for c in ("cat", "dog")}
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, n)
    model = await null_model(api, w.owner, w.app_id, PREDICTIONS, delay_ms=delay_ms)
    common = {"appId": w.app_id, "datasetId": ds, "modelId": model, "conceptIds": list(concepts.values())}
    reference = await create_task(api, w.owner, **common)
    await drain()
    ref_id = reference["id"]
    assert (await get_task(api, w.owner, ref_id))["status"] == "DONE"
    expected = labels(await Annotation.find({"task_id": ref_id}).to_list())
    assert len(expected) == 2 * n
    return Scene(api, w.owner, w.app_id, common, expected)


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    redis = EmbeddedRedis(tmp_path / "redis", persist=False, fixed_port=restartable_port())
    redis.start()
    yield redis
    redis.stop()


def worker_env(servers: Servers, settings: Settings, redis: EmbeddedRedis, tmp: Path) -> dict[str, str]:
    """The session's database and blob folder (the images the API stored), a Redis of its own."""
    env = env_for(servers.mongodb_url, redis.url, settings.mongodb_db, settings.data_dir, **FAST)
    env["LABELSTREAM_BLOB_DIR"] = str(settings.resolved_blob_dir)
    return env


async def test_a_worker_killed_three_times_loses_nothing(
    api: Api, drain: Drain, servers: Servers, settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    s = await scene(api, drain, n=16)  # four batches of four
    task = await s.task()
    await s.start(task)
    env = worker_env(servers, settings, own_redis, tmp_path)
    worker = Worker(env, tmp_path / "worker.log").start()
    seen = 0
    try:
        for _ in range(3):  # mid-task: after each of the first three batches
            await until(lambda seen=seen: _more_than(s, task, seen), 90, "progress before a kill")  # type: ignore[misc]
            seen = await s.processed(task)
            worker.kill()
            worker = Worker(env, tmp_path / "worker.log").start()
        await s.assert_like_undisturbed(task)
    finally:
        worker.stop()


async def _more_than(s: Scene, task: str, n: int) -> bool:
    return await s.processed(task) > n


async def test_redis_killed_with_its_data_loses_nothing(
    api: Api, drain: Drain, servers: Servers, settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    s = await scene(api, drain)
    task = await s.task()
    await s.start(task)
    worker = Worker(worker_env(servers, settings, own_redis, tmp_path), tmp_path / "worker.log").start()
    try:
        await until(lambda: _more_than(s, task, 1), 90, "progress before Redis dies")
        own_redis.kill()  # not persisted: it comes back empty
        await asyncio.sleep(0.5)
        own_redis.start()
        await s.assert_like_undisturbed(task)
    finally:
        worker.stop()


async def test_the_mongodb_server_killed_and_restarted_loses_nothing(
    api: Api, drain: Drain, servers: Servers, settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    if servers.mongo is None:
        pytest.skip("the tests do not own this engine's server process")
    s = await scene(api, drain)
    task = await s.task()
    await s.start(task)
    worker = Worker(worker_env(servers, settings, own_redis, tmp_path), tmp_path / "worker.log").start()
    try:
        await until(lambda: _more_than(s, task, 1), 90, "progress before MongoDB dies")
        servers.mongo.kill()
        await asyncio.sleep(1.0)
        servers.mongo.start()
        await s.assert_like_undisturbed(task)
    finally:
        worker.stop()


async def test_a_start_while_redis_is_down_runs_once_redis_is_back(
    api: Api, drain: Drain, servers: Servers, settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    s = await scene(api, drain, n=6, delay_ms=0)
    task = await s.task()
    env = worker_env(servers, settings, own_redis, tmp_path)
    with api_processes(1, env, tmp_path) as (one,):
        own_redis.kill()
        async with httpx.AsyncClient(base_url=one.http_url, timeout=60) as http:
            answer = await Api(http).raw(START, {"id": task}, key=s.owner.key)
        assert answer.status_code == 200
        assert answer.json()["data"]["startLabelingTask"]["__typename"] == "TaskRunSuccess", answer.json()
    assert await s.status(task) == "QUEUED"  # stored, waiting for a worker
    own_redis.start()
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        await s.assert_like_undisturbed(task)
    finally:
        worker.stop()


async def test_raising_a_queued_low_task_to_high_runs_it_before_the_other_low_tasks(
    api: Api, drain: Drain
) -> None:
    s = await scene(api, drain, n=4, delay_ms=0)
    tasks = [await s.task(priority="LOW", name=f"low {k}") for k in range(3)]
    for task in tasks:
        await s.start(task)
    raise_ = """mutation($i: UpdateLabelingTaskInput!) { updateLabelingTask(input: $i) { __typename } }"""
    await s.api.gql(s.owner, raise_, i={"id": tasks[2], "priority": "HIGH"})
    await drain(max_burst_jobs=1, max_jobs=1)  # one batch (each task has one): the raised task's
    statuses = [await s.status(t) for t in tasks]
    assert statuses[2] == "DONE" and statuses[:2] != ["DONE", "DONE"], statuses
    assert await s.processed(tasks[0]) + await s.processed(tasks[1]) == 0
    await drain()
    assert [await s.status(t) for t in tasks] == ["DONE"] * 3


async def test_runs_of_one_priority_take_turns_so_a_big_task_cannot_starve_another_apps(
    api: Api, drain: Drain
) -> None:
    big = await scene(api, drain, n=12, delay_ms=0)  # three batches of four
    small = await scene(api, drain, n=4, delay_ms=0)  # another app: one batch
    big_task = await big.task()
    await big.start(big_task)
    small_task = await small.task()
    await small.start(small_task)  # after all of the big task's batches
    # two batches, one job each: the big task's first, then the small one's (its turn comes
    # before the big task's second batch, although that was queued earlier)
    await drain(max_burst_jobs=1, max_jobs=1)
    await drain(max_burst_jobs=1, max_jobs=1)
    assert await small.status(small_task) == "DONE"
    assert await big.processed(big_task) == 4
    await drain()
    assert await big.status(big_task) == "DONE"
