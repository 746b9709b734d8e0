"""Human labeling of a task's inputs: an input waiting in the labeling queue is labeled when a
person adds an annotation for it in that task (``addAnnotation(s)`` with ``taskId``); its label
assignment is then DONE, by that person."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import UpdateOne

from app.annotations.models import Annotation
from app.core.runtime import Runtime
from app.review import metrics
from app.review.models import OPEN_STATES, Assignment, AssignmentKind, AssignmentState, bucket


async def on_labeled(runtime: Runtime | None, user_id: str, annotations: Sequence[Annotation]) -> None:
    by_task: dict[str, set[str]] = {}
    for a in annotations:
        if a.task_id:
            by_task.setdefault(a.task_id, set()).add(a.input_id)
    coll = Assignment.get_pymongo_collection()
    for task_id, inputs in by_task.items():
        docs = await coll.find(
            {
                "task_id": task_id,
                "kind": AssignmentKind.LABEL.value,
                "input_id": {"$in": sorted(inputs)},
                "state": {"$in": list(OPEN_STATES)},
            },
            {"user_id": 1, "state": 1},
        ).to_list()
        if not docs:
            continue
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
        await coll.bulk_write(ops, ordered=False)
        await metrics.refresh(runtime, task_id)
