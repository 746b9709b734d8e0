"""Threshold routing at the exact boundaries, with every inclusive flag."""

from __future__ import annotations

import pytest

from app.tasks.models import ConceptMapping, ConceptThreshold, LabelingTask, ThresholdRange
from app.tasks.routing import Route, build_router, route

A, R, D = Route.APPROVE, Route.REVIEW, Route.DISCARD


@pytest.mark.parametrize(
    ("lower_inc", "upper_inc", "at_lower", "at_upper"),
    [(True, True, R, A), (False, True, D, A), (True, False, R, R), (False, False, D, R)],
)
def test_boundaries_follow_the_inclusive_flags(
    lower_inc: bool, upper_inc: bool, at_lower: Route, at_upper: Route
) -> None:
    rng = ThresholdRange(lower=0.5, upper=0.9, lower_inclusive=lower_inc, upper_inclusive=upper_inc)
    assert route(0.5, rng) is at_lower
    assert route(0.9, rng) is at_upper
    assert route(0.4999999, rng) is D
    assert route(0.5000001, rng) is R
    assert route(0.8999999, rng) is R
    assert route(0.9000001, rng) is A
    assert route(0.0, rng) is D and route(1.0, rng) is A


def test_equal_lower_and_upper_leave_no_review_band_unless_flags_allow() -> None:
    both = ThresholdRange(lower=0.7, upper=0.7)
    assert route(0.7, both) is A and route(0.69, both) is D
    upper_open = ThresholdRange(lower=0.7, upper=0.7, upper_inclusive=False)
    assert route(0.7, upper_open) is R


def test_extremes_zero_and_one() -> None:
    everything = ThresholdRange(lower=0.0, upper=0.0)
    assert route(0.0, everything) is A
    nothing_auto = ThresholdRange(lower=0.0, upper=1.0, upper_inclusive=False)
    assert route(1.0, nothing_auto) is R and route(0.0, nothing_auto) is R


def _task(**kw: object) -> LabelingTask:
    fields: dict[str, object] = {"concept_mapping": [], "concept_thresholds": [], **kw}
    return LabelingTask.model_construct(
        app_id="a",
        name="t",
        dataset_id="d",
        concept_ids=["c-cat", "c-pet"],
        created_by="u",
        thresholds=ThresholdRange(lower=0.5, upper=0.9),
        **fields,
    )


def test_per_concept_range_wins_over_global() -> None:
    task = _task(
        concept_thresholds=[ConceptThreshold(concept_id="c-cat", range=ThresholdRange(lower=0.1, upper=0.2))]
    )
    router = build_router(task, [("c-cat", "cat"), ("c-pet", "pet")])
    assert router.route("c-cat", 0.3) is A
    assert router.route("c-pet", 0.3) is D


def test_mapping_is_many_to_one_and_names_match_without_case() -> None:
    task = _task(
        concept_mapping=[
            ConceptMapping(model_concept_id="n02124075", concept_id="c-pet"),
            ConceptMapping(model_concept_id="n02085620", concept_id="c-pet"),
        ]
    )
    router = build_router(task, [("c-cat", "Cat"), ("c-pet", "pet")])
    assert router.concept_for("n02124075") == "c-pet"
    assert router.concept_for("n02085620") == "c-pet"
    assert router.concept_for("cat") == "c-cat"
    assert router.concept_for("n99", "CAT") == "c-cat"
    assert router.concept_for("dog") is None
