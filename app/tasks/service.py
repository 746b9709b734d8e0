"""Labeling tasks: validated and stored ``QUEUED`` (running them is the workers' job).

Invariants a stored task keeps:
* its dataset, model or workflow (exactly one of the two) and concepts are of its app;
* every task concept is produced by the model/workflow (see ``models.service.check_production``);
* ``0 <= lower <= upper <= 1`` for the global range and every per-concept range, and each
  per-concept range names a task concept, at most once;
* reviewers are members holding REVIEWER (or OWNER/ADMIN), labelers members holding LABELER (or
  OWNER/ADMIN); reviewer weights name reviewers.
Updates write only the changed fields with ``$set`` (plus ``$currentDate``), never a whole
replace, so a worker's concurrent ``$inc`` on ``metrics`` is never lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.access import CONTRIBUTORS, MANAGERS, REVIEWERS, Principal, get_for, require_app
from app.annotations import store
from app.apps.models import Membership, Role
from app.concepts.models import Concept
from app.concepts.service import concepts_of_app
from app.core import validate
from app.core.errors import Conflict, ErrorCode, NotFound, ValidationFailed
from app.core.pagination import Page, PageArgs, paginate
from app.datasets.models import Dataset
from app.models.service import Producer, check_production, producer_for
from app.predictions.models import Prediction
from app.tasks import scheduler
from app.tasks.models import (
    ConceptMapping,
    ConceptThreshold,
    LabelingTask,
    PartitionStrategy,
    ReviewerWeight,
    ReviewStrategy,
    TaskInput,
    TaskPriority,
    TaskStatus,
    TaskType,
    ThresholdRange,
)

MAX_TASK_CONCEPTS = 1_000
MAX_PEOPLE = 500
MAX_FILTER_ITEMS = 100


@dataclass
class TaskSpec:
    """Everything ``createLabelingTask`` accepts, already in storage shapes."""

    app_id: str
    name: str
    dataset_id: str
    concept_ids: list[str]
    model_id: str | None = None
    workflow_id: str | None = None
    task_type: TaskType = TaskType.CONCEPTS_CLASSIFICATION
    concept_mapping: list[ConceptMapping] = field(default_factory=list)
    thresholds: ThresholdRange = field(default_factory=ThresholdRange)
    concept_thresholds: list[ConceptThreshold] = field(default_factory=list)
    reviewer_ids: list[str] = field(default_factory=list)
    labeler_ids: list[str] = field(default_factory=list)
    review_strategy: ReviewStrategy = ReviewStrategy.PARTITIONED
    partition_strategy: PartitionStrategy = PartitionStrategy.EVENLY
    reviewer_weights: list[ReviewerWeight] = field(default_factory=list)
    approval_threshold_reviewers: int = 1
    audit_percent: float = 0.0
    priority: TaskPriority = TaskPriority.MEDIUM
    auto_annotation: bool = True
    delete_previous_annotations: bool = False
    watch_dataset: bool = False
    review_human_annotations: bool | None = None


@dataclass
class TaskChanges:
    """What ``updateLabelingTask`` may change; ``None`` leaves a field as it is."""

    name: str | None = None
    priority: TaskPriority | None = None
    reviewer_ids: list[str] | None = None
    reviewer_weights: list[ReviewerWeight] | None = None
    labeler_ids: list[str] | None = None
    audit_percent: float | None = None
    thresholds: ThresholdRange | None = None
    concept_thresholds: list[ConceptThreshold] | None = None
    review_human_annotations: bool | None = None


@dataclass
class TaskFilter:
    """Criteria are combined with AND; an empty or missing list does not filter."""

    statuses: list[TaskStatus] = field(default_factory=list)
    priorities: list[TaskPriority] = field(default_factory=list)
    dataset_ids: list[str] = field(default_factory=list)


# --- thresholds ------------------------------------------------------------------------------


def check_range(value: ThresholdRange, field: str) -> ThresholdRange:
    """``0 <= lower <= upper <= 1``: OUT_OF_RANGE for a bound outside [0, 1] (or NaN),
    INVALID_THRESHOLD when ``lower > upper``."""
    lower = validate.unit_interval(value.lower, f"{field}.lower")
    upper = validate.unit_interval(value.upper, f"{field}.upper")
    if lower > upper:
        raise ValidationFailed(
            "lower must not be greater than upper",
            field=f"{field}.lower",
            code=ErrorCode.INVALID_THRESHOLD,
        )
    return ThresholdRange(
        lower=lower,
        upper=upper,
        lower_inclusive=value.lower_inclusive,
        upper_inclusive=value.upper_inclusive,
    )


def check_concept_thresholds(
    entries: Sequence[ConceptThreshold], concept_ids: Sequence[str]
) -> list[ConceptThreshold]:
    task_ids = set(concept_ids)
    seen: set[str] = set()
    out: list[ConceptThreshold] = []
    for index, entry in enumerate(entries):
        where = f"conceptThresholds.{index}"
        if entry.concept_id not in task_ids:
            raise ValidationFailed(
                f"concept {entry.concept_id!r} is not one of the task's concepts",
                field=f"{where}.conceptId",
            )
        if entry.concept_id in seen:
            raise Conflict(
                f"concept {entry.concept_id!r} has two threshold ranges",
                field=f"{where}.conceptId",
                code=ErrorCode.DUPLICATE,
            )
        seen.add(entry.concept_id)
        out.append(
            ConceptThreshold(concept_id=entry.concept_id, range=check_range(entry.range, f"{where}.range"))
        )
    return out


# --- people ----------------------------------------------------------------------------------


def _unique(values: Sequence[str], field: str, max_items: int) -> list[str]:
    validate.bounded_list(list(values), field, max_items=max_items, allow_empty=True)
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise Conflict(f"{value!r} appears twice", field=f"{field}.{index}", code=ErrorCode.DUPLICATE)
        seen.add(value)
    return list(values)


async def check_people(app_id: str, user_ids: Sequence[str], roles: Iterable[Role], field: str) -> list[str]:
    """Members of the app holding one of ``roles``; a non-member answers like an unknown user."""
    ids = _unique(user_ids, field, MAX_PEOPLE)
    found = await Membership.find({"app_id": app_id, "user_id": {"$in": ids}}).to_list()
    by_user = {m.user_id: m for m in found}
    allowed = set(roles)
    for index, uid in enumerate(ids):
        membership = by_user.get(uid)
        if membership is None:
            raise NotFound("collaborator", uid, field=f"{field}.{index}")
        if not allowed.intersection(membership.roles):
            names = ", ".join(sorted(r.value for r in allowed))
            raise ValidationFailed(
                f"user {uid!r} needs one of the roles {names} in the app",
                field=f"{field}.{index}",
                code=ErrorCode.MISSING_ROLE,
            )
    return ids


def check_weights(weights: Sequence[ReviewerWeight], reviewer_ids: Sequence[str]) -> None:
    reviewers = set(reviewer_ids)
    _unique([w.user_id for w in weights], "reviewerWeights", MAX_PEOPLE)
    for index, weight in enumerate(weights):
        where = f"reviewerWeights.{index}"
        if weight.user_id not in reviewers:
            raise ValidationFailed(
                f"user {weight.user_id!r} is not a reviewer of the task", field=f"{where}.userId"
            )
        if not math.isfinite(weight.weight) or weight.weight <= 0:
            raise ValidationFailed(
                "a weight must be a positive number",
                field=f"{where}.weight",
                code=ErrorCode.OUT_OF_RANGE,
            )


def check_audit_percent(value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValidationFailed(
            "auditPercent must be between 0 and 100", field="auditPercent", code=ErrorCode.OUT_OF_RANGE
        )
    return float(value)


def _approvals(count: int, reviewers: int) -> int:
    if not 1 <= count <= max(1, reviewers):
        raise ValidationFailed(
            "approvalThresholdReviewers must be between 1 and the number of reviewers",
            field="approvalThresholdReviewers",
            code=ErrorCode.OUT_OF_RANGE,
        )
    return count


# --- create ----------------------------------------------------------------------------------


async def _task_concepts(spec: TaskSpec) -> list[Concept]:
    ids = _unique(spec.concept_ids, "conceptIds", MAX_TASK_CONCEPTS)
    validate.bounded_list(ids, "conceptIds", max_items=MAX_TASK_CONCEPTS)
    return await concepts_of_app(spec.app_id, ids, "conceptIds")


async def _dataset(app_id: str, dataset_id: str) -> Dataset:
    dataset = await Dataset.find_one({"_id": dataset_id, "app_id": app_id})
    if dataset is None:
        raise NotFound("dataset", dataset_id, field="datasetId")
    return dataset


async def _validated(spec: TaskSpec) -> tuple[Dataset, Producer | None, list[Concept]]:
    """Check a spec in the order a form is read: names, dataset, worker, concepts, the rest."""
    spec.name = validate.name(spec.name)
    dataset = await _dataset(spec.app_id, spec.dataset_id)
    producer: Producer | None = None
    if spec.auto_annotation or spec.model_id or spec.workflow_id:
        producer, _, _ = await producer_for(spec.app_id, spec.model_id, spec.workflow_id)
    concepts = await _task_concepts(spec)
    if producer is not None:
        check_production(producer, concepts, spec.concept_mapping)
    spec.thresholds = check_range(spec.thresholds, "thresholds")
    spec.concept_thresholds = check_concept_thresholds(spec.concept_thresholds, spec.concept_ids)
    spec.reviewer_ids = await check_people(spec.app_id, spec.reviewer_ids, REVIEWERS, "reviewerIds")
    spec.labeler_ids = await check_people(spec.app_id, spec.labeler_ids, CONTRIBUTORS, "labelerIds")
    check_weights(spec.reviewer_weights, spec.reviewer_ids)
    _approvals(spec.approval_threshold_reviewers, len(spec.reviewer_ids))
    spec.audit_percent = check_audit_percent(spec.audit_percent)
    return dataset, producer, concepts


async def create_task(principal: Principal, spec: TaskSpec) -> LabelingTask:
    await require_app(principal, spec.app_id, MANAGERS)
    dataset, _, _ = await _validated(spec)
    task = LabelingTask(
        app_id=spec.app_id,
        name=spec.name,
        dataset_id=dataset.id,
        model_id=spec.model_id or None,
        workflow_id=spec.workflow_id or None,
        task_type=spec.task_type,
        concept_ids=spec.concept_ids,
        concept_mapping=spec.concept_mapping,
        thresholds=spec.thresholds,
        concept_thresholds=spec.concept_thresholds,
        auto_annotation=spec.auto_annotation,
        delete_previous_annotations=spec.delete_previous_annotations,
        watch_dataset=spec.watch_dataset,
        review_human_annotations=spec.review_human_annotations,
        reviewer_ids=spec.reviewer_ids,
        labeler_ids=spec.labeler_ids,
        review_strategy=spec.review_strategy,
        partition_strategy=spec.partition_strategy,
        reviewer_weights=spec.reviewer_weights,
        approval_threshold_reviewers=spec.approval_threshold_reviewers,
        audit_percent=spec.audit_percent,
        priority=spec.priority,
        status=TaskStatus.QUEUED,
        created_by=principal.user_id,
    )
    await task.insert()
    return task


# --- update / delete / read ------------------------------------------------------------------


async def _reviewer_changes(task: LabelingTask, changes: TaskChanges) -> dict[str, Any]:
    reviewers = task.reviewer_ids
    out: dict[str, Any] = {}
    if changes.reviewer_ids is not None:
        reviewers = await check_people(task.app_id, changes.reviewer_ids, REVIEWERS, "reviewerIds")
        out["reviewer_ids"] = reviewers
    weights = changes.reviewer_weights
    if weights is None and changes.reviewer_ids is not None:
        # Weights of reviewers who left the task go with them.
        weights = [w for w in task.reviewer_weights if w.user_id in set(reviewers)]
    if weights is not None:
        check_weights(weights, reviewers)
        out["reviewer_weights"] = [w.model_dump() for w in weights]
    if changes.reviewer_ids is not None:
        _approvals(task.approval_threshold_reviewers, len(reviewers))
    return out


async def _changes(task: LabelingTask, changes: TaskChanges) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if changes.name is not None:
        out["name"] = validate.name(changes.name)
    if changes.priority is not None:
        out["priority"] = changes.priority.value
    if changes.thresholds is not None:
        out["thresholds"] = check_range(changes.thresholds, "thresholds").model_dump()
    if changes.concept_thresholds is not None:
        checked = check_concept_thresholds(changes.concept_thresholds, task.concept_ids)
        out["concept_thresholds"] = [c.model_dump() for c in checked]
    out.update(await _reviewer_changes(task, changes))
    if changes.labeler_ids is not None:
        out["labeler_ids"] = await check_people(task.app_id, changes.labeler_ids, CONTRIBUTORS, "labelerIds")
    if changes.audit_percent is not None:
        out["audit_percent"] = check_audit_percent(changes.audit_percent)
    if changes.review_human_annotations is not None:
        out["review_human_annotations"] = changes.review_human_annotations
    return out


async def update_task(principal: Principal, task_id: str, changes: TaskChanges) -> LabelingTask:
    task = await get_for(principal, LabelingTask, task_id, what="labeling task", roles=MANAGERS)
    updates = await _changes(task, changes)
    if updates:
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task.id}, {"$set": updates, "$currentDate": {"updated_at": True}}
        )
    if changes.priority is not None:
        await scheduler.reprioritize(task.id, changes.priority)  # pending work moves at once
    fresh = await LabelingTask.get(task.id)
    if fresh is None:  # deleted meanwhile
        raise NotFound("labeling task", task_id, field="id")
    return fresh


async def delete_task(
    runtime: Any, principal: Principal, task_id: str, delete_annotations: bool = False
) -> str:
    """Delete the task; its annotations stay (they label the inputs) unless asked otherwise.
    Its queues go with it (the annotation writer's listeners)."""
    task = await get_for(principal, LabelingTask, task_id, what="labeling task", roles=MANAGERS)
    # jobs still queued find no task and do nothing; its engine state goes with it
    await task.delete()
    await scheduler.drop(task.id)
    await store.delete_task(runtime, task.app_id, task.id, delete_annotations=delete_annotations)
    await TaskInput.get_pymongo_collection().delete_many({"task_id": task.id})
    await Prediction.get_pymongo_collection().delete_many({"task_id": task.id})
    return task.id


async def get_task(principal: Principal, task_id: str) -> LabelingTask:
    return await get_for(principal, LabelingTask, task_id, what="labeling task")


def _filter_query(app_id: str, filt: TaskFilter) -> dict[str, Any]:
    query: dict[str, Any] = {"app_id": app_id}
    lists: dict[str, list[str]] = {
        "status": [s.value for s in filt.statuses],
        "priority": [p.value for p in filt.priorities],
        "dataset_id": list(filt.dataset_ids),
    }
    names = {"status": "statuses", "priority": "priorities", "dataset_id": "datasetIds"}
    for key, values in lists.items():
        validate.bounded_list(values, f"filter.{names[key]}", max_items=MAX_FILTER_ITEMS, allow_empty=True)
        if values:
            query[key] = {"$in": values}
    return query


async def list_tasks(
    principal: Principal, app_id: str, args: PageArgs, filt: TaskFilter | None = None
) -> Page[LabelingTask]:
    await require_app(principal, app_id)
    return await paginate(LabelingTask, _filter_query(app_id, filt or TaskFilter()), args)
