"""Review queues: what the engine calls after routing, what subscriptions snapshot, and what a
reviewer (or labeler) lists and opens.

Event contract (channel ``review:<task_id>``, see app/core/pubsub.py):
    {"type": "review", "taskId", "appId", "reviewerId": str | None,
     "action": "ADDED" | "REMOVED", "inputIds": [...],
     "kind": "REVIEW", "reason": <an app.annotations.changes.Reason> | "REBALANCED" | ""}
``reviewerId`` is the reviewer whose queue changed; None while inputs are not assigned to a
reviewer (a task without reviewers). One event per reviewer and direction: an input moved by
rebalancing is REMOVED from one queue and ADDED to another.

A person's queue is their assignments (``app.review.models``) that are not DONE; nobody lists
anyone else's. Opening an item marks it STARTED, after which rebalancing never moves it.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from beanie import SortDirection

from app.access import CONTRIBUTORS, REVIEWERS, Principal, get_for, is_manager
from app.annotations.models import Annotation, AnnotationStatus
from app.apps.models import Membership, Role
from app.core import validate
from app.core.errors import ErrorCode, NotFound, ValidationFailed
from app.review import assign, metrics
from app.review.models import OPEN_STATES, Assignment, AssignmentKind, AssignmentState, bucket
from app.runtime import Runtime
from app.tasks.models import LabelingTask

MAX_FILTER_ITEMS = 100


@dataclass(frozen=True)
class QueueSnapshot:
    inputs: int  # inputs with at least one annotation waiting for this reviewer
    annotations: int
    started: int = 0  # of ``inputs``, those the reviewer has opened


async def queue_snapshot(task_id: str, reviewer_id: str | None) -> QueueSnapshot:
    """Counts of review work waiting for ``reviewer_id``: their items plus the items assigned to
    nobody (a task without reviewers; everyone sees those, as the events say). For None: the
    whole task's."""
    query: dict[str, Any] = {
        "task_id": task_id,
        "kind": AssignmentKind.REVIEW.value,
        "state": {"$in": list(OPEN_STATES)},
    }
    if reviewer_id is not None:
        query["user_id"] = {"$in": [reviewer_id, None]}
    docs = (
        await Assignment.get_pymongo_collection()
        .find(query, {"input_id": 1, "waiting": 1, "state": 1})
        .to_list()
    )
    return QueueSnapshot(
        inputs=len({d["input_id"] for d in docs}),
        annotations=sum(int(d.get("waiting") or 0) for d in docs),
        started=sum(1 for d in docs if d["state"] == AssignmentState.STARTED.value),
    )


# --- listing and opening ---------------------------------------------------------------------


class QueueOrder(enum.StrEnum):
    LEAST_CONFIDENT = "LEAST_CONFIDENT"
    OLDEST = "OLDEST"


@dataclass
class QueuePage:
    items: list[Assignment]
    cursors: list[str]
    has_next: bool


def _cursor(order: QueueOrder, doc: Assignment) -> str:
    value: Any = doc.min_confidence if order is QueueOrder.LEAST_CONFIDENT else doc.order
    return base64.urlsafe_b64encode(orjson.dumps([order.value, value, doc.id])).decode().rstrip("=")


def _after(order: QueueOrder, cursor: str) -> dict[str, Any]:
    try:
        kind, value, ident = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if kind != order.value or not isinstance(ident, str):
            raise ValueError(kind)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("malformed cursor", code=ErrorCode.INVALID_CURSOR, field="after") from exc
    if order is QueueOrder.OLDEST:
        return {"order": {"$gt": value}}
    return {"$or": [{"min_confidence": {"$gt": value}}, {"min_confidence": value, "_id": {"$gt": ident}}]}


async def task_for(principal: Principal, task_id: str, kind: AssignmentKind) -> LabelingTask:
    roles: tuple[Role, ...] = REVIEWERS if kind is AssignmentKind.REVIEW else CONTRIBUTORS
    return await get_for(principal, LabelingTask, task_id, what="labeling task", roles=roles, field="taskId")


def queue_query(
    task_id: str,
    kind: AssignmentKind,
    holders: Sequence[str | None],
    concept_ids: Sequence[str] = (),
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Open items of ``holders`` in the task, flat at the top level (no ``$and``): equalities
    and ranges the (task_id, state) index starts, on every engine (pagination.after_filter).
    ``$eq`` rather than a plain value: the same on MongoDB, but nx-27017 keeps a plain equality
    on a field with no single-field index out of its indexes (it might match inside an array)."""
    query: dict[str, Any] = {
        "task_id": {"$eq": task_id},
        "kind": {"$eq": kind.value},
        "user_id": {"$in": list(holders)},
        "state": {"$in": list(OPEN_STATES)},
    }
    if concept_ids:
        query["concept_ids"] = {"$in": list(concept_ids)}  # $in: indexed-array equality (nx)
    if after:
        query.update(after)  # {"order": {"$gt": ...}} or one top-level $or: no key collides
    return query


def queue_sort(order: QueueOrder) -> list[tuple[str, SortDirection]]:
    if order is QueueOrder.OLDEST:
        return [("order", SortDirection.ASCENDING)]
    return [("min_confidence", SortDirection.ASCENDING), ("_id", SortDirection.ASCENDING)]


async def list_queue(
    principal: Principal,
    task_id: str,
    kind: AssignmentKind,
    *,
    first: int,
    after: str | None,
    order: QueueOrder = QueueOrder.LEAST_CONFIDENT,
    concept_ids: Sequence[str] = (),
) -> QueuePage:
    """The caller's own open items of the task, least confident (or oldest) first."""
    task = await task_for(principal, task_id, kind)
    validate.bounded_list(list(concept_ids), "conceptIds", max_items=MAX_FILTER_ITEMS, allow_empty=True)
    holders = await _visible_holders(principal, task, kind)
    filt = queue_query(task.id, kind, holders, concept_ids, _after(order, after) if after else None)
    docs = await Assignment.find(filt).sort(queue_sort(order)).limit(first + 1).to_list()
    items = docs[:first]
    return QueuePage(items=items, cursors=[_cursor(order, d) for d in items], has_next=len(docs) > first)


async def _visible_holders(
    principal: Principal, task: LabelingTask, kind: AssignmentKind
) -> list[str | None]:
    """Whose open items the caller lists and may open: their own; an owner or admin also sees
    work nobody holds or whose holder left the task or the app (orphaned), and can take it over."""
    mine: list[str | None] = [principal.user_id]
    if not await is_manager(principal, task.app_id):
        return mine
    counts = assign.open_counts(await assign.bucket_counts(task.id), kind)
    holders = sorted(u for u in counts if u != principal.user_id)
    members = {
        m["user_id"]
        for m in await Membership.get_pymongo_collection()
        .find({"app_id": task.app_id, "user_id": {"$in": holders}}, {"user_id": 1})
        .to_list()
    }
    people = set(assign.people_of(task, kind)[0]) & members
    return [*mine, None, *(u for u in holders if u not in people)]


async def open_item(principal: Principal, task_id: str, input_id: str, kind: AssignmentKind) -> Assignment:
    """Mark the caller's item STARTED (idempotent); another person's item is NotFound. An owner
    or admin opening an unassigned or orphaned item takes it over (it becomes theirs)."""
    task = await task_for(principal, task_id, kind)
    coll = Assignment.get_pymongo_collection()
    holders = await _visible_holders(principal, task, kind)
    query = {"task_id": task.id, "input_id": input_id, "kind": kind.value, "user_id": {"$in": holders}}
    await coll.update_many(
        {**query, "state": {"$in": list(OPEN_STATES)}},
        {
            "$set": {
                "user_id": principal.user_id,
                "state": AssignmentState.STARTED.value,
                "bucket": bucket(kind, AssignmentState.STARTED, principal.user_id),
            },
            "$currentDate": {"started_at": True, "updated_at": True},
        },
    )
    await assign.forget_counts([task.id])  # moved between buckets outside the task's lock
    doc = await Assignment.find_one({**query, "user_id": principal.user_id})
    if doc is None:
        raise NotFound("item in your queue", input_id, field="inputId")
    return doc


async def waiting_annotations(item: Assignment) -> list[Annotation]:
    """The annotations of a review item still waiting for its reviewer's decision."""
    docs = await Annotation.find(
        {
            "task_id": item.task_id,
            "input_id": item.input_id,
            "status": {
                "$in": [
                    AnnotationStatus.AWAITING_REVIEW.value,
                    AnnotationStatus.AWAITING_CONSENSUS_REVIEW.value,
                ]
            },
        }
    ).to_list()
    docs = [d for d in docs if item.user_id is None or item.user_id not in d.approved_by]
    return sorted(docs, key=lambda d: (d.confidence, d.id))


async def on_people_changed(
    runtime: Runtime | None, task: LabelingTask, *, reviewers: bool, labelers: bool
) -> None:
    """``updateLabelingTask`` changed reviewers (or weights) or labelers: rebalance only work
    nobody has started, publish who gained and who lost what."""
    if not reviewers and not labelers:
        return
    changes = assign.Changes(reason="REBALANCED")
    if reviewers:
        changes.merge(await assign.rebalance(task, AssignmentKind.REVIEW))
    if labelers:
        changes.merge(await assign.rebalance(task, AssignmentKind.LABEL))
    if runtime is not None:
        await assign.publish(runtime.redis, task, changes)
    await metrics.refresh(runtime, task.id)
