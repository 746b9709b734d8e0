"""Review and labeling queues follow the annotations: the listener of every change set.

For each task a change set touches, in this order:

1. the task's assignments are reconciled with its annotations (``assign.sync_inputs``): an
   input with waiting annotations sits in one open review item per slot, an input with none
   has no open review item (withdrawn, or DONE by the person who just decided it); a routed
   input the model left empty, or one sent back by "request changes", gets a labeling item;
   a person's labels close the labeling item they came from;
2. a deleted task, or deleted inputs, take their assignments with them;
3. the queue events are published, one per person and direction (``queue``'s docstring);
4. the task's review figures are refreshed and a progress event carries them.

Audit sampling is drawn when a run settles (``Reason.SETTLED``), when the population is known.
"""

from __future__ import annotations

from typing import Any

from pymongo import UpdateOne

from app.annotations.changes import ChangeSet, Reason
from app.annotations.models import AnnotationStatus
from app.core.db import any_of
from app.review import assign, audit, metrics
from app.review.models import Assignment, AssignmentKind, AssignmentState, bucket
from app.tasks.models import LabelingTask

PENDING = AnnotationStatus.PENDING.value
# Reasons after which an open review slot left with nothing is DONE by the actor, not withdrawn.
DECIDED = (Reason.REVIEWED, Reason.EDITED)


async def on_changes(runtime: Any, changes: ChangeSet) -> None:
    for task_id in changes.deleted_tasks:
        await Assignment.get_pymongo_collection().delete_many({"task_id": task_id})
    await assign.forget_counts(changes.deleted_tasks)
    gone = set(changes.deleted_inputs)
    if gone:
        await _drop_inputs(runtime, sorted(gone))
    for task_id, input_ids in changes.by_task().items():
        input_ids = [i for i in input_ids if i not in gone]
        if task_id in changes.deleted_tasks or (not input_ids and changes.reason is not Reason.SETTLED):
            continue
        task = await LabelingTask.get(task_id)
        if task is None:
            await Assignment.get_pymongo_collection().delete_many({"task_id": task_id})
            await assign.forget_counts([task_id])
            continue
        await _follow(runtime, task, changes, input_ids)


def _label_reason(changes: ChangeSet, task_id: str) -> tuple[str | None, list[str]]:
    """Which labeling rule applies: EMPTY after routing, CHANGES_REQUESTED for inputs whose
    annotations were just sent back (the others of the same call get none)."""
    if changes.reason is Reason.ROUTED:
        return "EMPTY", []
    if changes.reason is Reason.REVIEWED:
        sent_back = sorted({c.input_id for c in changes.status_changes(task_id) if c.after == PENDING})
        return ("CHANGES_REQUESTED", sent_back) if sent_back else (None, [])
    return None, []


async def _follow(runtime: Any, task: LabelingTask, changes: ChangeSet, input_ids: list[str]) -> None:
    reason = changes.reason
    finish = changes.actor if reason in DECIDED else None
    label_reason, sent_back = _label_reason(changes, task.id)
    if reason is Reason.SETTLED:
        if task.audit_percent > 0:
            await audit.draw(runtime, task)  # emits AUDIT, which comes back here
        await metrics.refresh(runtime, task.id)
        return
    if sent_back:
        others = [i for i in input_ids if i not in set(sent_back)]
        done = await assign.sync_inputs(task, others, finish=finish, reason=reason.value)
        done.merge(
            await assign.sync_inputs(
                task, sent_back, finish=finish, label_reason=label_reason, reason=reason.value
            )
        )
    else:
        done = await assign.sync_inputs(
            task, input_ids, finish=finish, label_reason=label_reason, reason=reason.value
        )
    if reason is Reason.LABELED and changes.actor:
        done.merge(await _labeled(task, changes.actor, input_ids))
    if runtime is not None:
        await assign.publish(runtime.redis, task, done)
    if reason is Reason.ROUTED:
        # routing decides nothing; the figures move only when inputs entered or left review,
        # and the engine's own progress event follows
        if not done.empty:
            await metrics.refresh(runtime, task.id, publish=False, task=task, counts=done.counts_after)
        return
    await metrics.refresh(runtime, task.id)


async def _labeled(task: LabelingTask, user_id: str, input_ids: list[str]) -> assign.Changes:
    """A person labeled these inputs in the task: their labeling items are DONE, by them."""
    out = assign.Changes(reason=Reason.LABELED.value)
    coll = Assignment.get_pymongo_collection()
    docs = await coll.find(
        {
            "task_id": task.id,
            "kind": AssignmentKind.LABEL.value,
            "input_id": any_of(input_ids),
            "state": {"$in": [AssignmentState.OPEN.value, AssignmentState.STARTED.value]},
        },
        {"user_id": 1, "state": 1, "input_id": 1},
    ).to_list()
    ops = [
        UpdateOne(
            {"_id": d["_id"], "state": d["state"]},
            {
                "$set": {
                    "state": AssignmentState.DONE.value,
                    "bucket": bucket(AssignmentKind.LABEL, AssignmentState.DONE, d.get("user_id")),
                    "done_by": user_id,
                },
                "$currentDate": {"done_at": True, "updated_at": True},
            },
        )
        for d in docs
    ]
    if ops:
        await coll.bulk_write(ops, ordered=False)
        await assign.forget_counts([task.id])  # written outside the task's lock
    for d in docs:
        out.remove(AssignmentKind.LABEL.value, d.get("user_id"), d["input_id"])
    return out


async def _drop_inputs(runtime: Any, input_ids: list[str]) -> None:
    """Deleted inputs leave every queue they were in (REMOVED events for open items)."""
    coll = Assignment.get_pymongo_collection()
    docs = await coll.find(
        {"input_id": any_of(input_ids)}, {"task_id": 1, "kind": 1, "user_id": 1, "state": 1, "input_id": 1}
    ).to_list()
    await coll.delete_many({"input_id": any_of(input_ids)})
    await assign.forget_counts({d["task_id"] for d in docs})  # written outside the tasks' locks
    by_task: dict[str, assign.Changes] = {}
    for d in docs:
        changes = by_task.setdefault(d["task_id"], assign.Changes(reason=Reason.INPUT_DELETED.value))
        if d["state"] != AssignmentState.DONE.value:
            changes.remove(d["kind"], d.get("user_id"), d["input_id"])
    for task_id, changes in by_task.items():
        task = await LabelingTask.get(task_id)
        if task is None:
            continue
        if runtime is not None:
            await assign.publish(runtime.redis, task, changes)
        await metrics.refresh(runtime, task_id)
