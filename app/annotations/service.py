"""Annotations added and removed by people, and the annotation filter.

* ``add_annotations`` is a bulk call with per-item errors: every valid item is stored, each
  invalid one is reported with its index and a field path (``annotations.3.box.top``).
* ``remove_annotations`` is per-item too (not all-or-nothing): ids that are unknown, of an app
  the caller is not in, repeated, or lacking the role are reported, the others are removed.
  Removing is idempotent from the caller's point of view: a second call reports NOT_FOUND.
* An annotation's ``dataset_ids`` are copied from its input when it is stored.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.access import CONTRIBUTORS, Principal, check_membership, get_for, membership_of, require_app
from app.annotations import geometry, store
from app.annotations.models import Annotation, AnnotationStatus
from app.apps.models import Membership
from app.concepts.models import Concept
from app.core import validate
from app.core.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from app.core.pagination import PAGE_KEY, Page, PageArgs, paginate_stored
from app.inputs.models import Input
from app.tasks.models import LabelingTask

MAX_FILTER_ITEMS = 100
MAX_REGION_TEXT = 10_000  # characters of a text region's recognised text


@dataclass
class NewAnnotation:
    input_id: str
    concept_id: str
    box: tuple[float, float, float, float] | None = None  # top, left, bottom, right
    polygon: list[tuple[float, float]] | None = None  # (row, col) points
    confidence: float = 1.0
    task_id: str | None = None
    text: str | None = None  # a text region's text


@dataclass
class ItemFailure:
    index: int
    error: DomainError


@dataclass
class BulkResult:
    annotations: list[Annotation] = field(default_factory=list)
    removed_ids: list[str] = field(default_factory=list)
    errors: list[ItemFailure] = field(default_factory=list)


class FilterOperator(enum.StrEnum):
    AND = "AND"
    OR = "OR"


@dataclass
class AnnotationFilter:
    """Each given criterion is one condition; ``AND`` needs all of them, ``OR`` any of them.

    An empty or missing list is not a criterion. ``min_confidence`` and ``max_confidence``
    together form one criterion (a confidence range). ``labeled_by`` matches user or model ids.
    """

    operator: FilterOperator = FilterOperator.AND
    labeled_by: list[str] = field(default_factory=list)
    statuses: list[AnnotationStatus] = field(default_factory=list)
    concept_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    input_ids: list[str] = field(default_factory=list)
    dataset_ids: list[str] = field(default_factory=list)
    min_confidence: float | None = None
    max_confidence: float | None = None


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check_region_text(text: str, *, has_region: bool, field: str = "text") -> str:
    """A text region's text: only on an annotation with a box or polygon (``NO_REGION``),
    at most ``MAX_REGION_TEXT`` characters (``TOO_LONG``); an empty string is kept as such."""
    if not has_region:
        raise ValidationFailed(
            "only a region (box or polygon) has a text", field=field, code=ErrorCode.NO_REGION
        )
    if len(text) > MAX_REGION_TEXT:
        raise ValidationFailed(
            f"a region's text has at most {MAX_REGION_TEXT} characters", field=field, code=ErrorCode.TOO_LONG
        )
    return text


# --- adding ----------------------------------------------------------------------------------


@dataclass
class _Refs:
    """Inputs, concepts and tasks the items name, loaded with one ``$in`` query each."""

    inputs: dict[str, Input]
    concepts: dict[str, Concept]
    tasks: dict[str, LabelingTask]


async def _by_id(model: Any, app_id: str, ids: set[str]) -> dict[str, Any]:
    if not ids:
        return {}
    docs = await model.find({"_id": {"$in": sorted(ids)}, "app_id": app_id}).to_list()
    return {d.id: d for d in docs}


async def _refs(app_id: str, items: Sequence[NewAnnotation]) -> _Refs:
    return _Refs(
        inputs=await _by_id(Input, app_id, {i.input_id for i in items}),
        concepts=await _by_id(Concept, app_id, {i.concept_id for i in items}),
        tasks=await _by_id(LabelingTask, app_id, {i.task_id for i in items if i.task_id}),
    )


def _geometry(item: NewAnnotation, prefix: str) -> tuple[list[float] | None, list[float] | None]:
    if item.box is not None and item.polygon is not None:
        raise ValidationFailed(
            "give a box or a polygon, not both",
            field=_path(prefix, "polygon"),
            code=ErrorCode.INVALID_GEOMETRY,
        )
    box = geometry.check_box(*item.box, field=_path(prefix, "box")) if item.box is not None else None
    polygon = (
        geometry.check_polygon(item.polygon, field=_path(prefix, "polygon"))
        if item.polygon is not None
        else None
    )
    return box, polygon


def _build(principal: Principal, app_id: str, item: NewAnnotation, refs: _Refs, prefix: str) -> Annotation:
    """A person's annotation; in a task it must use one of the task's concepts, and it waits for
    review when the task reviews people's work (``LabelingTask.reviews_human_annotations``)."""
    source = refs.inputs.get(item.input_id)
    if source is None:
        raise NotFound("input", item.input_id, field=_path(prefix, "inputId"))
    if item.concept_id not in refs.concepts:
        raise NotFound("concept", item.concept_id, field=_path(prefix, "conceptId"))
    task = refs.tasks.get(item.task_id) if item.task_id else None
    if item.task_id and task is None:
        raise NotFound("labeling task", item.task_id, field=_path(prefix, "taskId"))
    if task is not None and item.concept_id not in task.concept_ids:
        raise ValidationFailed(
            f"concept {item.concept_id!r} is not one of the task's concepts",
            field=_path(prefix, "conceptId"),
            code=ErrorCode.CONCEPT_NOT_IN_TASK,
        )
    status = AnnotationStatus.SUCCESS
    if task is not None and task.reviews_human_annotations():
        status = AnnotationStatus.AWAITING_REVIEW
    box, polygon = _geometry(item, prefix)
    text = None
    if item.text is not None:
        has_region = box is not None or polygon is not None
        text = check_region_text(item.text, has_region=has_region, field=_path(prefix, "text"))
    return Annotation(
        app_id=app_id,
        input_id=source.id,
        concept_id=item.concept_id,
        dataset_ids=list(source.dataset_ids),
        box=box,
        polygon=polygon,
        confidence=validate.unit_interval(item.confidence, _path(prefix, "confidence")),
        text=text,
        status=status,
        labeled_by_user_id=principal.user_id,
        task_id=item.task_id or None,
    )


# Who may label which input of a task (the labeling queue's rule, owned by the review domain):
# given the caller and the task items, the errors of the items the caller may not label.
Gate = Callable[[Principal, str, list[tuple[int, str, str, str]]], Awaitable[dict[int, DomainError]]]


async def add_annotations(
    runtime: Any,
    principal: Principal,
    app_id: str,
    items: Sequence[NewAnnotation],
    *,
    max_items: int,
    gate: Gate | None = None,
    prefix: str = "annotations",
) -> BulkResult:
    await require_app(principal, app_id, CONTRIBUTORS)
    validate.bounded_list(list(items), prefix, max_items=max_items)
    refs = await _refs(app_id, items)
    result = BulkResult()
    built: list[tuple[int, str, Annotation]] = []
    for index, item in enumerate(items):
        where = prefix if prefix == "annotation" else f"{prefix}.{index}"
        try:
            built.append((index, where, _build(principal, app_id, item, refs, where)))
        except DomainError as exc:
            result.errors.append(ItemFailure(index, exc))
    in_tasks = [(i, a.task_id, a.input_id, where) for i, where, a in built if a.task_id]
    refused = await gate(principal, app_id, in_tasks) if gate is not None and in_tasks else {}
    for index, _, annotation in built:
        if index in refused:
            result.errors.append(ItemFailure(index, refused[index]))
        else:
            result.annotations.append(annotation)
    result.errors.sort(key=lambda e: e.index)
    await store.insert(runtime, result.annotations, principal.user_id)
    return result


async def add_annotation(
    runtime: Any, principal: Principal, app_id: str, item: NewAnnotation, *, gate: Gate | None = None
) -> Annotation:
    """One annotation; error paths start at the input's ``annotation`` (``annotation.box.top``)."""
    result = await add_annotations(
        runtime, principal, app_id, [item], max_items=1, gate=gate, prefix="annotation"
    )
    if result.errors:
        raise result.errors[0].error
    return result.annotations[0]


# --- removing --------------------------------------------------------------------------------


def _removal_error(
    ident: str, doc: Annotation | None, memberships: dict[str, Membership], where: str
) -> DomainError | None:
    membership = memberships.get(doc.app_id) if doc is not None else None
    if doc is None or membership is None:
        return NotFound("annotation", ident, field=where)
    if not set(CONTRIBUTORS).intersection(membership.roles):
        names = ", ".join(sorted(r.value for r in CONTRIBUTORS))
        return PermissionDenied(f"this needs one of the roles {names} in the app", field=where)
    return None


async def remove_annotations(
    runtime: Any, principal: Principal, ids: Sequence[str], *, max_items: int
) -> BulkResult:
    validate.bounded_list(list(ids), "ids", max_items=max_items)
    docs = {d.id: d for d in await Annotation.find({"_id": {"$in": list(set(ids))}}).to_list()}
    app_ids = sorted({d.app_id for d in docs.values()})
    memberships = {
        m.app_id: m
        for m in await Membership.find({"user_id": principal.user_id, "app_id": {"$in": app_ids}}).to_list()
    }
    result = BulkResult()
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        where = f"ids.{index}"
        error = _removal_error(ident, docs.get(ident), memberships, where)
        if error is None and ident in seen:
            error = Conflict(f"{ident!r} appears twice", field=where, code=ErrorCode.DUPLICATE)
        if error is not None:
            result.errors.append(ItemFailure(index, error))
            continue
        seen.add(ident)
        result.removed_ids.append(ident)
    if result.removed_ids:
        await store.remove(runtime, result.removed_ids, principal.user_id)
    return result


# --- reading ---------------------------------------------------------------------------------


def _confidence(filt: AnnotationFilter) -> dict[str, float]:
    bounds: dict[str, float] = {}
    if filt.min_confidence is not None:
        bounds["$gte"] = validate.unit_interval(filt.min_confidence, "filter.minConfidence")
    if filt.max_confidence is not None:
        bounds["$lte"] = validate.unit_interval(filt.max_confidence, "filter.maxConfidence")
    if bounds.get("$gte", 0.0) > bounds.get("$lte", 1.0):
        raise ValidationFailed(
            "minConfidence must not be greater than maxConfidence",
            field="filter.minConfidence",
            code=ErrorCode.OUT_OF_RANGE,
        )
    return bounds


def _criteria(filt: AnnotationFilter) -> list[dict[str, Any]]:
    lists: list[tuple[str, str, list[str]]] = [
        ("labeledBy", "", filt.labeled_by),
        ("statuses", "status", [s.value for s in filt.statuses]),
        ("conceptIds", "concept_id", filt.concept_ids),
        ("taskIds", "task_id", filt.task_ids),
        ("inputIds", "input_id", filt.input_ids),
        ("datasetIds", "dataset_ids", filt.dataset_ids),
    ]
    out: list[dict[str, Any]] = []
    for name, key, values in lists:
        validate.bounded_list(values, f"filter.{name}", max_items=MAX_FILTER_ITEMS, allow_empty=True)
        if not values:
            continue
        if name == "labeledBy":
            out.append(
                {
                    "$or": [
                        {"labeled_by_user_id": {"$in": values}},
                        {"labeled_by_model_id": {"$in": values}},
                    ]
                }
            )
        else:
            out.append({key: {"$in": values}})
    bounds = _confidence(filt)
    if bounds:
        out.append({"confidence": bounds})
    return out


def filter_query(app_id: str, filt: AnnotationFilter) -> dict[str, Any]:
    """The MongoDB filter: always scoped to the app, the criteria flat beside it.

    AND: every criterion names its own field (labeledBy is the one ``$or``), so they merge at
    the top level: equality on ``app_id`` plus per-field conditions, which every engine answers
    from the (app_id, page_key) index with the page's range (``paginate``); nx-27017 would
    decode every document in Python for a ``$and``. OR: one top-level ``$or``.
    """
    query: dict[str, Any] = {"app_id": app_id}
    criteria = _criteria(filt)
    if filt.operator is FilterOperator.OR and len(criteria) > 1:
        query["$or"] = criteria
        return query
    for criterion in criteria:  # AND (or an OR of one criterion, the same thing)
        query.update(criterion)
    return query


def with_region(query: dict[str, Any]) -> dict[str, Any]:
    """``query`` restricted to annotations with a region (every field is written on insert,
    so ``$ne: null`` means "has one" on every engine)."""
    if "$or" not in query:
        return {**query, **REGION}
    return {"$and": [query, REGION]}


async def _require_member(principal: Principal, app_id: str) -> None:
    """The caller is a member of the app (``NotFound`` otherwise, like an unknown app).

    The membership alone answers it, with no read of the app: deleting an app removes its
    memberships before the app (``apps.service.delete_app``), so a membership names an app that
    exists, and a read page costs the page query only (the membership is cached, app.access).
    """
    check_membership(await membership_of(principal, app_id), None, what="app", ident=app_id, field="appId")


async def list_annotations(
    principal: Principal, app_id: str, args: PageArgs, filt: AnnotationFilter | None = None
) -> Page[dict[str, Any]]:
    """One page of the app's annotations, filtered: the stored documents as read (one query,
    no model validation; the GraphQL layer maps them with ``Annotation.from_stored``)."""
    await _require_member(principal, app_id)
    query = filter_query(app_id, filt or AnnotationFilter())
    return await paginate_stored(Annotation.get_pymongo_collection().find, query, args, key=PAGE_KEY)


REGION = {"$or": [{"box": {"$ne": None}}, {"polygon": {"$ne": None}}]}


async def list_objects(
    principal: Principal, app_id: str, args: PageArgs, filt: AnnotationFilter | None = None
) -> Page[dict[str, Any]]:
    """Object mode: the filtered annotations that have a region (stored documents, as
    ``list_annotations``)."""
    await _require_member(principal, app_id)
    query = with_region(filter_query(app_id, filt or AnnotationFilter()))
    return await paginate_stored(Annotation.get_pymongo_collection().find, query, args, key=PAGE_KEY)


async def get_annotation(principal: Principal, annotation_id: str) -> Annotation:
    return await get_for(principal, Annotation, annotation_id, what="annotation")
