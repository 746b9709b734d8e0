"""Human labeling of a task's inputs: who may label which input.

An input of a task is labeled by the person whose labeling item it is (the labeling queue is
partitioned among the task's labelers like review work); an owner or admin may label any input
of the task. Everyone else's annotations for that input in that task are refused with
``NOT_YOUR_ITEM``. Labeling an input closes its item: ``follow`` does that from the change set.
"""

from __future__ import annotations

from app.access import Principal, is_manager
from app.core.errors import DomainError, ErrorCode, PermissionDenied
from app.review.models import OPEN_STATES, Assignment, AssignmentKind


async def gate(
    principal: Principal, app_id: str, items: list[tuple[int, str, str, str]]
) -> dict[int, DomainError]:
    """``items``: ``(index, task_id, input_id, field)``; returns the refused ones."""
    if not items or await is_manager(principal, app_id):
        return {}
    docs = (
        await Assignment.get_pymongo_collection()
        .find(
            {
                "task_id": {"$in": sorted({t for _, t, _, _ in items})},
                "input_id": {"$in": sorted({i for _, _, i, _ in items})},
                "kind": AssignmentKind.LABEL.value,
                "user_id": principal.user_id,
                "state": {"$in": list(OPEN_STATES)},
            },
            {"task_id": 1, "input_id": 1},
        )
        .to_list()
    )
    mine = {(d["task_id"], d["input_id"]) for d in docs}
    return {
        index: PermissionDenied(
            f"input {input_id!r} is not in your labeling queue of this task",
            field=f"{field}.inputId",
            code=ErrorCode.NOT_YOUR_ITEM,
        )
        for index, task_id, input_id, field in items
        if (task_id, input_id) not in mine
    }
