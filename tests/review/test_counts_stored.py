"""The assignment counts a holder of a task's lock leaves for the next one (``AssignmentCounts``).

A holder starts from them instead of grouping every assignment of the task, so they must equal
a fresh count whenever they are trusted: after every writer, inside the lock or outside it, and
after a holder that died or raced a writer outside the lock."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.review import assign
from app.review.models import AssignmentCounts
from app.tasks.models import LabelingTask
from tests.factories import Api
from tests.review.helpers import OPEN, UPDATE, ReviewSetup, queue_of, review, review_setup
from tests.review.test_ownership import ADD
from tests.tasks_engine.conftest import Drain

DELETE_INPUTS = """mutation($ids: [ID!]!) { deleteInputs(ids: $ids) {
  __typename ... on DeleteInputsSuccess { ids } ... on Error { code field } } }"""


async def _task(task_id: str) -> LabelingTask:
    task = await LabelingTask.get(task_id)
    assert task is not None
    return task


async def stored(task_id: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await AssignmentCounts.get_pymongo_collection().find_one({"_id": task_id})
    return doc


async def assert_trusted_counts_are_fresh(task_id: str) -> None:
    """What the next holder would start from equals a fresh ``$group`` (or it will group)."""
    doc = await stored(task_id)
    if doc is None or doc["holder"] is not None:
        return
    kept = dict(zip(doc["buckets"], doc["counts"], strict=True))
    assert kept == await assign.bucket_counts(task_id)


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tasks whose assignments were grouped (``bucket_counts``, still run for real)."""
    seen: list[str] = []
    real = assign.bucket_counts

    async def counting(task_id: str) -> dict[str, int]:
        seen.append(task_id)
        return await real(task_id)

    monkeypatch.setattr(assign, "bucket_counts", counting)
    return seen


async def test_a_holder_starts_from_the_counts_the_last_one_left(
    api: Api, drain: Drain, groups: list[str]
) -> None:
    s = await review_setup(api, drain, inputs=6, reviewers=2)
    doc = await stored(s.task_id)
    assert doc is not None and doc["holder"] is None and doc["app_id"] == s.w.app_id
    await assert_trusted_counts_are_fresh(s.task_id)
    groups.clear()

    changes = await assign.sync_inputs(await _task(s.task_id), s.inputs, reason="ROUTED")

    assert groups == [], "the stored counts stood for a $group"
    await assert_trusted_counts_are_fresh(s.task_id)
    assert changes.counts_after == await assign.bucket_counts(s.task_id)


async def _open_an_item(api: Api, s: ReviewSetup) -> None:
    reviewer = s.reviewers[0]
    item = (await queue_of(api, reviewer, s.task_id))[0]
    data = await api.gql(reviewer, OPEN, t=s.task_id, i=item["inputId"])
    assert data["openReviewItem"]["__typename"] == "QueueItemSuccess", data


async def _delete_inputs(api: Api, s: ReviewSetup) -> None:
    data = await api.gql(s.w.owner, DELETE_INPUTS, ids=s.inputs[:2])
    assert data["deleteInputs"]["__typename"] == "DeleteInputsSuccess", data


async def _change_reviewers(api: Api, s: ReviewSetup) -> None:
    data = await api.gql(s.w.owner, UPDATE, i={"id": s.task_id, "reviewerIds": [s.reviewers[0].user_id]})
    assert data["updateLabelingTask"]["__typename"] == "LabelingTaskSuccess", data


async def _approve(api: Api, s: ReviewSetup) -> None:
    decided = await review(api, s.reviewers[0], s.task_id, "APPROVE", inputIds=s.inputs)
    assert decided["__typename"] == "ReviewAnnotationsSuccess", decided


async def _label(api: Api, s: ReviewSetup) -> None:
    for lab in s.labelers:
        data = await api.gql(
            lab, "query($t: ID!) { labelingQueue(taskId: $t, first: 50) { nodes { inputId } } }", t=s.task_id
        )
        items = [
            {"inputId": n["inputId"], "conceptId": s.concepts["cat"], "taskId": s.task_id}
            for n in data["labelingQueue"]["nodes"][:1]
        ]
        made = await api.gql(lab, ADD, i={"appId": s.w.app_id, "annotations": items})
        assert made["addAnnotations"]["errors"] == [], made


async def _delete_task(api: Api, s: ReviewSetup) -> None:
    data = await api.gql(
        s.w.owner, "mutation($id: ID!) { deleteLabelingTask(id: $id) { __typename } }", id=s.task_id
    )
    assert data["deleteLabelingTask"]["__typename"] == "DeleteSuccess"


WRITERS: dict[str, Callable[[Api, ReviewSetup], Awaitable[None]]] = {
    "open-a-review-item": _open_an_item,  # OPEN -> STARTED, outside the lock
    "delete-inputs": _delete_inputs,  # their assignments go, outside the lock
    "change-reviewers": _change_reviewers,  # rebalancing moves open work (under the lock)
    "approve": _approve,  # reconciled under the lock
    "label": _label,  # the labeler's items become DONE, outside the lock
    "delete-the-task": _delete_task,
}


@pytest.mark.parametrize("writer", list(WRITERS))
async def test_the_counts_a_holder_would_trust_equal_a_fresh_count_after_every_writer(
    api: Api, drain: Drain, writer: str
) -> None:
    labeling = writer == "label"
    s = await review_setup(
        api,
        drain,
        inputs=6,
        reviewers=2,
        labelers=2 if labeling else 0,
        predictions=[{"concept": "cat", "confidence": 0.2}] if labeling else None,
    )
    assert await stored(s.task_id) is not None

    await WRITERS[writer](api, s)

    await assert_trusted_counts_are_fresh(s.task_id)
    if writer == "delete-the-task":
        assert await stored(s.task_id) is None
        return
    # and the next reconciliation starts from true counts again
    changes = await assign.sync_inputs(await _task(s.task_id), s.inputs, reason="ROUTED")
    if changes.counts_after is not None:
        assert changes.counts_after == await assign.bucket_counts(s.task_id)
    await assert_trusted_counts_are_fresh(s.task_id)


async def test_a_holder_that_died_leaves_counts_nobody_trusts(
    api: Api, drain: Drain, groups: list[str]
) -> None:
    s = await review_setup(api, drain, inputs=4, reviewers=2)
    task = await _task(s.task_id)
    await assign.counts_under_lock(task, "a-holder-that-dies")  # then never keeps its counts
    doc = await stored(s.task_id)
    assert doc is not None and doc["holder"] == "a-holder-that-dies"
    groups.clear()

    changes = await assign.sync_inputs(task, s.inputs, reason="ROUTED")

    assert groups == [s.task_id], "counted again"
    assert changes.counts_after == await assign.bucket_counts(s.task_id)
    await assert_trusted_counts_are_fresh(s.task_id)


async def test_a_write_outside_the_lock_while_a_holder_works_leaves_nothing_stored(
    api: Api, drain: Drain
) -> None:
    s = await review_setup(api, drain, inputs=4, reviewers=2)
    task = await _task(s.task_id)
    counts, counted_at = await assign.counts_under_lock(task, "holder")
    await assign.forget_counts([s.task_id])  # a writer outside the lock, meanwhile

    await assign.keep_counts(s.task_id, "holder", counts, counted_at)

    assert await stored(s.task_id) is None


async def test_counts_grouped_too_long_ago_are_grouped_again(
    api: Api, drain: Drain, groups: list[str]
) -> None:
    s = await review_setup(api, drain, inputs=4, reviewers=2)
    await AssignmentCounts.get_pymongo_collection().update_one(
        {"_id": s.task_id}, {"$set": {"counted_at": time.time() - assign.RECOUNT_AFTER_S - 1}}
    )
    groups.clear()

    await assign.sync_inputs(await _task(s.task_id), s.inputs, reason="ROUTED")

    assert groups == [s.task_id]
    doc = await stored(s.task_id)
    assert doc is not None and time.time() - doc["counted_at"] < assign.RECOUNT_AFTER_S


async def test_deleting_the_app_deletes_its_stored_counts(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=2, reviewers=1)
    assert await stored(s.task_id) is not None
    data = await api.gql(s.w.owner, "mutation($id: ID!) { deleteApp(id: $id) { __typename } }", id=s.w.app_id)
    assert data["deleteApp"]["__typename"] == "DeleteSuccess", data
    assert await stored(s.task_id) is None
