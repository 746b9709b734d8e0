"""Routing a prediction by confidence (pure functions; no I/O).

For a task concept the range is its per-concept entry when there is one, else the global one.
With ``lower`` / ``upper`` and their inclusive flags:

    confidence above upper, or equal to it when upper is inclusive  -> SUCCESS (auto-approved)
    otherwise above lower, or equal to it when lower is inclusive    -> AWAITING_REVIEW
    otherwise                                                        -> discarded (None)

Model concepts reach task concepts through the task's mapping (many-to-one) or, with no
mapping entry, by name (case-insensitive); unmapped model concepts are ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.tasks.models import LabelingTask, ThresholdRange


class Route(enum.StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DISCARD = "DISCARD"


def route(confidence: float, rng: ThresholdRange) -> Route:
    if confidence > rng.upper or (rng.upper_inclusive and confidence == rng.upper):
        return Route.APPROVE
    if confidence > rng.lower or (rng.lower_inclusive and confidence == rng.lower):
        return Route.REVIEW
    return Route.DISCARD


@dataclass(frozen=True)
class Router:
    """A task's routing table, built once per job."""

    default: ThresholdRange
    per_concept: Mapping[str, ThresholdRange]
    concept_of: Mapping[str, str]  # model concept id or casefolded name -> task concept id

    def concept_for(self, model_concept_id: str, model_concept_name: str | None = None) -> str | None:
        hit = self.concept_of.get(model_concept_id)
        if hit is None:
            hit = self.concept_of.get("name:" + model_concept_id.casefold())
        if hit is None and model_concept_name:
            hit = self.concept_of.get("name:" + model_concept_name.casefold())
        return hit

    def range_for(self, concept_id: str) -> ThresholdRange:
        return self.per_concept.get(concept_id, self.default)

    def route(self, concept_id: str, confidence: float) -> Route:
        return route(confidence, self.range_for(concept_id))


def build_router(
    task: LabelingTask,
    task_concepts: Iterable[tuple[str, str]],
    thresholds: ThresholdRange | None = None,
    concept_thresholds: Mapping[str, ThresholdRange] | None = None,
) -> Router:
    """``task_concepts`` are (id, name) pairs of the task's app concepts.

    ``thresholds`` / ``concept_thresholds`` override the task's own (re-apply and dry-run).
    """
    concept_of: dict[str, str] = {}
    for cid, name in task_concepts:
        concept_of["name:" + name.casefold()] = cid
    for entry in task.concept_mapping:
        concept_of[entry.model_concept_id] = entry.concept_id
    per_concept = (
        dict(concept_thresholds)
        if concept_thresholds is not None
        else {entry.concept_id: entry.range for entry in task.concept_thresholds}
    )
    return Router(
        default=thresholds or task.thresholds,
        per_concept=per_concept,
        concept_of=concept_of,
    )
