"""Audit sampling: the asked share of auto-approved annotations, the same ones on every run."""

from __future__ import annotations

from app.annotations.models import Annotation
from app.review.audit import rank, sample_size
from tests.factories import Api
from tests.review.helpers import open_counts, review_setup, task_view
from tests.tasks_engine.conftest import Drain

APPROVED = [{"concept": "cat", "confidence": 0.95}, {"concept": "dog", "confidence": 0.97}]


async def _audited(task_id: str) -> set[str]:
    return {
        a.key
        for a in await Annotation.find(
            {"task_id": task_id, "audit": True, "status": "AWAITING_REVIEW"}
        ).to_list()
    }


async def test_audit_sample_has_the_asked_size_and_is_the_same_on_a_rerun(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=23, reviewers=2, predictions=APPROVED, auditPercent=10)
    first = await _audited(s.task_id)
    population = 46
    assert abs(len(first) - population * 10 / 100) <= 1 and len(first) == sample_size(population, 10) == 5
    # deterministic: the smallest hashes of the annotation keys
    keys = sorted((a.key for a in await Annotation.find({"task_id": s.task_id}).to_list()), key=rank)
    assert first == set(keys[:5])
    # the sampled inputs wait for review, partitioned like any other
    counts = await open_counts(s.task_id)
    assert sum(counts.values()) == len({k.split("|")[1] for k in first})
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["metrics"]["approved"] == 41 and view["metrics"]["awaitingReview"] == 5
    # a new run of the task picks exactly the same annotations
    await api.gql(s.w.owner, "mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }", id=s.task_id)
    await drain()
    assert await _audited(s.task_id) == first
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["metrics"]["approved"] == 41 and view["metrics"]["awaitingReview"] == 5


async def test_a_bigger_percentage_gives_a_bigger_sample(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=30, reviewers=1, predictions=APPROVED, auditPercent=25)
    assert len(await _audited(s.task_id)) == 15  # 25% of 60, +-1 allowed by the rule, exact here
    bad = await api.gql(
        s.w.owner,
        "mutation($i: UpdateLabelingTaskInput!) { updateLabelingTask(input: $i) { __typename ... on Error { code field } } }",
        i={"id": s.task_id, "auditPercent": 101},
    )
    assert bad["updateLabelingTask"] == {
        "__typename": "ValidationError",
        "code": "OUT_OF_RANGE",
        "field": "auditPercent",
    }
