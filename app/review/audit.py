"""Audit sampling: a task's ``audit_percent`` of its auto-approved annotations go to review too.

The sample is the ``round(N * percent / 100)`` auto-approved annotations with the smallest
SHA-256 of their annotation key (task|input|concept|region), where N counts the task's
auto-approved machine annotations (those already audited included). So the sample has exactly
the asked size, and a re-run of the task, whose annotations keep their keys, picks the same
ones. It is drawn when the task's labeling has settled (every input processed or failed),
because only then is N known; a watched dataset's new inputs draw it again.

Sampled annotations are ``AWAITING_REVIEW`` with ``audit = true``; annotations audited and
already reviewed stay as reviewed and count towards the sample.
"""

from __future__ import annotations

import hashlib
from typing import Any

from app.annotations import store
from app.annotations.models import Annotation, AnnotationStatus
from app.tasks.models import LabelingTask

SUCCESS = AnnotationStatus.SUCCESS.value
AWAITING = AnnotationStatus.AWAITING_REVIEW.value


def rank(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def sample_size(population: int, percent: float) -> int:
    return int(population * percent / 100.0 + 0.5)


async def draw(runtime: Any, task: LabelingTask) -> set[str]:
    """Apply the sample through the annotation writer; returns the inputs whose annotations
    moved (from approved to review, or back)."""
    if task.audit_percent <= 0:
        return set()
    fields = {"key": 1, "status": 1, "audit": 1, "reviewed_by": 1, "labeled_by_model_id": 1, "input_id": 1,
              "app_id": 1, "task_id": 1}  # fmt: skip
    docs: list[dict[str, Any]] = (
        await Annotation.get_pymongo_collection().find({"task_id": task.id}, fields).to_list()
    )
    fixed = [d for d in docs if d.get("audit") and d.get("reviewed_by")]
    pool = [
        d
        for d in docs
        if d.get("labeled_by_model_id")
        and not d.get("reviewed_by")
        and (d["status"] == SUCCESS or (d["status"] == AWAITING and d.get("audit")))
    ]
    target = sample_size(len(pool) + len(fixed), task.audit_percent) - len(fixed)
    pool.sort(key=lambda d: rank(d["key"]))
    chosen = {d["_id"] for d in pool[: max(0, target)]}
    flag_on = [d for d in pool if d["_id"] in chosen and not (d["status"] == AWAITING and d.get("audit"))]
    flag_off = [d for d in pool if d["_id"] not in chosen and d.get("audit") and d["status"] == AWAITING]
    await store.set_audit(runtime, flag_on, flag_off)
    return {d["input_id"] for d in flag_on + flag_off}
