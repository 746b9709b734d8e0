"""Snapshots and access checks for live subscriptions; nothing here imports GraphQL.

Snapshots are read from MongoDB, the system of record, so a subscriber that (re)connects, or
whose mailbox overflowed, or whose process lost Redis for a while, always ends up right.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.access import REVIEWERS, Principal, get_for, require_app
from app.apps.models import Membership
from app.review import queue as review_queue
from app.tasks.models import LabelingTask, TaskMetrics, TaskStatus

FINAL = frozenset({TaskStatus.DONE, TaskStatus.IDLE, TaskStatus.FAILED, TaskStatus.CANCELLED})


async def task_for(principal: Principal, task_id: str) -> LabelingTask:
    """The task, for any member of its app; another app's task is ``NotFound``."""
    return await get_for(principal, LabelingTask, task_id, what="labeling task", field="taskId")


async def task_for_reviewer(principal: Principal, task_id: str) -> LabelingTask:
    return await get_for(
        principal, LabelingTask, task_id, what="labeling task", roles=REVIEWERS, field="taskId"
    )


async def check_app(principal: Principal, app_id: str) -> Membership:
    _, membership = await require_app(principal, app_id)
    return membership


async def load_task(task_id: str) -> LabelingTask | None:
    return await LabelingTask.get(task_id)


@dataclass(slots=True, frozen=True)
class TaskState:
    """What a progress frame shows of a task (the attributes ``TaskProgress.from_document``
    reads), read without decoding the whole document."""

    id: str
    app_id: str
    name: str
    status: TaskStatus
    seeding: bool
    metrics: TaskMetrics
    updated_at: datetime


# the fields of ``TaskState``: one indexed read by ``_id``, a small projection
_STATE_FIELDS = {"app_id": 1, "name": 1, "status": 1, "seeding": 1, "metrics": 1, "updated_at": 1}


def published_state(task_id: str, event: dict[str, Any]) -> TaskState | None:
    """The state a progress event carries (``progress_payload``'s ``state``: the task as its
    publisher read it), or None when it carries none or not a well-formed one."""
    state = event.get("state")
    app_id = event.get("appId")
    if not isinstance(state, dict) or not isinstance(app_id, str):
        return None
    name, seeding = state.get("name"), state.get("seeding")
    if not isinstance(name, str) or not isinstance(seeding, bool):
        return None
    try:
        updated_at = datetime.fromisoformat(state["updatedAt"])
        if updated_at.tzinfo is None:  # every stored date is UTC (tz-aware client)
            return None
        return TaskState(
            id=task_id,
            app_id=app_id,
            name=name,
            status=TaskStatus(state["status"]),
            seeding=seeding,
            metrics=TaskMetrics.model_validate(state["metrics"]),
            updated_at=updated_at,
        )
    except (KeyError, TypeError, ValueError):
        return None


async def load_task_state(task_id: str) -> TaskState | None:
    """The task's current state for a live update, read on every rendered event.

    Read straight from the collection with a projection: an event to a thousand subscribers
    waits for this read, and Beanie's decoding of the whole document cost more than the round
    trip (the state is still read from MongoDB, the system of record, never taken from the
    event: publishers race, the database does not).
    """
    raw: dict[str, Any] | None = await LabelingTask.get_pymongo_collection().find_one(
        {"_id": task_id}, _STATE_FIELDS
    )
    if raw is None:
        return None
    return TaskState(
        id=raw["_id"],
        app_id=raw["app_id"],
        name=raw["name"],
        status=TaskStatus(raw.get("status", TaskStatus.QUEUED)),
        seeding=bool(raw.get("seeding", False)),
        metrics=TaskMetrics.model_validate(raw.get("metrics") or {}),
        updated_at=raw["updated_at"],
    )


async def app_tasks(app_id: str, limit: int) -> list[LabelingTask]:
    """The app's most recent tasks (ids sort by creation time), at most ``limit``."""
    return await LabelingTask.find({"app_id": app_id}).sort("-_id").limit(limit).to_list()


async def review_counts(task_id: str, reviewer_id: str) -> review_queue.QueueSnapshot:
    return await review_queue.queue_snapshot(task_id, reviewer_id)
