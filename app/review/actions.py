"""Review actions: approve, reject, request changes, edit.

    approve          AWAITING_REVIEW -> SUCCESS (with consensus N > 1: AWAITING_CONSENSUS_REVIEW
                     until N distinct reviewers approved, then SUCCESS)
    reject           AWAITING_(CONSENSUS_)REVIEW -> REVIEW_DENIED
    request changes  AWAITING_(CONSENSUS_)REVIEW -> PENDING, and the input goes to a labeler
    edit             concept / box / polygon changed -> SUCCESS

Each records ``reviewed_by``, ``reviewed_at`` (``$currentDate``) and ``review_action``. The
engine never rewrites an annotation a person reviewed. What may be acted on:

* a reviewer: annotations of inputs assigned to them in the task (anything else answers
  NOT_FOUND, exactly like an unknown id, so other queues leak nothing);
* an owner or admin of the app: any annotation of the task.

Selections: ids (one annotation is the object level), input ids (every waiting annotation of
those inputs), or ``labeled_by`` (every waiting annotation of the task by that user or model;
for a reviewer, within their own inputs). Status updates carry the expected old status in their
filter, so an annotation decided concurrently by someone else is not decided twice.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne

from app.annotations import geometry
from app.annotations.models import Annotation, AnnotationStatus
from app.annotations.service import ItemFailure
from app.concepts.models import Concept
from app.core import validate
from app.core.auth import MANAGERS, REVIEWERS, Principal, get_for, membership_of
from app.core.errors import Conflict, DomainError, ErrorCode, NotFound, ValidationFailed
from app.core.runtime import Runtime
from app.review import assign, metrics
from app.review.models import Assignment, AssignmentKind
from app.tasks.models import LabelingTask

AWAITING = AnnotationStatus.AWAITING_REVIEW.value
CONSENSUS = AnnotationStatus.AWAITING_CONSENSUS_REVIEW.value
WAITING = (AWAITING, CONSENSUS)
CHUNK = 1000


class ReviewAction(enum.StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    REQUEST_CHANGES = "REQUEST_CHANGES"


TARGET = {
    ReviewAction.REJECT: AnnotationStatus.REVIEW_DENIED.value,
    ReviewAction.REQUEST_CHANGES: AnnotationStatus.PENDING.value,
}


@dataclass
class Selection:
    annotation_ids: list[str] | None = None
    input_ids: list[str] | None = None
    labeled_by: str | None = None


@dataclass
class ReviewResult:
    task: LabelingTask
    changed_ids: list[str] = field(default_factory=list)
    approved: int = 0
    rejected: int = 0
    changes_requested: int = 0
    awaiting_consensus: int = 0
    errors: list[ItemFailure] = field(default_factory=list)


@dataclass
class _Actor:
    principal: Principal
    task: LabelingTask
    manager: bool

    @property
    def user_id(self) -> str:
        return self.principal.user_id


async def _actor(principal: Principal, task_id: str) -> _Actor:
    task = await get_for(
        principal, LabelingTask, task_id, what="labeling task", roles=REVIEWERS, field="taskId"
    )
    membership = await membership_of(principal, task.app_id)
    manager = membership is not None and bool(set(MANAGERS).intersection(membership.roles))
    return _Actor(principal, task, manager)


async def _my_inputs(actor: _Actor, input_ids: Sequence[str] | None) -> set[str]:
    """Inputs of the task assigned to the (non-manager) actor for review, any state."""
    query: dict[str, Any] = {
        "task_id": actor.task.id,
        "kind": AssignmentKind.REVIEW.value,
        "user_id": actor.user_id,
    }
    if input_ids is not None:
        query["input_id"] = {"$in": list(input_ids)}
    docs = await Assignment.get_pymongo_collection().find(query, {"input_id": 1}).to_list()
    return {d["input_id"] for d in docs}


FIELDS = {"input_id": 1, "status": 1, "approved_by": 1, "task_id": 1, "app_id": 1}


def _waiting_for_me(doc: dict[str, Any], user_id: str) -> bool:
    return doc["status"] in WAITING and user_id not in (doc.get("approved_by") or [])


async def _by_ids(actor: _Actor, ids: list[str], result: ReviewResult) -> list[dict[str, Any]]:
    coll = Annotation.get_pymongo_collection()
    docs = {d["_id"]: d for d in await coll.find({"_id": {"$in": list(set(ids))}}, FIELDS).to_list()}
    visible = {d["input_id"] for d in docs.values()}
    if not actor.manager:
        visible = await _my_inputs(actor, sorted(visible))
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        where = f"annotationIds.{index}"
        doc = docs.get(ident)
        error: DomainError | None = None
        if doc is None or doc.get("task_id") != actor.task.id or doc["input_id"] not in visible:
            error = NotFound("annotation", ident, field=where)
        elif ident in seen:
            error = Conflict(f"{ident!r} appears twice", field=where, code=ErrorCode.DUPLICATE)
        elif not _waiting_for_me(doc, actor.user_id):
            error = Conflict(
                f"annotation {ident!r} is not waiting for your review ({doc['status']})",
                field=where,
                code=ErrorCode.NOT_AWAITING_REVIEW,
            )
        if error is not None:
            result.errors.append(ItemFailure(index, error))
            continue
        assert doc is not None
        seen.add(ident)
        chosen.append(doc)
    return chosen


async def _by_inputs(actor: _Actor, input_ids: list[str], result: ReviewResult) -> list[dict[str, Any]]:
    coll = Annotation.get_pymongo_collection()
    docs = await coll.find(
        {
            "task_id": actor.task.id,
            "input_id": {"$in": list(set(input_ids))},
            "status": {"$in": list(WAITING)},
        },
        FIELDS,
    ).to_list()
    if actor.manager:
        known = {
            d["input_id"]
            for d in await coll.find(
                {"task_id": actor.task.id, "input_id": {"$in": list(set(input_ids))}}, {"input_id": 1}
            ).to_list()
        }
    else:
        known = await _my_inputs(actor, input_ids)
    by_input: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_input.setdefault(d["input_id"], []).append(d)
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, input_id in enumerate(input_ids):
        where = f"inputIds.{index}"
        mine = [d for d in by_input.get(input_id, []) if _waiting_for_me(d, actor.user_id)]
        if input_id not in known:
            result.errors.append(ItemFailure(index, NotFound("input in this task", input_id, field=where)))
        elif input_id in seen:
            result.errors.append(
                ItemFailure(
                    index, Conflict(f"{input_id!r} appears twice", field=where, code=ErrorCode.DUPLICATE)
                )
            )
        elif not mine:
            result.errors.append(
                ItemFailure(
                    index,
                    Conflict(
                        f"input {input_id!r} has nothing waiting for your review",
                        field=where,
                        code=ErrorCode.NOT_AWAITING_REVIEW,
                    ),
                )
            )
        else:
            seen.add(input_id)
            chosen.extend(mine)
    return chosen


async def _by_labeler(actor: _Actor, labeled_by: str) -> list[dict[str, Any]]:
    query: dict[str, Any] = {
        "task_id": actor.task.id,
        "status": {"$in": list(WAITING)},
        "$or": [{"labeled_by_user_id": labeled_by}, {"labeled_by_model_id": labeled_by}],
    }
    docs = await Annotation.get_pymongo_collection().find(query, FIELDS).to_list()
    if not actor.manager:
        mine = await _my_inputs(actor, None)
        docs = [d for d in docs if d["input_id"] in mine]
    return [d for d in docs if _waiting_for_me(d, actor.user_id)]


def _selection(selection: Selection, max_items: int) -> None:
    given = [
        name
        for name, value in (
            ("annotationIds", selection.annotation_ids),
            ("inputIds", selection.input_ids),
            ("labeledBy", selection.labeled_by),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise ValidationFailed(
            "give exactly one of annotationIds, inputIds and labeledBy",
            field="annotationIds",
            code=ErrorCode.SELECTION_REQUIRED,
        )
    if selection.annotation_ids is not None:
        validate.bounded_list(selection.annotation_ids, "annotationIds", max_items=max_items)
    if selection.input_ids is not None:
        validate.bounded_list(selection.input_ids, "inputIds", max_items=max_items)
    if selection.labeled_by is not None and not selection.labeled_by.strip():
        raise ValidationFailed("labeledBy must not be empty", field="labeledBy", code=ErrorCode.EMPTY)


def _stamp(actor: _Actor, action: str, status: str) -> dict[str, Any]:
    return {
        "$set": {"status": status, "reviewed_by": actor.user_id, "review_action": action},
        "$currentDate": {"reviewed_at": True, "updated_at": True},
    }


async def _apply(
    actor: _Actor, action: ReviewAction, docs: list[dict[str, Any]], result: ReviewResult
) -> dict:
    """Write the transitions; returns the ``$inc`` for the task's metrics."""
    coll = Annotation.get_pymongo_collection()
    inc = {"metrics.annotations_approved": 0, "metrics.annotations_awaiting_review": 0}
    needed = max(1, actor.task.approval_threshold_reviewers)
    if action is ReviewAction.APPROVE and needed > 1:
        await _approve_consensus(actor, docs, needed, result, inc)
        return inc
    target = AnnotationStatus.SUCCESS.value if action is ReviewAction.APPROVE else TARGET[action]
    for old in WAITING:
        ids = [d["_id"] for d in docs if d["status"] == old]
        for k in range(0, len(ids), CHUNK):
            chunk = ids[k : k + CHUNK]
            res = await coll.update_many(
                {"_id": {"$in": chunk}, "status": old}, _stamp(actor, action.value, target)
            )
            n = res.modified_count
            if n < len(chunk):  # someone decided a few meanwhile: report only what we changed
                still = {
                    d["_id"]
                    for d in await coll.find(
                        {"_id": {"$in": chunk}, "reviewed_by": actor.user_id, "status": target}, {"_id": 1}
                    ).to_list()
                }
                chunk = [i for i in chunk if i in still]
            result.changed_ids.extend(chunk)
            if old == AWAITING:
                inc["metrics.annotations_awaiting_review"] -= n
            if action is ReviewAction.APPROVE:
                inc["metrics.annotations_approved"] += n
                result.approved += n
            elif action is ReviewAction.REJECT:
                result.rejected += n
            else:
                result.changes_requested += n
    return inc


async def _approve_consensus(
    actor: _Actor, docs: list[dict[str, Any]], needed: int, result: ReviewResult, inc: dict[str, int]
) -> None:
    coll = Annotation.get_pymongo_collection()
    ops: list[Any] = []
    for d in docs:
        approvals = set(d.get("approved_by") or []) | {actor.user_id}
        status = AnnotationStatus.SUCCESS.value if len(approvals) >= needed else CONSENSUS
        update = _stamp(actor, ReviewAction.APPROVE.value, status)
        update["$addToSet"] = {"approved_by": actor.user_id}
        if status == CONSENSUS:
            update["$set"].pop("reviewed_by")  # decided only when consensus is reached
            update["$set"]["review_action"] = "APPROVE_PARTIAL"
        ops.append(UpdateOne({"_id": d["_id"], "status": d["status"]}, update))
    for k in range(0, len(ops), CHUNK):
        await coll.bulk_write(ops[k : k + CHUNK], ordered=False)
    ids = [d["_id"] for d in docs]
    # two reviewers approving at the same moment both wrote CONSENSUS; promote what has enough
    fresh = await coll.find({"_id": {"$in": ids}}, {"status": 1, "approved_by": 1}).to_list()
    late = [f["_id"] for f in fresh if f["status"] == CONSENSUS and len(f.get("approved_by") or []) >= needed]
    if late:
        await coll.update_many(
            {"_id": {"$in": late}, "status": CONSENSUS}, _stamp(actor, ReviewAction.APPROVE.value, "SUCCESS")
        )
    before = {d["_id"]: d["status"] for d in docs}
    for f in await coll.find({"_id": {"$in": ids}}, {"status": 1, "approved_by": 1}).to_list():
        if actor.user_id not in (f.get("approved_by") or []):
            continue
        result.changed_ids.append(f["_id"])
        if before[f["_id"]] == AWAITING and f["status"] != AWAITING:
            inc["metrics.annotations_awaiting_review"] -= 1
        if f["status"] == AnnotationStatus.SUCCESS.value:
            inc["metrics.annotations_approved"] += 1
            result.approved += 1
        elif f["status"] == CONSENSUS:
            result.awaiting_consensus += 1


async def _after(
    runtime: Runtime | None,
    actor: _Actor,
    input_ids: set[str],
    inc: dict[str, int],
    *,
    changes_requested: bool,
) -> None:
    """Assignments follow the annotations; metrics and events follow both."""
    inc = {k: v for k, v in inc.items() if v}
    if inc:
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": actor.task.id}, {"$inc": inc, "$currentDate": {"updated_at": True}}
        )
    ids = sorted(input_ids)
    changes = await assign.sync_inputs(
        actor.task,
        ids,
        finish=actor.user_id,
        label_reason="CHANGES_REQUESTED" if changes_requested else None,
        reason="REVIEWED",
    )
    if runtime is not None:
        await assign.publish(runtime.redis, actor.task, changes)
    await metrics.refresh(runtime, actor.task.id)


async def review(
    runtime: Runtime | None,
    principal: Principal,
    task_id: str,
    action: ReviewAction,
    selection: Selection,
    *,
    max_items: int,
) -> ReviewResult:
    actor = await _actor(principal, task_id)
    _selection(selection, max_items)
    result = ReviewResult(task=actor.task)
    if selection.annotation_ids is not None:
        docs = await _by_ids(actor, selection.annotation_ids, result)
    elif selection.input_ids is not None:
        docs = await _by_inputs(actor, selection.input_ids, result)
    else:
        docs = await _by_labeler(actor, selection.labeled_by or "")
    if docs:
        inc = await _apply(actor, action, docs, result)
        changed = set(result.changed_ids)
        inputs = {d["input_id"] for d in docs if d["_id"] in changed}
        await _after(runtime, actor, inputs, inc, changes_requested=action is ReviewAction.REQUEST_CHANGES)
    result.task = await LabelingTask.get(actor.task.id) or actor.task
    return result


# --- edit ------------------------------------------------------------------------------------


@dataclass
class Edit:
    concept_id: str | None = None
    box: tuple[float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None


async def edit(runtime: Runtime | None, principal: Principal, annotation_id: str, change: Edit) -> Annotation:
    """Change the concept and/or region; the annotation becomes SUCCESS, reviewed by the caller."""
    doc = await Annotation.get(annotation_id) if annotation_id else None
    if doc is None or doc.task_id is None:
        raise NotFound("annotation", annotation_id, field="annotationId")
    try:
        actor = await _actor(principal, doc.task_id)
    except NotFound:
        raise NotFound("annotation", annotation_id, field="annotationId") from None
    if not actor.manager:
        if doc.input_id not in await _my_inputs(actor, [doc.input_id]):
            raise NotFound("annotation", annotation_id, field="annotationId")
        if doc.status.value not in WAITING:
            raise Conflict(
                f"annotation {annotation_id!r} is not waiting for review ({doc.status.value})",
                field="annotationId",
                code=ErrorCode.NOT_AWAITING_REVIEW,
            )
    if change.concept_id is None and change.box is None and change.polygon is None:
        raise ValidationFailed(
            "give a conceptId, a box or a polygon", field="conceptId", code=ErrorCode.REQUIRED
        )
    updates: dict[str, Any] = {
        "status": AnnotationStatus.SUCCESS.value,
        "reviewed_by": principal.user_id,
        "review_action": "EDIT",
    }
    if change.concept_id is not None:
        concept = await Concept.find_one({"_id": change.concept_id, "app_id": doc.app_id})
        if concept is None:
            raise NotFound("concept", change.concept_id, field="conceptId")
        updates["concept_id"] = concept.id
    if change.box is not None and change.polygon is not None:
        raise ValidationFailed(
            "give a box or a polygon, not both", field="polygon", code=ErrorCode.INVALID_GEOMETRY
        )
    if change.box is not None:
        updates["box"], updates["polygon"] = geometry.check_box(*change.box, field="box"), None
    if change.polygon is not None:
        updates["polygon"], updates["box"] = geometry.check_polygon(change.polygon, field="polygon"), None
    res = await Annotation.get_pymongo_collection().update_one(
        {"_id": doc.id, "status": doc.status.value},
        {"$set": updates, "$currentDate": {"reviewed_at": True, "updated_at": True}},
    )
    if res.matched_count == 0:
        raise Conflict(
            "the annotation changed meanwhile; reload it", field="annotationId", code=ErrorCode.INVALID_STATE
        )
    inc = {"metrics.annotations_approved": 0, "metrics.annotations_awaiting_review": 0}
    if doc.status is not AnnotationStatus.SUCCESS:
        inc["metrics.annotations_approved"] = 1
    if doc.status is AnnotationStatus.AWAITING_REVIEW:
        inc["metrics.annotations_awaiting_review"] = -1
    await _after(runtime, actor, {doc.input_id}, inc, changes_requested=False)
    fresh = await Annotation.get(doc.id)
    assert fresh is not None
    return fresh
