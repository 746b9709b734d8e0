"""Task lifecycle: start, cancel, retry failed inputs, watch a dataset, re-apply thresholds.

    QUEUED --first job--> IN_PROGRESS --all inputs settled--> DONE (or IDLE when watching)
       \\______________________ cancel ______________________/--> CANCELLED
    DONE / IDLE / CANCELLED / FAILED --start--> QUEUED (a new run)
    DONE / IDLE / CANCELLED --retry failed inputs--> IN_PROGRESS
    (a run seeded in the background cannot reach DONE before ``seeding`` ends; a seeding that
    keeps failing -> FAILED)

Batches carry the task's ``run``; a start or retry bumps it, so batches of an older run do
nothing. The work of a run is stored as batches in MongoDB first (``scheduler``), so it
survives a lost Redis; a run over more than ``task_seed_sync_limit`` inputs is stored by the
workers in the background (``seeding``), so a start returns at once whatever the dataset's
size; batch ids are deterministic (``<task>:<run>:<part>:<k>``), and running
one twice is harmless (TaskInput states). Priority is an order, not a head start: workers take
HIGH before MEDIUM before LOW, and changing a task's priority reorders its pending batches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from app.access import MANAGERS, Principal, get_for
from app.annotations import store
from app.annotations.changes import ChangeSet, Reason, emit
from app.core import pubsub
from app.core.errors import Conflict, ErrorCode, ValidationFailed
from app.core.pagination import PAGE_KEY
from app.datasets.models import Dataset
from app.inputs.models import Input
from app.predictions.models import Prediction
from app.runtime import Runtime
from app.tasks import engine, progress, scheduler
from app.tasks.models import (
    ConceptThreshold,
    InputState,
    LabelingTask,
    TaskInput,
    TaskStatus,
    ThresholdRange,
)
from app.tasks.routing import Route, build_router
from app.tasks.run.write import candidates, write_annotations

FINISHED = (TaskStatus.DONE, TaskStatus.IDLE, TaskStatus.CANCELLED, TaskStatus.FAILED)


def _state_error(task: LabelingTask, action: str) -> Conflict:
    return Conflict(
        f"cannot {action} a task that is {task.status.value}",
        field="id",
        code=ErrorCode.INVALID_STATE,
    )


async def dataset_input_ids(
    app_id: str, dataset_id: str, page: int = 1000, limit: int | None = None
) -> AsyncIterator[str]:
    """The dataset's input ids in id order, read in pages (bounded memory), at most ``limit``.
    The range is on ``page_key`` (equal to ``_id``), which every engine answers from the
    (app_id, page_key) index (app/core/pagination.py)."""
    after = ""
    while True:
        if limit is not None:
            page = min(page, limit)
            if page <= 0:
                return
        query: dict[str, Any] = {"app_id": app_id, "dataset_ids": {"$in": [dataset_id]}}
        if after:
            query[PAGE_KEY] = {"$gt": after}
        docs = (
            await Input.get_pymongo_collection()
            .find(query, {"_id": 1})
            .sort(PAGE_KEY, 1)
            .limit(page)
            .to_list()
        )
        for doc in docs:
            yield doc["_id"]
        if limit is not None:
            limit -= len(docs)
        if len(docs) < page:
            return
        after = docs[-1]["_id"]


async def enqueue(
    runtime: Runtime, task: LabelingTask, input_ids: Sequence[str], *, part: str, retry: bool = False
) -> int:
    """Store ``input_ids`` as batches of the task's run and wake workers; returns the count."""
    if runtime.redis is None:
        raise ValidationFailed("no job queue is configured (REDIS_URL)", field="id")
    return await scheduler.add_batches(runtime, task, input_ids, part=part, retry=retry)


async def _bump_run(task: LabelingTask, status: TaskStatus, extra: dict[str, Any]) -> LabelingTask:
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id},
        {
            "$inc": {"run": 1},
            "$set": {"status": status.value, **extra},
            "$currentDate": {"updated_at": True},
        },
    )
    fresh = await LabelingTask.get(task.id)
    assert fresh is not None
    return fresh


async def start(runtime: Runtime, task: LabelingTask) -> LabelingTask:
    """A fresh run over every input of the dataset.

    Input counters start again from zero; annotation counters and review figures are recounted
    (what people decided in earlier runs stays). A task without auto-annotation is labeled by
    people: its inputs go to the labeling queue instead of the job queue, and each turns DONE
    when someone labels it.

    Over ``task_seed_sync_limit`` inputs (and with workers, i.e. Redis) the run is seeded in
    the background (``app.tasks.seeding``): the task is stored with ``seeding`` and the
    dataset's input count as ``inputs_total``, and this returns at once.
    """
    if task.status is TaskStatus.IN_PROGRESS:
        raise _state_error(task, "start")
    if task.auto_annotation and runtime.redis is None:
        raise ValidationFailed("no job queue is configured (REDIS_URL)", field="id")
    limit = runtime.settings.task_seed_sync_limit
    ids = [i async for i in dataset_input_ids(task.app_id, task.dataset_id, limit=limit + 1)]
    await TaskInput.get_pymongo_collection().delete_many({"task_id": task.id})
    if task.delete_previous_annotations:
        await delete_machine_output(runtime, task.id)
    metrics: dict[str, Any] = {
        f"metrics.{k}": 0 for k in ("inputs_processed", "inputs_failed", "annotations_discarded")
    }
    status = TaskStatus.QUEUED if task.auto_annotation else TaskStatus.IN_PROGRESS
    if len(ids) > limit and runtime.redis is not None:
        return await _start_seeding(runtime, task, status, metrics)
    metrics["metrics.inputs_total"] = metrics["metrics.inputs_seeded"] = len(ids)
    task = await _bump_run(task, status, {**metrics, "seeding": False})
    if ids:
        await progress.create_pending(task, ids)
    if ids and task.auto_annotation:
        await enqueue(runtime, task, ids, part="all")
    elif ids:  # people label: every input enters the labeling queue (those already labeled leave it)
        await emit(runtime, ChangeSet(Reason.ROUTED, considered={task.id: ids}))
        await progress.mark_labeled(runtime, task.id, ids)
    task = await progress.finish_if_complete(runtime, task.id, force_recount=True) or task
    await progress.publish_progress(runtime, task)
    return task


async def _start_seeding(
    runtime: Runtime, task: LabelingTask, status: TaskStatus, metrics: dict[str, Any]
) -> LabelingTask:
    dataset = await Dataset.get(task.dataset_id)
    metrics["metrics.inputs_total"] = dataset.inputs_count if dataset is not None else 0
    metrics["metrics.inputs_seeded"] = 0
    task = await _bump_run(task, status, {**metrics, "seeding": True})
    await scheduler.add_seed(runtime, task)
    await progress.publish_progress(runtime, task)
    return task


async def delete_machine_output(runtime: Runtime, task_id: str) -> None:
    """The task's predictions and the annotations its models made that nobody reviewed."""
    await Prediction.get_pymongo_collection().delete_many({"task_id": task_id})
    await store.delete_machine_output(runtime, task_id)


async def cancel(runtime: Runtime, task: LabelingTask) -> LabelingTask:
    if task.status in FINISHED:
        raise _state_error(task, "cancel")
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id, "status": {"$in": [s.value for s in progress.ACTIVE]}},
        {
            "$set": {"status": TaskStatus.CANCELLED.value, "seeding": False},
            "$currentDate": {"updated_at": True},
        },
    )
    await scheduler.drop(task.id)  # a seed unit at work stops at its next chunk (app/tasks/seeding.py)
    fresh = await LabelingTask.get(task.id)
    assert fresh is not None
    await progress.publish_progress(runtime, fresh)
    return fresh


async def retry_failed(runtime: Runtime, task: LabelingTask) -> LabelingTask:
    if task.status in (TaskStatus.IN_PROGRESS, TaskStatus.QUEUED):
        raise _state_error(task, "retry")
    failed = [
        s.input_id
        for s in await TaskInput.find({"task_id": task.id, "state": InputState.FAILED.value}).to_list()
    ]
    if not failed:
        raise Conflict("the task has no failed inputs", field="id", code=ErrorCode.NOTHING_TO_RETRY)
    # back to PENDING: the task closes only when every retried input has settled again
    await TaskInput.get_pymongo_collection().update_many(
        {"task_id": task.id, "state": InputState.FAILED.value}, {"$set": {"state": InputState.PENDING.value}}
    )
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id}, {"$inc": {"metrics.inputs_failed": -len(failed)}}
    )
    task = await _bump_run(task, TaskStatus.IN_PROGRESS, {})
    await enqueue(runtime, task, sorted(failed), part="retry", retry=True)
    await progress.publish_progress(runtime, task)
    return task


async def on_new_inputs(runtime: Runtime, inputs: Sequence[Input]) -> None:
    """Inputs just created with dataset ids reach the tasks watching those datasets."""
    by_dataset: dict[str, list[str]] = {}
    for doc in inputs:
        for dataset_id in doc.dataset_ids:
            by_dataset.setdefault(dataset_id, []).append(doc.id)
    for dataset_id, ids in by_dataset.items():
        await on_inputs_added(runtime, dataset_id, ids)


async def on_inputs_added(runtime: Runtime, dataset_id: str, input_ids: Sequence[str]) -> None:
    """New inputs in a dataset reach the tasks that watch it (IDLE tasks wake up)."""
    if not input_ids or runtime.redis is None:
        return
    tasks = await LabelingTask.find(
        {
            "dataset_id": dataset_id,
            "watch_dataset": True,
            "status": {
                "$in": [
                    TaskStatus.IDLE.value,
                    TaskStatus.IN_PROGRESS.value,
                    TaskStatus.QUEUED.value,
                ]
            },
        }
    ).to_list()
    for task in tasks:
        known = {
            d["input_id"]
            for d in await TaskInput.get_pymongo_collection()
            .find({"_id": {"$in": [progress.task_input_id(task.id, i) for i in input_ids]}}, {"input_id": 1})
            .to_list()
        }
        fresh = [i for i in input_ids if i not in known]
        if not fresh:
            continue
        # PENDING first: from here on, no job can close the task before these are labeled
        await progress.create_pending(task, fresh)
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task.id},
            {
                "$inc": {"metrics.inputs_total": len(fresh), "metrics.inputs_seeded": len(fresh)},
                "$set": {"status": TaskStatus.IN_PROGRESS.value},
                "$currentDate": {"updated_at": True},
            },
        )
        await enqueue(runtime, task, fresh, part=f"added-{fresh[0]}")


# ---------------------------------------------------------------------------------------------
# re-applying thresholds to stored predictions


@dataclass
class ConceptHistogram:
    concept_id: str
    approved: int = 0
    awaiting_review: int = 0
    discarded: int = 0


async def _predictions(task_id: str, page: int = 2000) -> AsyncIterator[list[Prediction]]:
    after = ""
    while True:
        query: dict[str, Any] = {"task_id": task_id}
        if after:
            query["_id"] = {"$gt": after}
        docs = await Prediction.find(query).sort("_id").limit(page).to_list()
        if docs:
            yield docs
        if len(docs) < page:
            return
        after = docs[-1].id


def _by_input(predictions: list[Prediction]) -> dict[str, list[Prediction]]:
    grouped: dict[str, list[Prediction]] = {}
    for p in predictions:
        grouped.setdefault(p.input_id, []).append(p)
    return grouped


async def reapply_thresholds(
    runtime: Runtime,
    task: LabelingTask,
    thresholds: ThresholdRange | None,
    concept_thresholds: list[ConceptThreshold] | None,
    *,
    dry_run: bool,
) -> list[ConceptHistogram]:
    """Route the stored predictions again; no model runs.

    The histogram counts, per task concept, the best prediction of every (input, concept,
    region) by where it would go. Without ``dry_run`` the new ranges are saved on the task and
    the annotations rewritten to match (reviewed annotations are left as they are), then the
    metrics are recounted.
    """
    if task.status in (TaskStatus.IN_PROGRESS, TaskStatus.QUEUED):
        raise _state_error(task, "re-apply thresholds to")
    per_concept = (
        {c.concept_id: c.range for c in concept_thresholds} if concept_thresholds is not None else None
    )
    concepts = await engine.task_concepts(task)
    router = build_router(task, [(c.id, c.name) for c in concepts], thresholds, per_concept)
    histogram = {c.id: ConceptHistogram(c.id) for c in concepts}
    if not dry_run:
        update: dict[str, Any] = {}
        if thresholds is not None:
            update["thresholds"] = thresholds.model_dump()
        if concept_thresholds is not None:
            update["concept_thresholds"] = [c.model_dump() for c in concept_thresholds]
        if update:
            await LabelingTask.get_pymongo_collection().update_one(
                {"_id": task.id}, {"$set": update, "$currentDate": {"updated_at": True}}
            )
    # predictions are read in id order, which groups them by input (ids start with task:input)
    carry: list[Prediction] = []
    async for page in _predictions(task.id):
        items = carry + page
        last_input = items[-1].input_id
        carry = [p for p in items if p.input_id == last_input]
        ready = [p for p in items if p.input_id != last_input]
        await _reapply_page(runtime, task, router, ready, histogram, dry_run)
    await _reapply_page(runtime, task, router, carry, histogram, dry_run)
    if not dry_run:
        await progress.store_recount(task.id)  # discarded counts come from the task inputs
        fresh = await LabelingTask.get(task.id)
        if fresh is not None:
            await progress.publish_progress(runtime, fresh)
    return list(histogram.values())


async def _reapply_page(
    runtime: Runtime,
    task: LabelingTask,
    router: Any,
    predictions: list[Prediction],
    histogram: dict[str, ConceptHistogram],
    dry_run: bool,
) -> None:
    if not predictions:
        return
    for p in predictions:  # mapping may have changed since they were stored
        p.concept_id = router.concept_for(p.model_concept_id, p.model_concept_name)
    chosen = candidates(predictions, router)
    for cand in chosen.values():
        h = histogram.get(cand.prediction.concept_id or "")
        if h is None:
            continue
        if cand.route is Route.APPROVE:
            h.approved += 1
        elif cand.route is Route.REVIEW:
            h.awaiting_review += 1
        else:
            h.discarded += 1
    if dry_run:
        return
    grouped = _by_input(predictions)
    inputs = await Input.find({"_id": {"$in": list(grouped)}}).to_list()
    dataset_ids = {i.id: list(i.dataset_ids) for i in inputs}
    chosen = {k: c for k, c in chosen.items() if c.prediction.input_id in dataset_ids}  # deleted: gone
    outcomes = await write_annotations(runtime, task, dataset_ids, chosen, [i.id for i in inputs])
    for input_id, out in outcomes.items():
        await TaskInput.get_pymongo_collection().update_one(
            {"_id": progress.task_input_id(task.id, input_id)},
            {
                "$set": {
                    "approved": out.approved,
                    "awaiting_review": out.awaiting_review,
                    "discarded": out.discarded,
                }
            },
        )


async def load_for_manager(principal: Principal, task_id: str) -> LabelingTask:
    return await get_for(principal, LabelingTask, task_id, what="labeling task", roles=MANAGERS)


__all__ = [
    "ConceptHistogram",
    "cancel",
    "enqueue",
    "load_for_manager",
    "on_inputs_added",
    "pubsub",
    "reapply_thresholds",
    "retry_failed",
    "start",
]
