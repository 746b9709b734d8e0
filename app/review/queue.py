"""Review queues: what the engine calls after routing, and what subscriptions snapshot.

Event contract (channel ``review:<task_id>``, see app/core/pubsub.py):
    {"type": "review", "taskId", "appId", "reviewerId": str | None,
     "action": "ADDED" | "REMOVED", "inputIds": [...]}
``reviewerId`` is None while inputs are not assigned to a reviewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.annotations.models import Annotation, AnnotationStatus
from app.core import pubsub
from app.core.runtime import Runtime
from app.tasks.models import LabelingTask


@dataclass(frozen=True)
class QueueSnapshot:
    inputs: int  # inputs with at least one annotation waiting for this reviewer
    annotations: int


async def queue_snapshot(task_id: str, reviewer_id: str | None) -> QueueSnapshot:
    """Counts of work waiting for review in the task (all of it while nothing is assigned)."""
    docs = (
        await Annotation.get_pymongo_collection()
        .find({"task_id": task_id, "status": AnnotationStatus.AWAITING_REVIEW.value}, {"input_id": 1})
        .to_list()
    )
    return QueueSnapshot(inputs=len({d["input_id"] for d in docs}), annotations=len(docs))


async def on_batch_routed(runtime: Runtime, task: LabelingTask, input_ids: Sequence[str]) -> None:
    """Called by the engine after a batch's annotations are written."""
    if not input_ids:
        return
    docs = (
        await Annotation.get_pymongo_collection()
        .find(
            {
                "task_id": task.id,
                "input_id": {"$in": list(input_ids)},
                "status": AnnotationStatus.AWAITING_REVIEW.value,
            },
            {"input_id": 1},
        )
        .to_list()
    )
    waiting = sorted({d["input_id"] for d in docs})
    if waiting:
        await pubsub.publish_review(
            runtime.redis, task.app_id, task.id, {"reviewerId": None, "action": "ADDED", "inputIds": waiting}
        )
