"""A task's per-input state, its counters, when it is finished, and the progress it reports.

Every input of a run gets a PENDING ``TaskInput`` when the run starts, so "is the task done?"
is one indexed look-up, exact whatever happened to the running ``$inc`` counters (a crash
between two writes, a repeated job, or an engine that loses concurrent increments, like
FerretDB 1.24). Closing recounts every counter from the documents. A task whose run is still
being seeded (``seeding``, app/tasks/seeding.py) never closes, and recounts while it seeds
leave ``inputs_total`` / ``inputs_seeded`` to the seeder (its inputs are not all stored yet).

Counters of annotations (approved, awaiting review) follow the annotation change records
(``on_changes``, a listener of ``app.annotations.changes``); counters of inputs follow the
task-input writes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ReturnDocument, UpdateMany

from app.annotations.changes import ChangeSet, Reason, emit
from app.annotations.models import Annotation, AnnotationStatus
from app.core import pubsub
from app.core.db import any_of, duplicates_ignored, one_reply, sorted_chunks
from app.core.documents import utcnow
from app.tasks.models import InputState, LabelingTask, TaskInput, TaskStatus

ACTIVE = (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS, TaskStatus.IDLE)
SUCCESS = AnnotationStatus.SUCCESS.value
AWAITING = AnnotationStatus.AWAITING_REVIEW.value


def task_input_id(task_id: str, input_id: str) -> str:
    return f"{task_id}:{input_id}"


async def create_pending(task: LabelingTask, input_ids: Sequence[str]) -> None:
    """A PENDING TaskInput per input of a run (existing ones are left as they are)."""
    now = utcnow()
    for k in range(0, len(input_ids), 1000):
        docs = [
            {
                "_id": task_input_id(task.id, i), "app_id": task.app_id, "task_id": task.id, "input_id": i,
                "state": InputState.PENDING.value, "code": None, "message": None, "attempts": 0,
                "approved": 0, "awaiting_review": 0, "discarded": 0, "created_at": now, "updated_at": now,
            }
            for i in input_ids[k : k + 1000]
        ]  # fmt: skip
        with duplicates_ignored():
            await TaskInput.get_pymongo_collection().insert_many(docs, ordered=False)


async def pending(task: LabelingTask, input_ids: Sequence[str], retry: bool) -> tuple[list[str], set[str]]:
    """The inputs a job still has to do, and which of them had failed before (one query)."""
    ids = [task_input_id(task.id, i) for i in input_ids]
    states = (
        await TaskInput.get_pymongo_collection()
        .find({"_id": {"$in": ids}}, {"input_id": 1, "state": 1}, batch_size=one_reply(len(ids)))
        .to_list()
    )
    known = {s["input_id"] for s in states}
    done = {s["input_id"] for s in states if s["state"] == InputState.DONE.value}
    failed = {s["input_id"] for s in states if s["state"] == InputState.FAILED.value}
    skip = done | (set() if retry else failed) | (set(input_ids) - known)  # unknown: input deleted
    return [i for i in input_ids if i not in skip], failed - skip


def _states(
    task: LabelingTask, rows: dict[str, dict[str, Any]], previously_failed: set[str], any_state: bool
) -> list[UpdateMany]:
    """One update per distinct set of fields (most inputs of a chunk share theirs), not one
    per input; each task input already holds its ids (``create_pending``). An update applies
    only to a task input in the state the run left it (PENDING, or FAILED for an input this
    job retries): a job that runs twice, or a task input deleted with its input meanwhile,
    matches nothing. ``any_state`` (an import, which recounts after) updates any state."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for input_id, fields in rows.items():
        was = InputState.FAILED if input_id in previously_failed else InputState.PENDING
        key = (was.value, *sorted(fields.items()))
        groups.setdefault(key, []).append(task_input_id(task.id, input_id))
    return [
        UpdateMany(
            {"_id": {"$in": ids}} if any_state else {"_id": {"$in": ids}, "state": was},
            {"$set": dict(fields), "$inc": {"attempts": 1}, "$currentDate": {"updated_at": True}},
        )
        for (was, *fields), ids in groups.items()
    ]


async def record(
    task: LabelingTask,
    outcomes: dict[str, Any],
    failures: dict[str, tuple[str, str]],
    previously_failed: set[str],
    *,
    any_state: bool = False,
) -> LabelingTask | None:
    """Inputs DONE (with where their predictions went) or FAILED (code, message); counters
    moved by what changed, in one write that also reads the task back (for the progress event
    that follows). Task inputs whose input was deleted meanwhile are not recreated.

    The counters move only for the task inputs the state writes changed. When some were not
    changed (deleted with their input, or recorded already by another run of the same job),
    the counters are recounted from the documents instead, since a running ``$inc`` cannot know
    which. A task that another writer closed meanwhile (DONE or IDLE, recounted after these
    writes), or that a newer run replaced, is left to that writer's counters."""
    rows: dict[str, dict[str, Any]] = {}
    for input_id, out in outcomes.items():
        rows[input_id] = {"state": InputState.DONE.value, "code": None, "message": None,
                          "approved": out.approved, "awaiting_review": out.awaiting_review,
                          "discarded": out.discarded}  # fmt: skip
    for input_id, (code, message) in failures.items():
        rows[input_id] = {"state": InputState.FAILED.value, "code": code, "message": message[:500],
                          "approved": 0, "awaiting_review": 0, "discarded": 0}  # fmt: skip
    ops = _states(task, rows, previously_failed & set(rows), any_state)
    matched = 0
    if ops:
        result = await TaskInput.get_pymongo_collection().bulk_write(ops, ordered=False)
        matched = result.matched_count
    current = {
        "_id": task.id,
        "run": task.run,
        "status": {"$nin": [TaskStatus.DONE.value, TaskStatus.IDLE.value]},
    }
    if matched != len(rows):
        counts = await _recount_of(task)
        update: dict[str, Any] = {"$set": counts, "$currentDate": {"updated_at": True}}
    else:
        newly_failed = len(set(failures) - previously_failed)
        recovered = len(set(outcomes) & previously_failed)
        inc = {
            "metrics.inputs_processed": len(outcomes),
            "metrics.inputs_failed": newly_failed - recovered,
            "metrics.annotations_discarded": sum(o.discarded for o in outcomes.values()),
        }
        update = {"$inc": inc, "$currentDate": {"updated_at": True}}
    doc = await LabelingTask.get_pymongo_collection().find_one_and_update(
        current, update, return_document=ReturnDocument.AFTER
    )
    return None if doc is None else LabelingTask.model_validate(doc)


def _group_by(task_id: str, key: str, **sums: str) -> list[dict[str, Any]]:
    """The pipeline counting a task's documents by ``key`` (and summing ``sums`` fields)."""
    extra = {name: {"$sum": f"${field}"} for name, field in sums.items()}
    return [{"$match": {"task_id": task_id}}, {"$group": {"_id": f"${key}", "n": {"$sum": 1}, **extra}}]


async def recount(task_id: str) -> dict[str, int]:
    """The task's counters recomputed from its documents (exact, whatever happened before).

    Two ``$group``s the server answers with a handful of rows: closing a task of any size is
    two round trips, not a transfer of every task input and annotation."""
    inputs = await TaskInput.get_pymongo_collection().aggregate(
        _group_by(task_id, "state", discarded="discarded")
    )
    states: dict[str, dict[str, Any]] = {r["_id"]: r for r in await inputs.to_list()}
    annotations = await Annotation.get_pymongo_collection().aggregate(_group_by(task_id, "status"))
    by_status = {r["_id"]: int(r["n"] or 0) for r in await annotations.to_list()}

    def count(state: InputState) -> int:
        return int(states.get(state.value, {}).get("n") or 0)

    total = sum(int(r["n"] or 0) for r in states.values())
    return {
        "metrics.inputs_total": total,
        "metrics.inputs_seeded": total,
        "metrics.inputs_processed": count(InputState.DONE),
        "metrics.inputs_failed": count(InputState.FAILED),
        "metrics.annotations_approved": by_status.get(SUCCESS, 0),
        "metrics.annotations_awaiting_review": by_status.get(AWAITING, 0),
        "metrics.annotations_discarded": sum(int(r.get("discarded") or 0) for r in states.values()),
    }


SEEDED = ("metrics.inputs_total", "metrics.inputs_seeded")


async def _recount_of(task: LabelingTask) -> dict[str, Any]:
    counts: dict[str, Any] = dict(await recount(task.id))
    if task.seeding:
        for key in SEEDED:
            counts.pop(key)
    return counts


async def store_recount(task_id: str) -> None:
    task = await LabelingTask.get(task_id)
    if task is None:
        return
    counts = await _recount_of(task)
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task_id}, {"$set": counts, "$currentDate": {"updated_at": True}}
    )


async def finish_if_complete(
    runtime: Any, task_id: str, *, force_recount: bool = False
) -> LabelingTask | None:
    """Close the task when none of its inputs is PENDING any more (recounting every counter),
    and tell the listeners the run settled. ``force_recount`` also refreshes the counters of a
    task that is not finished yet. A task still seeding is not finished, whatever its inputs
    (callers write their inputs' states before they call this, and the seeder clears
    ``seeding`` before it does, so the last of them closes the task)."""
    task = await LabelingTask.get(task_id)
    if task is None or task.status not in (TaskStatus.IN_PROGRESS, TaskStatus.QUEUED):
        return task
    waiting = (
        {"seeding": True}
        if task.seeding
        else await TaskInput.get_pymongo_collection().find_one(
            {"task_id": task_id, "state": InputState.PENDING.value}, {"_id": 1}
        )
    )
    if waiting is not None and not force_recount:
        return task
    counts = await _recount_of(task)
    if waiting is None:
        counts["status"] = (TaskStatus.IDLE if task.watch_dataset else TaskStatus.DONE).value
    res = await LabelingTask.get_pymongo_collection().update_one(
        {
            "_id": task_id,
            "run": task.run,  # a run started since was not read here
            "status": {"$in": [TaskStatus.IN_PROGRESS.value, TaskStatus.QUEUED.value]},
        },
        {"$set": counts, "$currentDate": {"updated_at": True}},
    )
    if waiting is None and res.modified_count:
        await emit(runtime, ChangeSet(Reason.SETTLED, considered={task_id: []}))
    return await LabelingTask.get(task_id)


def labeling_percent(task: LabelingTask) -> float:
    m = task.metrics
    if m.inputs_total <= 0:
        return 100.0 if task.status in (TaskStatus.DONE, TaskStatus.IDLE) else 0.0
    return round(min(100.0, 100.0 * (m.inputs_processed + m.inputs_failed) / m.inputs_total), 2)


RUNNING = (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS)


def reviewed_percent(inputs_reviewed: int, inputs_to_review: int, status: TaskStatus) -> float:
    """The one "% reviewed" (Clarifai's): inputs whose review is done / inputs that needed
    review. With nothing to review it is 100 once labeling is over, 0 while it runs."""
    if inputs_to_review <= 0:
        return 0.0 if status in RUNNING else 100.0
    return round(min(100.0, 100.0 * inputs_reviewed / inputs_to_review), 2)


def progress_payload(task: LabelingTask) -> dict[str, Any]:
    m = task.metrics
    return {
        "status": task.status.value,
        "seeding": task.seeding,
        "metrics": {
            "inputsTotal": m.inputs_total,
            "inputsSeeded": m.inputs_seeded,
            "inputsProcessed": m.inputs_processed,
            "inputsFailed": m.inputs_failed,
            "annotationsApproved": m.annotations_approved,
            "annotationsAwaitingReview": m.annotations_awaiting_review,
            "annotationsDiscarded": m.annotations_discarded,
            "labelingPercent": labeling_percent(task),
            "inputsReviewed": m.inputs_reviewed,
            "inputsToReview": m.inputs_to_review,
            "reviewedPercent": reviewed_percent(m.inputs_reviewed, m.inputs_to_review, task.status),
        },
        # the task as this publisher read it, in its storage shape: live subscribers are sent
        # this at once, then whatever MongoDB says if it differs (app/live/hub.py, "early")
        "state": {
            "name": task.name,
            "status": task.status.value,
            "seeding": task.seeding,
            "metrics": m.model_dump(),
            "updatedAt": task.updated_at.isoformat(),
        },
    }


async def publish_progress(runtime: Any, task: LabelingTask) -> None:
    await pubsub.publish_task(runtime.redis, task.app_id, task.id, progress_payload(task))


async def mark_labeled(runtime: Any, task_id: str, input_ids: Sequence[str]) -> None:
    """A task labeled by people: its PENDING inputs that now have a label of the task are DONE."""
    docs = (
        await Annotation.get_pymongo_collection()
        .find(
            {
                "task_id": task_id,
                "input_id": any_of(input_ids),
                "status": {"$in": [SUCCESS, AWAITING]},
            },
            {"input_id": 1},
        )
        .to_list()
    )
    labeled = sorted({d["input_id"] for d in docs})
    if not labeled:
        return
    res = await TaskInput.get_pymongo_collection().update_many(
        {"_id": {"$in": [task_input_id(task_id, i) for i in labeled]}, "state": InputState.PENDING.value},
        {
            "$set": {"state": InputState.DONE.value},
            "$inc": {"attempts": 1},
            "$currentDate": {"updated_at": True},
        },
    )
    if res.modified_count:
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task_id},
            {"$inc": {"metrics.inputs_processed": res.modified_count}, "$currentDate": {"updated_at": True}},
        )
        task = await finish_if_complete(runtime, task_id)
        if task is not None and runtime is not None:
            await publish_progress(runtime, task)


# --- the listener ----------------------------------------------------------------------------

DELETED_CHUNK = 500  # deleted inputs looked up per query


async def on_changes(runtime: Any, changes: ChangeSet) -> None:
    """Annotation counters move by the status changes; deleted inputs leave their tasks."""
    recounted = set(changes.deleted_tasks)
    if changes.deleted_inputs:
        coll = TaskInput.get_pymongo_collection()
        affected_ids: set[str] = set()
        for chunk in sorted_chunks(changes.deleted_inputs, DELETED_CHUNK):
            query = {"input_id": any_of(chunk)}
            affected_ids.update(d["task_id"] for d in await coll.find(query, {"task_id": 1}).to_list())
            await coll.delete_many(query)
        affected = sorted(affected_ids)
        for task_id in affected:
            await store_recount(task_id)
            await finish_if_complete(runtime, task_id)
        recounted.update(affected)
    for task_id in changes.by_task():
        if task_id in recounted or changes.reason is Reason.SETTLED:
            continue
        inc = {"metrics.annotations_approved": 0, "metrics.annotations_awaiting_review": 0}
        for c in changes.status_changes(task_id):
            inc["metrics.annotations_approved"] += (c.after == SUCCESS) - (c.before == SUCCESS)
            inc["metrics.annotations_awaiting_review"] += (c.after == AWAITING) - (c.before == AWAITING)
        inc = {k: v for k, v in inc.items() if v}
        if inc:
            await LabelingTask.get_pymongo_collection().update_one(
                {"_id": task_id}, {"$inc": inc, "$currentDate": {"updated_at": True}}
            )
        if changes.reason is Reason.LABELED:
            task = await LabelingTask.get(task_id)
            if task is not None and not task.auto_annotation and task.status is TaskStatus.IN_PROGRESS:
                await mark_labeled(runtime, task_id, changes.by_task()[task_id])
