"""A reconciliation knows the task's assignment counts after its own writes (it holds the task's
lock), so routing refreshes the review figures without counting the assignments again; what it
reports must equal a fresh count, whichever way the assignments moved."""

from __future__ import annotations

from app.review import assign
from app.review.metrics import review_metrics
from app.review.models import Assignment, AssignmentState
from app.tasks.models import LabelingTask
from tests.factories import Api
from tests.review.helpers import review, review_setup
from tests.tasks_engine.conftest import Drain


async def _task(task_id: str) -> LabelingTask:
    task = await LabelingTask.get(task_id)
    assert task is not None
    return task


async def test_counts_after_a_reconciliation_equal_a_fresh_count(api: Api, drain: Drain) -> None:
    # given inputs that each wait for review (one ``cat`` annotation) after a run
    s = await review_setup(api, drain, inputs=8, reviewers=2)
    task = await _task(s.task_id)
    coll = Assignment.get_pymongo_collection()

    # when the assignments of some inputs are gone and are made again (inserts)
    await coll.delete_many({"task_id": s.task_id, "input_id": {"$in": s.inputs[:4]}})
    await assign.forget_counts([s.task_id])  # as every writer outside the task's lock does
    made = await assign.sync_inputs(task, s.inputs, label_reason="EMPTY", reason="ROUTED")
    assert not made.empty
    assert made.counts_after is not None
    assert made.counts_after == await assign.bucket_counts(s.task_id)

    # when finished items get new work (DONE -> OPEN updates)
    await coll.update_many(
        {"task_id": s.task_id, "kind": "REVIEW"},
        {"$set": {"state": AssignmentState.DONE.value, "bucket": "REVIEW|DONE|-"}},
    )
    await assign.forget_counts([s.task_id])
    reopened = await assign.sync_inputs(task, s.inputs, reason="ROUTED")
    assert reopened.counts_after == await assign.bucket_counts(s.task_id)

    # when a reviewer's decisions leave open items with nothing waiting (withdrawn: deletes)
    r1 = s.reviewers[0]
    decided = await review(api, r1, s.task_id, "APPROVE", inputIds=s.inputs)
    assert decided["__typename"] == "ReviewAnnotationsSuccess", decided
    await coll.update_many(
        {"task_id": s.task_id, "kind": "REVIEW", "state": AssignmentState.DONE.value},
        {"$set": {"state": AssignmentState.OPEN.value}},
    )
    await assign.forget_counts([s.task_id])
    withdrawn = await assign.sync_inputs(task, s.inputs, reason="ROUTED")
    assert withdrawn.counts_after == await assign.bucket_counts(s.task_id)

    # then the figures from the known counts are the figures from a fresh count
    known = await review_metrics(task, withdrawn.counts_after)
    fresh = await review_metrics(task)
    assert (known.inputs_to_review, known.inputs_reviewed, known.inputs_to_label) == (
        fresh.inputs_to_review,
        fresh.inputs_reviewed,
        fresh.inputs_to_label,
    )


async def test_a_run_leaves_the_stored_review_figures_equal_to_a_fresh_count(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=12, reviewers=2)
    task = await _task(s.task_id)
    fresh = await review_metrics(task)
    assert fresh.inputs_to_review == 12
    assert (task.metrics.inputs_to_review, task.metrics.inputs_reviewed) == (
        fresh.inputs_to_review,
        fresh.inputs_reviewed,
    )
