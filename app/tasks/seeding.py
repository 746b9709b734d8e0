"""Background seeding: a run over a large dataset is stored by workers, chunk by chunk.

``start`` seeds a run of up to ``task_seed_sync_limit`` inputs in the request. A larger run is
stored with ``seeding: true`` and one ``SEED`` unit (``scheduler.add_seed``), and the request
returns at once. Each claim of the unit (``seed_chunk``):

    read the next ``task_seed_chunk`` input ids of the dataset after the unit's cursor
    -> their PENDING task inputs (deterministic ids, duplicates ignored)
    -> their batches, claimable at once (ids derived from their input ids)
       (a task labeled by people: the inputs enter the labeling queue instead)
    -> the unit goes back with the new cursor, count and rank; a progress event

The last chunk clears ``seeding`` and lets the task close (``progress.finish_if_complete``
never closes a seeding task). A worker killed mid-chunk leaves the unit's cursor where the
chunk began: the next claim (its lease lapsed) writes that chunk again, which adds nothing
twice. A chunk whose content changed meanwhile (an input joined the dataset) gets other batch
ids, so an input can be in two batches (harmless: task-input states) but never in none.

Priority: the unit carries the task's priority like its batches (``reprioritize`` moves it
too) and its rank is the number of chunks done, so seeding keeps well ahead of its own
labeling while other runs of the same priority still get their turns. A cancelled, restarted
or deleted task stops at its next chunk, and what that chunk wrote is dropped.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from app.annotations.changes import ChangeSet, Reason, emit
from app.core.pagination import PAGE_KEY
from app.inputs.models import Input
from app.runtime import Runtime
from app.tasks import progress, scheduler
from app.tasks.models import PRIORITY_RANK, LabelingTask, TaskBatch, TaskInput, TaskStatus

log = logging.getLogger("labelstream.seeding")


async def next_input_ids(task: LabelingTask, after: str, limit: int) -> list[str]:
    """The dataset's next ``limit`` input ids after ``after``, in id order (a range on
    ``page_key``, equal to ``_id``, that every engine answers from the (app_id, page_key)
    index; app/core/pagination.py)."""
    query: dict[str, Any] = {"app_id": task.app_id, "dataset_ids": {"$in": [task.dataset_id]}}
    if after:
        query[PAGE_KEY] = {"$gt": after}
    coll = Input.get_pymongo_collection()
    docs = await coll.find(query, {"_id": 1}).sort(PAGE_KEY, 1).limit(limit).to_list()
    return [d["_id"] for d in docs]


def _current(task: LabelingTask | None, run: int) -> bool:
    return task is not None and task.run == run and task.seeding and task.status in progress.ACTIVE


async def _abandon(task: LabelingTask | None, unit: TaskBatch) -> None:
    """The run is over (cancelled, restarted, deleted): its waiting batches go; so do the task
    inputs of a deleted task, which this chunk may have written after the delete."""
    await scheduler.drop(unit.task_id, unit.run)
    if task is None:
        await TaskInput.get_pymongo_collection().delete_many({"task_id": unit.task_id})


def chunk_part(ids: list[str]) -> str:
    return "s" + hashlib.sha1(",".join(ids).encode()).hexdigest()[:16]


async def _store(runtime: Runtime, task: LabelingTask, ids: list[str], first_rank: int) -> None:
    await progress.create_pending(task, ids)
    if task.auto_annotation:
        await scheduler.add_batches(runtime, task, ids, part=chunk_part(ids), first_rank=first_rank)
    else:  # people label: the inputs enter the labeling queue (those already labeled leave it)
        await emit(runtime, ChangeSet(Reason.ROUTED, considered={task.id: ids}))
        await progress.mark_labeled(runtime, task.id, ids)


async def seed_chunk(runtime: Runtime, unit: TaskBatch) -> dict[str, Any] | None:
    """Seed the next chunk of ``unit``'s run; the update that puts the unit back, or None
    when the run is seeded (or over)."""
    task = await LabelingTask.get(unit.task_id)
    if not _current(task, unit.run):
        await _abandon(task, unit)
        return None
    assert task is not None
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id, "status": TaskStatus.QUEUED.value, "run": unit.run},
        {"$set": {"status": TaskStatus.IN_PROGRESS.value}, "$currentDate": {"updated_at": True}},
    )
    settings = runtime.settings
    ids = await next_input_ids(task, unit.cursor, settings.task_seed_chunk)
    seeded = unit.seeded + len(ids)
    if ids:
        await _store(runtime, task, ids, unit.seeded // settings.task_batch_size)
    last = len(ids) < settings.task_seed_chunk
    fields: dict[str, Any] = {"metrics.inputs_seeded": seeded}
    if seeded > task.metrics.inputs_total:  # the dataset grew since the start
        fields["metrics.inputs_total"] = seeded
    if last:
        fields["seeding"] = False
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id, "run": unit.run, "seeding": True},
        {"$set": fields, "$currentDate": {"updated_at": True}},
    )
    fresh = await LabelingTask.get(task.id)
    if fresh is None or fresh.run != unit.run or fresh.status not in progress.ACTIVE:
        await _abandon(fresh, unit)  # cancelled or deleted while this chunk was written
        return None
    if fresh.priority != task.priority:  # changed while this chunk was written
        await scheduler.reprioritize(task.id, fresh.priority)
    if last:
        fresh = await progress.finish_if_complete(runtime, task.id, force_recount=True) or fresh
        log.info("task %s: run %d seeded (%d inputs)", task.id, unit.run, seeded)
    await progress.publish_progress(runtime, fresh)
    if last:
        return None
    return scheduler.released(
        cursor=ids[-1],
        seeded=seeded,
        chunks=unit.chunks + 1,
        rank=unit.chunks + 1,
        priority=PRIORITY_RANK[fresh.priority],
    )


async def give_up(runtime: Runtime, unit: TaskBatch) -> None:
    """A seed unit whose claims kept failing: the run cannot be prepared, the task FAILED
    (``startLabelingTask`` starts it again)."""
    res = await LabelingTask.get_pymongo_collection().update_one(
        {"_id": unit.task_id, "run": unit.run, "seeding": True},
        {
            "$set": {"seeding": False, "status": TaskStatus.FAILED.value},
            "$currentDate": {"updated_at": True},
        },
    )
    await scheduler.drop(unit.task_id, unit.run)
    task = await LabelingTask.get(unit.task_id)
    if res.modified_count and task is not None:
        log.warning("task %s: seeding run %d failed %d times; task FAILED", task.id, unit.run, unit.attempts)
        await progress.publish_progress(runtime, task)
