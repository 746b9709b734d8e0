"""Bulk actions on a selection of annotations (a search result list), with per-item errors.

Every write goes through the annotation writer (``app.annotations.store``), by the same
paths as the single actions, so permissions and status rules are theirs:

* ``ADD_CONCEPT``: a new annotation of ``conceptId`` on the same input and region, by the
  caller (needs OWNER, ADMIN or LABELER; ``addAnnotations`` rules);
* ``RELABEL``: the annotation's concept becomes ``conceptId``. An annotation of a task is
  edited as ``editAnnotation`` does (the concept must be one of the task's); one outside any
  task is relabeled by a contributor and stays as it was otherwise;
* ``APPROVE`` / ``REJECT``: review decisions (``reviewAnnotations``: awaiting review, and the
  caller a manager or the input's reviewer), grouped by task;
* ``REMOVE``: ``removeAnnotations``.

Items of other apps answer NOT_FOUND like unknown ids; a repeated id is a DUPLICATE.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.access import CONTRIBUTORS, Principal, membership_of, require_app
from app.annotations import service as annotation_service
from app.annotations import store
from app.annotations.models import Annotation
from app.annotations.service import ItemFailure, NewAnnotation
from app.concepts.models import Concept
from app.core import validate
from app.core.errors import Conflict, DomainError, ErrorCode, NotFound, PermissionDenied, ValidationFailed
from app.review import actions, labeling
from app.review.actions import ReviewAction, Selection


class BulkAction(enum.StrEnum):
    ADD_CONCEPT = "ADD_CONCEPT"
    RELABEL = "RELABEL"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    REMOVE = "REMOVE"


NEEDS_CONCEPT = (BulkAction.ADD_CONCEPT, BulkAction.RELABEL)


@dataclass
class BulkOutcome:
    changed_ids: list[str] = field(default_factory=list)  # annotations changed, removed or created
    errors: list[ItemFailure] = field(default_factory=list)


def _where(index: int) -> str:
    return f"annotationIds.{index}"


@dataclass
class _Bulk:
    """One bulk action under way: its items (position in the request, annotation) and outcome."""

    runtime: Any
    principal: Principal
    app_id: str
    action: BulkAction
    concept_id: str
    max_items: int
    chosen: list[tuple[int, Annotation]]
    out: BulkOutcome

    def failed(self, failures: Sequence[ItemFailure], items: Sequence[tuple[int, Annotation]]) -> None:
        """Per-item failures of a call made with ``items``, at their places in the request."""
        for failure in failures:
            index = items[failure.index][0]
            failure.error.field = _where(index)
            self.out.errors.append(ItemFailure(index, failure.error))


async def apply(
    runtime: Any,
    principal: Principal,
    app_id: str,
    ids: Sequence[str],
    action: BulkAction,
    concept_id: str | None,
    *,
    max_items: int,
) -> BulkOutcome:
    await require_app(principal, app_id)
    validate.bounded_list(list(ids), "annotationIds", max_items=max_items)
    if action in NEEDS_CONCEPT:
        if not concept_id:
            raise ValidationFailed(
                f"{action.value} needs a conceptId", field="conceptId", code=ErrorCode.REQUIRED
            )
        if await Concept.find_one({"_id": concept_id, "app_id": app_id}) is None:
            raise NotFound("concept", concept_id, field="conceptId")
    docs = {
        d.id: d for d in await Annotation.find({"_id": {"$in": list(set(ids))}, "app_id": app_id}).to_list()
    }
    out = BulkOutcome()
    chosen: list[tuple[int, Annotation]] = []
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        doc = docs.get(ident)
        if doc is None:
            out.errors.append(ItemFailure(index, NotFound("annotation", ident, field=_where(index))))
        elif ident in seen:
            out.errors.append(
                ItemFailure(
                    index, Conflict(f"{ident!r} appears twice", field=_where(index), code=ErrorCode.DUPLICATE)
                )
            )
        else:
            seen.add(ident)
            chosen.append((index, doc))
    if chosen:
        handler = {
            BulkAction.ADD_CONCEPT: _add_concept,
            BulkAction.RELABEL: _relabel,
            BulkAction.APPROVE: _review,
            BulkAction.REJECT: _review,
            BulkAction.REMOVE: _remove,
        }[action]
        await handler(_Bulk(runtime, principal, app_id, action, concept_id or "", max_items, chosen, out))
    out.errors.sort(key=lambda e: e.index)
    return out


async def _add_concept(b: _Bulk) -> None:
    items = [
        NewAnnotation(
            input_id=d.input_id,
            concept_id=b.concept_id,
            box=(d.box[0], d.box[1], d.box[2], d.box[3]) if d.box else None,
            polygon=[(d.polygon[k], d.polygon[k + 1]) for k in range(0, len(d.polygon), 2)]
            if d.polygon
            else None,
        )
        for _, d in b.chosen
    ]
    result = await annotation_service.add_annotations(
        b.runtime, b.principal, b.app_id, items, max_items=b.max_items, gate=labeling.gate
    )
    b.failed(result.errors, b.chosen)
    b.out.changed_ids += [a.id for a in result.annotations]


async def _relabel(b: _Bulk) -> None:
    concept_id, principal = b.concept_id, b.principal
    membership = await membership_of(principal, b.app_id)
    contributor = membership is not None and bool(set(CONTRIBUTORS).intersection(membership.roles))
    for index, doc in b.chosen:
        try:
            if doc.concept_id == concept_id:
                raise Conflict(
                    f"annotation {doc.id!r} already has concept {concept_id!r}", code=ErrorCode.DUPLICATE
                )
            if doc.task_id is not None:
                await actions.edit(b.runtime, principal, doc.id, actions.Edit(concept_id=concept_id))
            else:
                if not contributor:
                    raise PermissionDenied(
                        "relabeling needs one of the roles ADMIN, LABELER, OWNER in the app"
                    )
                updates = {"concept_id": concept_id, "edited_by": principal.user_id}
                if not await store.edit(b.runtime, doc, updates, principal.user_id):
                    raise Conflict(
                        "the annotation changed meanwhile; reload it", code=ErrorCode.INVALID_STATE
                    )
            b.out.changed_ids.append(doc.id)
        except DomainError as exc:
            exc.field = _where(index)
            b.out.errors.append(ItemFailure(index, exc))


async def _review(b: _Bulk) -> None:
    review_action = ReviewAction.APPROVE if b.action == BulkAction.APPROVE else ReviewAction.REJECT
    by_task: dict[str, list[tuple[int, Annotation]]] = {}
    for index, doc in b.chosen:
        if doc.task_id is None:
            error = Conflict(
                f"annotation {doc.id!r} belongs to no task: there is no review to decide",
                field=_where(index),
                code=ErrorCode.NOT_AWAITING_REVIEW,
            )
            b.out.errors.append(ItemFailure(index, error))
        else:
            by_task.setdefault(doc.task_id, []).append((index, doc))
    for task_id, group in by_task.items():
        try:
            result = await actions.review(
                b.runtime,
                b.principal,
                task_id,
                review_action,
                Selection(annotation_ids=[d.id for _, d in group]),
                max_items=b.max_items,
            )
        except DomainError as exc:  # the task itself: not a reviewer of it, or gone
            for index, doc in group:
                failed: DomainError = (
                    NotFound("annotation", doc.id) if exc.code == ErrorCode.NOT_FOUND else copy.copy(exc)
                )
                failed.field = _where(index)
                b.out.errors.append(ItemFailure(index, failed))
            continue
        b.failed(result.errors, group)
        b.out.changed_ids += result.changed_ids


async def _remove(b: _Bulk) -> None:
    result = await annotation_service.remove_annotations(
        b.runtime, b.principal, [d.id for _, d in b.chosen], max_items=b.max_items
    )
    b.failed(result.errors, b.chosen)
    b.out.changed_ids += result.removed_ids
