"""Embedding work waits in Redis for one job per time slot, and lets labeling-task batches go
first; the search still catches up."""

from __future__ import annotations

import math
import time

from starlette.applications import Starlette

from app.core.documents import utcnow
from app.core.queue import QUEUE_NAME
from app.search import pending
from app.search.models import Embedding, RefKind
from app.tasks.models import BatchState, TaskBatch
from tests.factories import Api, world
from tests.search.helpers import CAT, CAT_FLIPPED, add_images, annotate, box
from tests.tasks_engine.conftest import Drain


async def embedded(app_id: str) -> set[tuple[RefKind, str]]:
    docs = await Embedding.find({"app_id": app_id, "deleted": False}).to_list()
    return {(d.kind, d.ref_id) for d in docs}


async def test_change_sets_within_a_slot_share_one_embedding_job(
    api: Api, drain: Drain, asgi_app: Starlette
) -> None:
    w = await world(api)
    cat_c = await api.concept(w.owner, w.app_id, "cat")
    inputs = await add_images(api, w.owner, w.app_id, [CAT, CAT_FLIPPED])
    redis = asgi_app.state.runtime.redis
    started = time.time()
    made = []
    for k in range(3):  # three mutations, three change sets
        made += await annotate(
            api,
            w.owner,
            w.app_id,
            [{"inputId": inputs[k % 2], "conceptId": cat_c, "box": box(0.1, 0.1 * k, 0.9, 0.5 + 0.1 * k)}],
        )
    slots = math.floor(time.time() / pending.SLOT_S) - math.floor(started / pending.SLOT_S) + 1
    assert 1 <= await redis.zcard(QUEUE_NAME) <= slots
    await drain()
    assert {(RefKind.ANNOTATION, a) for a in made} <= await embedded(w.app_id)
    assert not await redis.scard(pending.ANNOTATIONS) and not await redis.scard(pending.INPUTS)


async def test_embedding_waits_while_a_task_batch_runs_then_catches_up(
    api: Api, drain: Drain, asgi_app: Starlette
) -> None:
    w = await world(api)
    cat_c = await api.concept(w.owner, w.app_id, "cat")
    inputs = await add_images(api, w.owner, w.app_id, [CAT])
    stamp = utcnow()
    batch = {
        "_id": "some-task:1:inputs:0", "app_id": w.app_id, "task_id": "some-task", "run": 1, "kind": "INPUTS",
        "input_ids": [], "retry": False, "priority": 1, "rank": 0, "seq": "0", "state": BatchState.LEASED.value,
        "available_at": 0.0, "lease_owner": "a-worker", "lease_until": time.time() + 3600, "attempts": 1,
        "cursor": "", "seeded": 0, "chunks": 0, "created_at": stamp, "updated_at": stamp,
    }  # fmt: skip
    await TaskBatch.get_pymongo_collection().insert_one(batch)
    made = await annotate(
        api,
        w.owner,
        w.app_id,
        [{"inputId": inputs[0], "conceptId": cat_c, "box": box(0.1, 0.35, 0.95, 0.95)}],
    )
    await drain(max_burst_jobs=1)  # the embedding job looks, and puts itself back
    assert await embedded(w.app_id) == set()
    redis = asgi_app.state.runtime.redis
    assert await redis.scard(pending.ANNOTATIONS) == 1 and await redis.zcard(QUEUE_NAME) == 1

    await TaskBatch.get_pymongo_collection().update_one(
        {"_id": batch["_id"]}, {"$set": {"state": BatchState.DONE.value}}
    )
    await drain()
    assert await embedded(w.app_id) == {(RefKind.ANNOTATION, made[0]), (RefKind.INPUT, inputs[0])}
    assert await redis.get(pending.SINCE) is None


async def test_ids_that_waited_too_long_are_embedded_despite_busy_tasks(
    api: Api, drain: Drain, asgi_app: Starlette
) -> None:
    w = await world(api)
    cat_c = await api.concept(w.owner, w.app_id, "cat")
    inputs = await add_images(api, w.owner, w.app_id, [CAT])
    stamp = utcnow()
    await TaskBatch.get_pymongo_collection().insert_one(
        {
            "_id": "busy:1:inputs:0",
            "app_id": w.app_id,
            "task_id": "busy",
            "run": 1,
            "kind": "INPUTS",
            "input_ids": [],
            "retry": False,
            "priority": 1,
            "rank": 0,
            "seq": "0",
            "state": BatchState.LEASED.value,
            "available_at": 0.0,
            "lease_owner": "someone",
            "lease_until": time.time() + 3600,
            "attempts": 1,
            "cursor": "",
            "seeded": 0,
            "chunks": 0,
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    made = await annotate(
        api,
        w.owner,
        w.app_id,
        [{"inputId": inputs[0], "conceptId": cat_c, "box": box(0.1, 0.35, 0.95, 0.95)}],
    )
    redis = asgi_app.state.runtime.redis
    await redis.set(pending.SINCE, repr(time.time() - pending.MAX_WAIT_S - 1))  # added long ago
    await drain()
    assert (RefKind.ANNOTATION, made[0]) in await embedded(w.app_id)


async def test_a_waiting_job_wakes_a_claimable_batch_whose_wake_up_was_lost(
    api: Api, asgi_app: Starlette
) -> None:
    """The scheduler counts queued jobs as wake-ups: a waiting embedding job must not stand in
    for the wake-up of a batch nobody runs."""
    w = await world(api)
    runtime = asgi_app.state.runtime
    await runtime.redis.flushdb()
    stamp = utcnow()
    await TaskBatch.get_pymongo_collection().insert_one(
        {
            "_id": "lost:1:inputs:0",
            "app_id": w.app_id,
            "task_id": "lost",
            "run": 1,
            "kind": "INPUTS",
            "input_ids": [],
            "retry": False,
            "priority": 1,
            "rank": 0,
            "seq": "0",
            "state": BatchState.PENDING.value,
            "available_at": time.time(),
            "lease_owner": None,
            "lease_until": 0.0,
            "attempts": 0,
            "cursor": "",
            "seeded": 0,
            "chunks": 0,
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    await pending.add(runtime.redis, ["some-annotation"], [])
    assert await pending.should_wait(runtime)
    queued = [j.function for j in await runtime.redis.queued_jobs()]
    assert sorted(queued) == ["process_next", "search_embed", "search_embed"]


async def test_only_annotations_with_a_region_wait_for_an_embedding(
    api: Api, drain: Drain, asgi_app: Starlette
) -> None:
    """A whole-image annotation has no crop: its writer says so, and no job reads it back."""
    w = await world(api)
    cat_c = await api.concept(w.owner, w.app_id, "cat")
    inputs = await add_images(api, w.owner, w.app_id, [CAT])
    whole, region = await annotate(
        api,
        w.owner,
        w.app_id,
        [
            {"inputId": inputs[0], "conceptId": cat_c},
            {"inputId": inputs[0], "conceptId": cat_c, "box": box(0.1, 0.35, 0.95, 0.95)},
        ],
    )
    redis = asgi_app.state.runtime.redis
    assert await redis.smembers(pending.ANNOTATIONS) == {region.encode()}
    await drain()
    assert await embedded(w.app_id) == {(RefKind.ANNOTATION, region), (RefKind.INPUT, inputs[0])}
    assert whole not in {ref for _, ref in await embedded(w.app_id)}
