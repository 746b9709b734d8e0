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

from app.access import MANAGERS, REVIEWERS, Principal, get_for, membership_of
from app.annotations import geometry, store
from app.annotations.models import Annotation, AnnotationStatus
from app.annotations.service import ItemFailure, check_region_text
from app.concepts.models import Concept
from app.core import validate
from app.core.db import any_of
from app.core.errors import Conflict, DomainError, ErrorCode, NotFound, ValidationFailed
from app.review.models import Assignment, AssignmentKind
from app.runtime import Runtime
from app.tasks.models import LabelingTask

CONSENSUS = store.CONSENSUS
WAITING = store.WAITING


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
    """Inputs of the task assigned to the (non-manager) actor for review, any state; none for
    someone who is no longer one of the task's reviewers (their open items were handed back)."""
    if actor.user_id not in actor.task.reviewers():
        return set()
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
    found = Annotation.get_pymongo_collection().find({"_id": {"$in": list(set(ids))}}, FIELDS)
    docs = {d["_id"]: d for d in await found.to_list()}
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
    docs = (
        await Annotation.get_pymongo_collection()
        .find(
            {
                "task_id": actor.task.id,
                "input_id": any_of(input_ids),
                "status": {"$in": list(WAITING)},
            },
            FIELDS,
        )
        .to_list()
    )
    if actor.manager:
        known = {
            d["input_id"]
            for d in await Annotation.get_pymongo_collection()
            .find({"task_id": actor.task.id, "input_id": any_of(input_ids)}, {"input_id": 1})
            .to_list()
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


async def _apply(
    runtime: Runtime | None,
    actor: _Actor,
    action: ReviewAction,
    docs: list[dict[str, Any]],
    result: ReviewResult,
) -> None:
    """The decision goes through the annotation writer; its listeners move the queues."""
    needed = max(1, actor.task.approval_threshold_reviewers)
    target = AnnotationStatus.SUCCESS.value if action is ReviewAction.APPROVE else TARGET[action]
    after = await store.decide(runtime, actor.user_id, docs, action.value, target, needed)
    for ident, status in after.items():
        result.changed_ids.append(ident)
        if action is ReviewAction.REJECT:
            result.rejected += 1
        elif action is ReviewAction.REQUEST_CHANGES:
            result.changes_requested += 1
        elif status == CONSENSUS:
            result.awaiting_consensus += 1
        else:
            result.approved += 1


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
        await _apply(runtime, actor, action, docs, result)
    result.task = await LabelingTask.get(actor.task.id) or actor.task
    return result


# --- edit ------------------------------------------------------------------------------------


@dataclass
class Edit:
    concept_id: str | None = None
    box: tuple[float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None
    add_concept_to_task: bool = False
    text: str | None = None  # a text region's corrected text


async def _edit_concept(doc: Annotation, task: LabelingTask, concept_id: str, add: bool) -> str:
    """A concept of the task; one of the app outside the task only when ``add`` asks to add it
    to the task's concepts (explicitly)."""
    concept = await Concept.find_one({"_id": concept_id, "app_id": doc.app_id})
    if concept is None:
        raise NotFound("concept", concept_id, field="conceptId")
    if concept.id not in task.concept_ids:
        if not add:
            raise ValidationFailed(
                f"concept {concept_id!r} is not one of the task's concepts (pass addConceptToTask to add it)",
                field="conceptId",
                code=ErrorCode.CONCEPT_NOT_IN_TASK,
            )
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task.id}, {"$addToSet": {"concept_ids": concept.id}, "$currentDate": {"updated_at": True}}
        )
    return concept.id


def _region(change: Edit) -> dict[str, Any]:
    if change.box is not None and change.polygon is not None:
        raise ValidationFailed(
            "give a box or a polygon, not both", field="polygon", code=ErrorCode.INVALID_GEOMETRY
        )
    if change.box is not None:
        return {"box": geometry.check_box(*change.box, field="box"), "polygon": None}
    if change.polygon is not None:
        return {"polygon": geometry.check_polygon(change.polygon, field="polygon"), "box": None}
    return {}


async def edit(runtime: Runtime | None, principal: Principal, annotation_id: str, change: Edit) -> Annotation:
    """Change the concept and/or region; the annotation becomes SUCCESS, reviewed and edited by
    the caller (a person's label now: confidence 1, ``edited_by`` set, the model's id kept)."""
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
    if change.concept_id is None and change.box is None and change.polygon is None and change.text is None:
        raise ValidationFailed(
            "give a conceptId, a box, a polygon or a text", field="conceptId", code=ErrorCode.REQUIRED
        )
    updates: dict[str, Any] = {
        "status": AnnotationStatus.SUCCESS.value,
        "reviewed_by": principal.user_id,
        "review_action": "EDIT",
        "edited_by": principal.user_id,
        "confidence": 1.0,
        **_region(change),
    }
    if change.text is not None:
        region = updates.get("box", doc.box) is not None or updates.get("polygon", doc.polygon) is not None
        updates["text"] = check_region_text(change.text, has_region=region)
    if change.concept_id is not None:
        updates["concept_id"] = await _edit_concept(
            doc, actor.task, change.concept_id, change.add_concept_to_task
        )
    if not await store.edit(runtime, doc, updates, principal.user_id):
        raise Conflict(
            "the annotation changed meanwhile; reload it", field="annotationId", code=ErrorCode.INVALID_STATE
        )
    fresh = await Annotation.get(doc.id)
    assert fresh is not None
    return fresh
