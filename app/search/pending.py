"""Embedding work waiting for a worker: two Redis sets of ids, drained by one job a second.

The annotation listener (``follow``) adds the ids a change set wants embedded and asks for the
job of the current time slot (``SLOT_S``). The job is due at the end of its slot and its arq id
names the slot, so however many change sets arrive within a slot they share one job, and a job
always starts after every id of its slot was added (no id is left behind by a job that already
looked). The job then takes the ids in large chunks (``TAKE``, ``SPOP``: two jobs that overlap
never take the same id): many inputs per job, few reads.

Task batches go first: while a labeling-task batch is claimable or running, the job puts itself
back one slot later (one or two indexed reads each time), so embedding does not take the CPU
from the task it follows; once the oldest waiting id has waited ``MAX_WAIT_S`` it runs anyway
(search catches up even under a constant stream of tasks). A job put back stays in the arq
queue, where the scheduler counts it as a wake-up: ``should_wait`` makes up for that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from app.tasks import scheduler
from app.tasks.models import BatchState, TaskBatch

ANNOTATIONS = "labelstream:search:embed:annotations"
INPUTS = "labelstream:search:embed:inputs"
SINCE = "labelstream:search:embed:since"  # when the oldest id still waiting was added
JOB = "search_embed"
SLOT_S = 1.0
MAX_WAIT_S = 120.0
TAKE = 500


def _slot_job(now: float, slots_ahead: int = 0) -> tuple[str, float]:
    """The arq job id of the slot after ``slots_ahead`` more, and the delay until its end."""
    slot = math.floor(now / SLOT_S) + slots_ahead
    return f"search-embed:{slot}", max(0.0, (slot + 1) * SLOT_S - now)


async def add(redis: Any, annotation_ids: Sequence[str], input_ids: Sequence[str]) -> None:
    """Queue ids for embedding and make sure the slot's job is queued."""
    if not (annotation_ids or input_ids):
        return
    async with redis.pipeline(transaction=False) as pipe:
        if annotation_ids:
            pipe.sadd(ANNOTATIONS, *annotation_ids)
        if input_ids:
            pipe.sadd(INPUTS, *input_ids)
        pipe.set(SINCE, repr(time.time()), nx=True)
        await pipe.execute()
    await schedule(redis)


async def schedule(redis: Any, slots_ahead: int = 0) -> None:
    job_id, delay = _slot_job(time.time(), slots_ahead)
    await redis.enqueue_job(JOB, _job_id=job_id, _defer_by=delay)


async def tasks_busy() -> str | None:
    """``"running"`` when a labeling-task batch is held by a live lease, ``"claimable"`` when
    one waits for a worker, else None (two or three indexed reads rather than one ``$or``,
    which not every engine answers from an index)."""
    now = time.time()
    coll = TaskBatch.get_pymongo_collection()
    if await coll.find_one({"state": BatchState.LEASED.value, "lease_until": {"$gt": now}}, {"_id": 1}):
        return "running"
    if await coll.find_one({"state": BatchState.PENDING.value, "available_at": {"$lte": now}}, {"_id": 1}):
        return "claimable"
    return None


async def should_wait(runtime: Any) -> bool:
    """Put the job back a slot while tasks are busy, unless the oldest id waited too long.

    The job waiting in the queue looks like a wake-up to the scheduler (it counts queued jobs),
    so when a batch is claimable and nobody runs one, it also sends a wake-up: a batch whose
    own wake-up was lost is never left waiting behind this job."""
    redis = runtime.redis
    since = await redis.get(SINCE)
    waited = time.time() - float(since) if since else 0.0
    if waited >= MAX_WAIT_S:
        return False
    busy = await tasks_busy()
    if busy is None:
        return False
    if busy == "claimable":
        await scheduler.wake(runtime, 1)
    await schedule(redis, slots_ahead=1)
    return True


async def take(redis: Any, key: str) -> list[str]:
    ids = await redis.spop(key, TAKE)
    return sorted(i.decode() if isinstance(i, bytes) else str(i) for i in ids or [])


async def put_back(redis: Any, annotation_ids: Sequence[str], input_ids: Sequence[str]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        if annotation_ids:
            pipe.sadd(ANNOTATIONS, *annotation_ids)
        if input_ids:
            pipe.sadd(INPUTS, *input_ids)
        await pipe.execute()


async def done_if_empty(redis: Any) -> bool:
    """Forget the waiting time once both sets are empty."""
    if await redis.scard(ANNOTATIONS) or await redis.scard(INPUTS):
        return False
    await redis.delete(SINCE)
    return True
