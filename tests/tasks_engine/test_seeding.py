"""Background seeding (issue 11, point 1): a start over more than ``task_seed_sync_limit``
inputs returns at once and the workers store the run's work chunk by chunk.

Here the limit is 5 inputs and a chunk 8 (batches hold 4), so a 20-input dataset takes three
chunks: 8, 8, 4. Claims go by priority, then rank: the seed unit's rank is the number of
chunks it has done, so with one job at a time the order is deterministic: chunk 1, batch 1
(rank 0), chunk 2 (rank 1, older than batch 2), batch 2, ...
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from app.annotations.models import Annotation
from app.embedded import EmbeddedRedis
from app.settings import Settings
from app.tasks import scheduler, seeding
from app.tasks.models import BatchKind, BatchState, LabelingTask, TaskBatch, TaskInput
from tests.factories import Api, world
from tests.live.conftest import ws_url  # noqa: F401 - the fixture, reused here
from tests.live.helpers import client
from tests.servers import Servers
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    THREE,
    assert_metrics_match_recount,
    create_dataset,
    image_inputs,
    null_model,
)
from tests.tasks_engine.test_faults import Worker, labels, own_redis, scene, until, worker_env  # noqa: F401

N = 20
FIELDS = "id status seeding run metrics { inputsTotal inputsSeeded processed failed approved }"
CREATE = (
    "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { ... on LabelingTaskSuccess { labelingTask { "
    + FIELDS
    + " } } ... on Error { code message } } }"
)
GET = "query($id: ID!) { labelingTask(id: $id) { " + FIELDS + " } }"
PROGRESS = """subscription($t: ID!) { labelingTaskProgress(taskId: $t) {
  status seeding final snapshot metrics { inputsTotal inputsSeeded processed } } }"""


@pytest.fixture
def small_seed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "task_seed_sync_limit", 5)
    monkeypatch.setattr(settings, "task_seed_chunk", 8)


class Big:
    def __init__(self, api: Api, w: Any, common: dict[str, Any]) -> None:
        self.api, self.w, self.common = api, w, common

    async def create(self, **fields: Any) -> dict[str, Any]:
        data = await self.api.gql(self.w.owner, CREATE, i={"name": "Big"} | self.common | fields)
        task: dict[str, Any] = data["createLabelingTask"]["labelingTask"]
        return task

    async def get(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = (await self.api.gql(self.w.owner, GET, id=task_id))["labelingTask"]
        return task


async def big(api: Api, n: int = N, delay_ms: float = 0) -> Big:
    w = await world(api)
    concepts = [await api.concept(w.owner, w.app_id, c) for c in ("cat", "dog", "bird")]
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, n)
    model = await null_model(api, w.owner, w.app_id, THREE, delay_ms=delay_ms)
    return Big(api, w, {"appId": w.app_id, "datasetId": ds, "modelId": model, "conceptIds": concepts})


async def _units(task_id: str, *states: BatchState) -> list[TaskBatch]:
    return await TaskBatch.find({"task_id": task_id, "state": {"$in": [s.value for s in states]}}).to_list()


async def _run(asgi_app: Starlette, unit: TaskBatch) -> dict[str, Any] | None:
    """What a worker does with the claimed unit; returns how it put the unit back (None: DONE)."""
    result: list[dict[str, Any] | None] = []

    async def run(u: TaskBatch) -> dict[str, Any] | None:
        result.append(await seeding.seed_chunk(asgi_app.state.runtime, u))
        return result[-1]

    assert await scheduler.run_leased(unit, "worker-under-test", 30, run, ())
    done = await TaskBatch.get(unit.id)
    assert done is not None and (done.state is BatchState.DONE) == (result[0] is None)
    return result[0]


async def test_a_start_over_the_limit_returns_before_seeding_and_labeling_starts_before_it_ends(
    api: Api, drain: Drain, small_seed: None
) -> None:
    b = await big(api)
    task = await b.create()
    # stored, nothing seeded yet: the request did not touch the inputs
    assert task["status"] == "QUEUED" and task["seeding"] is True
    assert task["metrics"] == {
        "inputsTotal": N,
        "inputsSeeded": 0,
        "processed": 0,
        "failed": 0,
        "approved": 0,
    }
    assert await TaskInput.find({"task_id": task["id"]}).count() == 0
    (unit,) = await _units(task["id"], BatchState.PENDING)
    assert unit.kind is BatchKind.SEED

    await drain(max_burst_jobs=1, max_jobs=1)  # the first chunk
    await drain(max_burst_jobs=1, max_jobs=1)  # then its first batch, before the next chunk
    mid = await b.get(task["id"])
    assert mid["status"] == "IN_PROGRESS" and mid["seeding"] is True
    assert mid["metrics"]["inputsSeeded"] == 8 and mid["metrics"]["processed"] == 4

    await drain()
    done = await b.get(task["id"])
    assert done["status"] == "DONE" and done["seeding"] is False
    assert done["metrics"] == {
        "inputsTotal": N,
        "inputsSeeded": N,
        "processed": N,
        "failed": 0,
        "approved": N,
    }
    assert await Annotation.find({"task_id": task["id"]}).count() == 2 * N  # cat approved, dog to review
    assert await TaskInput.find({"task_id": task["id"]}).count() == N
    assert not await _units(task["id"], BatchState.PENDING, BatchState.LEASED)
    await assert_metrics_match_recount(task["id"])


async def test_the_progress_subscription_shows_seeding_then_the_end(
    api: Api,
    drain: Drain,
    small_seed: None,
    ws_url: str,  # noqa: F811
) -> None:
    b = await big(api, delay_ms=100)  # 0.4 s a batch: each seeding state lasts a batch or more
    task = await b.create(start=False)
    async with client(ws_url, key=b.w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"] is True
        started = await b.api.gql(
            b.w.owner, "mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }", id=task["id"]
        )
        assert started["startLabelingTask"]["__typename"] == "TaskRunSuccess"
        runner = asyncio.create_task(drain(max_jobs=1))
        seen: list[dict[str, Any]] = []
        while not seen or not seen[-1]["final"]:
            seen.append(await ws.data("p", "labelingTaskProgress"))
        await runner
    seeded = [m["metrics"]["inputsSeeded"] for m in seen]
    assert seeded == sorted(seeded) and seeded[-1] == N
    assert any(m["seeding"] and 0 < m["metrics"]["inputsSeeded"] < N for m in seen), seen
    assert seen[-1]["status"] == "DONE" and seen[-1]["seeding"] is False
    assert all(m["metrics"]["inputsTotal"] == N for m in seen)


async def test_cancelling_while_seeding_stops_it_and_drops_the_rest(
    api: Api, drain: Drain, small_seed: None, asgi_app: Starlette
) -> None:
    b = await big(api)
    task = await b.create()
    await drain(max_burst_jobs=1, max_jobs=1)  # one chunk seeded, the unit waits for the next
    await drain(max_burst_jobs=1, max_jobs=1)  # and the chunk's first batch
    # a worker holds the unit, about to seed its next chunk, when the cancel comes
    unit = await scheduler.claim("worker-under-test", 30)
    assert unit is not None and unit.kind is BatchKind.SEED
    cancel = "mutation($id: ID!) { cancelLabelingTask(id: $id) { __typename ... on TaskRunSuccess { labelingTask { status seeding } } } }"
    answer = await api.gql(b.w.owner, cancel, id=task["id"])
    assert answer["cancelLabelingTask"]["labelingTask"] == {"status": "CANCELLED", "seeding": False}
    assert await _run(asgi_app, unit) is None  # it stops there

    await drain()
    after = await b.get(task["id"])
    assert after["status"] == "CANCELLED" and after["seeding"] is False
    assert after["metrics"]["inputsSeeded"] == 8 and after["metrics"]["processed"] == 4
    assert await TaskInput.find({"task_id": task["id"]}).count() == 8  # nothing after the cancel
    assert not await _units(task["id"], BatchState.PENDING, BatchState.LEASED)
    assert await Annotation.find({"task_id": task["id"]}).count() == 2 * 4  # the batch before


async def test_deleting_while_seeding_stops_it_and_leaves_nothing_of_the_task(
    api: Api, drain: Drain, small_seed: None, asgi_app: Starlette
) -> None:
    b = await big(api)
    task = await b.create()
    await drain(max_burst_jobs=1, max_jobs=1)
    await drain(max_burst_jobs=1, max_jobs=1)
    unit = await scheduler.claim("worker-under-test", 30)
    assert unit is not None and unit.kind is BatchKind.SEED
    delete = "mutation($id: ID!) { deleteLabelingTask(id: $id, deleteAnnotations: true) { __typename } }"
    assert (await api.gql(b.w.owner, delete, id=task["id"]))["deleteLabelingTask"][
        "__typename"
    ] == "DeleteSuccess"
    assert await _run(asgi_app, unit) is None

    await drain()
    assert await LabelingTask.get(task["id"]) is None
    assert await TaskInput.find({"task_id": task["id"]}).count() == 0
    assert not await _units(task["id"], BatchState.PENDING, BatchState.LEASED)
    assert await Annotation.find({"task_id": task["id"]}).count() == 0


async def test_a_high_task_is_seeded_before_a_low_one_and_raising_priority_moves_the_seed(
    api: Api, drain: Drain, small_seed: None
) -> None:
    low, high = await big(api), await big(api)
    low_task = await low.create(priority="LOW")
    high_task = await high.create(priority="HIGH")
    await drain(max_burst_jobs=1, max_jobs=1)
    assert (await high.get(high_task["id"]))["metrics"]["inputsSeeded"] == 8
    assert (await low.get(low_task["id"]))["metrics"]["inputsSeeded"] == 0

    other = await low.create(priority="LOW", name="other")
    update = "mutation($i: UpdateLabelingTaskInput!) { updateLabelingTask(input: $i) { __typename } }"
    await api.gql(low.w.owner, update, i={"id": other["id"], "priority": "HIGH"})
    (unit,) = await _units(other["id"], BatchState.PENDING)
    assert unit.kind is BatchKind.SEED and unit.priority == 2

    await drain()
    for t, owner in ((low_task, low), (high_task, high), (other, low)):
        done = await owner.get(t["id"])
        assert done["status"] == "DONE" and done["metrics"]["processed"] == N


async def test_a_task_labeled_by_people_is_seeded_into_the_labeling_queue(
    api: Api, drain: Drain, small_seed: None
) -> None:
    b = await big(api)
    task = await b.create(autoAnnotation=False)
    assert task["status"] == "IN_PROGRESS" and task["seeding"] is True
    await drain()
    after = await b.get(task["id"])
    assert after["status"] == "IN_PROGRESS" and after["seeding"] is False
    assert after["metrics"]["inputsSeeded"] == N
    assert await TaskInput.find({"task_id": task["id"], "state": "PENDING"}).count() == N


@pytest.mark.slow
async def test_a_worker_killed_while_seeding_resumes_from_the_cursor_and_loses_nothing(
    api: Api,
    drain: Drain,
    servers: Servers,
    settings: Settings,
    own_redis: EmbeddedRedis,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 24
    s = await scene(api, drain, n=n)  # the undisturbed run: seeded in the request
    monkeypatch.setattr(settings, "task_seed_sync_limit", 5)  # from here on, in the background
    task = await s.task()
    await s.start(task)
    assert (await LabelingTask.get(task)).seeding  # type: ignore[union-attr]
    env = worker_env(servers, settings, own_redis, tmp_path) | {"LABELSTREAM_TASK_SEED_CHUNK": "4"}
    worker = Worker(env, tmp_path / "worker.log").start()
    kills, seeded = 0, 0
    try:
        while kills < 3:

            async def further(seen: int = seeded) -> bool:
                doc = await LabelingTask.get(task)
                return doc is not None and (not doc.seeding or doc.metrics.inputs_seeded > seen)

            await until(further, 90, "seeding progress before a kill")
            doc = await LabelingTask.get(task)
            assert doc is not None
            if not doc.seeding:
                break
            seeded = doc.metrics.inputs_seeded
            worker.kill()  # mid-seed: between two chunks or in the middle of one
            kills += 1
            worker = Worker(env, tmp_path / "worker.log").start()
        assert kills >= 1
        await s.assert_like_undisturbed(task)
    finally:
        worker.stop()
    assert await TaskInput.find({"task_id": task}).count() == n
    assert await Annotation.find({"task_id": task}).count() == len(s.expected)
    done = await LabelingTask.get(task)
    assert done is not None and not done.seeding
    assert done.metrics.inputs_seeded == done.metrics.inputs_total == n


async def test_a_seeding_whose_claims_keep_failing_leaves_the_task_failed_not_stuck(
    api: Api, drain: Drain, small_seed: None, settings: Settings
) -> None:
    b = await big(api)
    task = await b.create()
    # as if workers had died on it batch_max_attempts times (each claim counts one attempt)
    await TaskBatch.get_pymongo_collection().update_one(
        {"task_id": task["id"], "kind": BatchKind.SEED.value},
        {"$set": {"attempts": settings.batch_max_attempts}},
    )
    await drain()
    after = await b.get(task["id"])
    assert after["status"] == "FAILED" and after["seeding"] is False
    assert not await _units(task["id"], BatchState.PENDING, BatchState.LEASED)
    restart = "mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }"
    assert (await api.gql(b.w.owner, restart, id=task["id"]))["startLabelingTask"][
        "__typename"
    ] == "TaskRunSuccess"
    await drain()
    assert (await b.get(task["id"]))["status"] == "DONE"
