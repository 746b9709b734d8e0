"""Review and labeling figures of a task, from its assignments (bounded aggregations).

* inputs to review: inputs with a review assignment; reviewed: those whose every slot is DONE;
* per reviewer: assigned (all their review assignments), done, percent;
* ``review_complete``: labeling is over and no review assignment is open (Clarifai's "Review"
  button turns inactive); ``inputs_to_label``: open label assignments ("Label" stays active);
* "labeled by": the people and models that made the task's annotations, with counts.

``metrics.inputs_reviewed`` on the task is refreshed from these figures after every change, so
progress events and task lists carry it without aggregating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.annotations.models import Annotation
from app.core import pubsub
from app.models.models import ModelEntry
from app.review.assign import aggregate, bucket_counts
from app.review.models import OPEN_STATES, Assignment, AssignmentKind, AssignmentState
from app.runtime import Runtime
from app.tasks.models import LabelingTask, TaskStatus
from app.tasks.progress import progress_payload, reviewed_percent
from app.users.models import User

RUNNING = (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS)


@dataclass
class ReviewerStats:
    user_id: str
    assigned: int = 0
    done: int = 0

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.assigned, 2) if self.assigned else 0.0


@dataclass
class ReviewMetrics:
    inputs_to_review: int = 0
    inputs_reviewed: int = 0
    open_reviews: int = 0
    inputs_to_label: int = 0
    labeled: int = 0
    review_complete: bool = False
    reviewers: list[ReviewerStats] = field(default_factory=list)

    status: TaskStatus = TaskStatus.QUEUED

    @property
    def reviewed_percent(self) -> float:
        return reviewed_percent(self.inputs_reviewed, self.inputs_to_review, self.status)

    @property
    def labeling_active(self) -> bool:
        return self.inputs_to_label > 0

    def payload(self) -> dict[str, Any]:
        return {
            "inputsToReview": self.inputs_to_review,
            "inputsReviewed": self.inputs_reviewed,
            "reviewedPercent": self.reviewed_percent,
            "reviewComplete": self.review_complete,
            "inputsToLabel": self.inputs_to_label,
        }


async def _distinct_inputs(task_id: str, states: list[str]) -> int:
    match = {"task_id": task_id, "kind": AssignmentKind.REVIEW.value, "state": {"$in": states}}
    rows = await aggregate(
        Assignment.get_pymongo_collection(),
        [{"$match": match}, {"$group": {"_id": "$input_id"}}, {"$count": "n"}],
    )
    return int(rows[0]["n"]) if rows else 0


async def review_metrics(task: LabelingTask, counts: dict[str, int] | None = None) -> ReviewMetrics:
    """``counts``: the task's ``bucket_counts`` when the caller knows them (read otherwise)."""
    if counts is None:
        counts = await bucket_counts(task.id)
    out = ReviewMetrics()
    per: dict[str, ReviewerStats] = {u: ReviewerStats(u) for u in task.reviewer_ids}
    review_total = review_done = 0
    for key, n in counts.items():
        kind, state, user = key.split("|", 2)
        if kind == AssignmentKind.LABEL.value:
            if state in OPEN_STATES:
                out.inputs_to_label += n
            else:
                out.labeled += n
            continue
        review_total += n
        if state == AssignmentState.DONE.value:
            review_done += n
        else:
            out.open_reviews += n
        if user != "-":
            stats = per.setdefault(user, ReviewerStats(user))
            stats.assigned += n
            stats.done += n if state == AssignmentState.DONE.value else 0
    if task.approval_threshold_reviewers > 1 and review_total:
        every = [s.value for s in AssignmentState]
        out.inputs_to_review = await _distinct_inputs(task.id, every)
        out.inputs_reviewed = out.inputs_to_review - await _distinct_inputs(task.id, list(OPEN_STATES))
    else:
        out.inputs_to_review, out.inputs_reviewed = review_total, review_done
    out.review_complete = out.open_reviews == 0 and task.status not in RUNNING
    out.status = task.status
    out.reviewers = list(per.values())
    return out


async def refresh(
    runtime: Runtime | None,
    task_id: str,
    *,
    publish: bool = True,
    task: LabelingTask | None = None,
    counts: dict[str, int] | None = None,
) -> ReviewMetrics | None:
    """``$set`` the task's ``metrics.inputs_reviewed`` and publish a progress event with the
    review figures (the engine's progress payload plus ``review``).

    ``task``: the task as the caller just read it (spares a read); its stored figures may be
    stale then, so the new ones are written whatever they were. ``counts``: the task's bucket
    counts when the caller knows them (``assign.Changes.counts_after``)."""
    known = task is not None
    if task is None:
        task = await LabelingTask.get(task_id)
    if task is None:
        return None
    figures = await review_metrics(task, counts)
    m = task.metrics
    if known or (m.inputs_reviewed, m.inputs_to_review) != (
        figures.inputs_reviewed,
        figures.inputs_to_review,
    ):
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task.id},
            {
                "$set": {
                    "metrics.inputs_reviewed": figures.inputs_reviewed,
                    "metrics.inputs_to_review": figures.inputs_to_review,
                },
                "$currentDate": {"updated_at": True},
            },
        )
        m.inputs_reviewed, m.inputs_to_review = figures.inputs_reviewed, figures.inputs_to_review
    if publish and runtime is not None:
        payload = {**progress_payload(task), "review": figures.payload()}
        await pubsub.publish_task(runtime.redis, task.app_id, task.id, payload)
    return figures


# --- labeled by --------------------------------------------------------------------------------


@dataclass
class LabeledBy:
    kind: str  # USER or MODEL
    id: str
    name: str
    annotations: int


async def _group(task_id: str, field_name: str) -> dict[str, int]:
    pipeline: list[dict[str, Any]] = [
        {"$match": {"task_id": task_id}},
        {"$group": {"_id": f"${field_name}", "n": {"$sum": 1}}},
    ]
    rows = await (await Annotation.get_pymongo_collection().aggregate(pipeline)).to_list()
    return {r["_id"]: int(r["n"] or 0) for r in rows if r["_id"]}


async def labeled_by(task_id: str) -> list[LabeledBy]:
    users = await _group(task_id, "labeled_by_user_id")
    models = await _group(task_id, "labeled_by_model_id")
    user_names = {u.id: u.email for u in await User.find({"_id": {"$in": list(users)}}).to_list()}
    model_names = {
        d["_id"]: d.get("name", "")
        for d in await ModelEntry.get_pymongo_collection()
        .find({"_id": {"$in": list(models)}}, {"name": 1})
        .to_list()
    }
    out = [LabeledBy("MODEL", i, model_names.get(i, ""), n) for i, n in models.items()]
    out += [LabeledBy("USER", i, user_names.get(i, ""), n) for i, n in users.items()]
    return sorted(out, key=lambda x: (-x.annotations, x.kind, x.id))
