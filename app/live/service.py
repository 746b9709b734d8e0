"""Snapshots and access checks for live subscriptions; nothing here imports GraphQL.

Snapshots are read from MongoDB, the system of record, so a subscriber that (re)connects, or
whose mailbox overflowed, or whose process lost Redis for a while, always ends up right.
"""

from __future__ import annotations

from app.access import REVIEWERS, Principal, get_for, require_app
from app.apps.models import Membership
from app.review import queue as review_queue
from app.tasks.models import LabelingTask, TaskStatus

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


async def app_tasks(app_id: str, limit: int) -> list[LabelingTask]:
    """The app's most recent tasks (ids sort by creation time), at most ``limit``."""
    return await LabelingTask.find({"app_id": app_id}).sort("-_id").limit(limit).to_list()


async def review_counts(task_id: str, reviewer_id: str) -> review_queue.QueueSnapshot:
    return await review_queue.queue_snapshot(task_id, reviewer_id)
