"""Partitioned review end to end: API -> worker -> assignments -> queues -> actions -> metrics."""

from __future__ import annotations

from typing import Any

from app.annotations.models import AnnotationStatus
from app.review.models import Assignment, AssignmentKind
from tests.factories import Api
from tests.review.helpers import (
    EDIT,
    LABEL_QUEUE,
    OPEN,
    UPDATE,
    Events,
    annotations,
    open_counts,
    queue_of,
    review,
    review_setup,
    spread,
    task_view,
)
from tests.tasks_engine.conftest import Drain


async def test_inputs_waiting_for_review_are_split_evenly_each_to_one_reviewer(
    api: Api, drain: Drain, asgi_app: Any
) -> None:
    s = await review_setup(api, drain, inputs=10, reviewers=3, run=False)
    async with Events(asgi_app.state.runtime.redis, s.task_id) as events:
        await api.gql(
            s.w.owner, "mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }", id=s.task_id
        )
        await drain()
        seen = await events.collect()
    docs = await Assignment.find({"task_id": s.task_id, "kind": "REVIEW"}).to_list()
    assert sorted(d.input_id for d in docs) == sorted(s.inputs)  # every input once
    people = [r.user_id for r in s.reviewers]
    counts = await open_counts(s.task_id)
    assert sorted(counts.values()) == [3, 3, 4] and set(counts) == set(people)
    # each reviewer's queue is exactly their assignments
    for r in s.reviewers:
        items = await queue_of(api, r, s.task_id)
        assert {i["inputId"] for i in items} == {d.input_id for d in docs if d.user_id == r.user_id}
        assert all(i["assignedTo"] == r.user_id and i["waiting"] == 1 for i in items)
    # one ADDED event per reviewer naming their inputs; progress events too
    added: dict[str, set[str]] = {}
    for e in seen:
        if e["type"] == "review" and e["action"] == "ADDED":
            added.setdefault(e["reviewerId"], set()).update(e["inputIds"])
    assert added == {p: {d.input_id for d in docs if d.user_id == p} for p in people}
    task = await task_view(api, s.w.owner, s.task_id)
    assert task["review"]["inputsToReview"] == 10 and task["review"]["reviewComplete"] is False
    assert sorted(r["assigned"] for r in task["review"]["reviewers"]) == [3, 3, 4]


async def test_reviewer_changes_move_only_unstarted_work_and_keep_counts_within_one(
    api: Api, drain: Drain
) -> None:
    s = await review_setup(api, drain, inputs=12, reviewers=2)
    r1, r2 = s.reviewers
    assert await open_counts(s.task_id) == {r1.user_id: 6, r2.user_id: 6}
    started = [i["inputId"] for i in (await queue_of(api, r1, s.task_id))[:2]]
    for input_id in started:
        opened = (await api.gql(r1, OPEN, t=s.task_id, i=input_id))["openReviewItem"]
        assert opened["item"]["state"] == "STARTED"
    r3 = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    people = [r1.user_id, r2.user_id, r3.user_id]
    result = await api.gql(s.w.owner, UPDATE, i={"id": s.task_id, "reviewerIds": people})
    assert result["updateLabelingTask"]["__typename"] == "LabelingTaskSuccess"
    counts = await open_counts(s.task_id)
    assert counts == {p: 4 for p in people}
    mine = {d.input_id: d.user_id for d in await Assignment.find({"task_id": s.task_id}).to_list()}
    assert all(mine[i] == r1.user_id for i in started)  # started work stayed
    # r2 leaves: their (unstarted) items go to the others
    await api.gql(s.w.owner, UPDATE, i={"id": s.task_id, "reviewerIds": [r1.user_id, r3.user_id]})
    counts = await open_counts(s.task_id)
    assert counts == {r1.user_id: 6, r3.user_id: 6}
    assert all(mine[i] == r1.user_id for i in started)
    # weights change nothing under EVENLY
    await api.gql(
        s.w.owner,
        UPDATE,
        i={
            "id": s.task_id,
            "reviewerWeights": [{"userId": r1.user_id, "weight": 1}, {"userId": r3.user_id, "weight": 3}],
        },
    )
    assert await open_counts(s.task_id) == {r1.user_id: 6, r3.user_id: 6}
    assert spread(await open_counts(s.task_id), [r1.user_id, r3.user_id]) <= 1


async def test_weighted_partition_follows_the_weights(api: Api, drain: Drain) -> None:
    w = await review_setup(api, drain, inputs=20, reviewers=2, partitionStrategy="WEIGHTED", run=False)
    a, b = w.reviewers
    weights = [{"userId": a.user_id, "weight": 1}, {"userId": b.user_id, "weight": 3}]
    await api.gql(w.w.owner, UPDATE, i={"id": w.task_id, "reviewerWeights": weights})
    await api.gql(w.w.owner, "mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }", id=w.task_id)
    await drain()
    assert await open_counts(w.task_id) == {a.user_id: 5, b.user_id: 15}
    # a third reviewer with weight 4 takes unstarted work until the shares match 1:3:4
    c = await api.member(w.w.owner, w.w.app_id, ["REVIEWER"])
    weights.append({"userId": c.user_id, "weight": 4})
    await api.gql(
        w.w.owner,
        UPDATE,
        i={"id": w.task_id, "reviewerIds": [a.user_id, b.user_id, c.user_id], "reviewerWeights": weights},
    )
    counts = await open_counts(w.task_id)
    assert sum(counts.values()) == 20
    for x, weight in ((a, 1), (b, 3), (c, 4)):
        assert abs(counts[x.user_id] - 20 * weight / 8) <= 1, counts


async def test_a_reviewer_sees_and_acts_only_on_their_own_items(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=6, reviewers=2)
    r1, r2 = s.reviewers
    q1, q2 = await queue_of(api, r1, s.task_id), await queue_of(api, r2, s.task_id)
    assert {i["inputId"] for i in q1}.isdisjoint({i["inputId"] for i in q2})
    theirs = q2[0]
    ann = theirs["annotations"][0]["id"]
    res = await review(api, r1, s.task_id, "APPROVE", annotationIds=[ann])
    assert res["changedIds"] == [] and [(e["code"], e["field"]) for e in res["errors"]] == [
        ("NOT_FOUND", "annotationIds.0")
    ]
    res = await review(api, r1, s.task_id, "REJECT", inputIds=[theirs["inputId"]])
    assert [(e["code"], e["field"]) for e in res["errors"]] == [("NOT_FOUND", "inputIds.0")]
    opened = (await api.gql(r1, OPEN, t=s.task_id, i=theirs["inputId"]))["openReviewItem"]
    assert (opened["__typename"], opened["code"]) == ("NotFoundError", "NOT_FOUND")
    edited = (await api.gql(r1, EDIT, i={"annotationId": ann, "conceptId": s.concepts["dog"]}))[
        "editAnnotation"
    ]
    assert edited["code"] == "NOT_FOUND"
    # bulk by labeler from a reviewer covers only their own inputs
    res = await review(api, r1, s.task_id, "APPROVE", labeledBy=s.model_id)
    assert res["approved"] == len(q1)
    left = await annotations(s.task_id, status="AWAITING_REVIEW")
    assert {a.input_id for a in left} == {i["inputId"] for i in q2}
    # another app's member: the task does not exist for them
    errors = await api.gql_errors(
        s.w.stranger, "query($t: ID!) { reviewQueue(taskId: $t) { nodes { id } } }", t=s.task_id
    )
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    res = await review(api, s.w.stranger, s.task_id, "APPROVE", labeledBy=s.model_id)
    assert (res["__typename"], res["code"]) == ("NotFoundError", "NOT_FOUND")
    # a labeler (no reviewer role) may not review
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    res = await review(api, labeler, s.task_id, "APPROVE", labeledBy=s.model_id)
    assert res["code"] == "PERMISSION_DENIED"


async def test_every_action_records_who_and_when_and_moves_the_metrics(
    api: Api, drain: Drain, asgi_app: Any
) -> None:
    s = await review_setup(api, drain, inputs=4, reviewers=1, labelers=1)
    (r,) = s.reviewers
    items = await queue_of(api, r, s.task_id)
    assert len(items) == 4
    before = await task_view(api, s.w.owner, s.task_id)
    assert before["metrics"]["approved"] == 4 and before["metrics"]["awaitingReview"] == 4
    ids = [i["annotations"][0]["id"] for i in items]
    async with Events(asgi_app.state.runtime.redis, s.task_id) as events:
        approve = await review(api, r, s.task_id, "APPROVE", annotationIds=[ids[0]])
        reject = await review(api, r, s.task_id, "REJECT", inputIds=[items[1]["inputId"]])
        changes = await review(api, r, s.task_id, "REQUEST_CHANGES", annotationIds=[ids[2]])
        box = {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6}
        edit = await api.gql(r, EDIT, i={"annotationId": ids[3], "conceptId": s.concepts["dog"], "box": box})
        seen = await events.collect()
    assert (approve["approved"], reject["rejected"], changes["changesRequested"]) == (1, 1, 1)
    statuses = {a.id: a for a in await annotations(s.task_id)}
    assert statuses[ids[0]].status is AnnotationStatus.SUCCESS
    assert statuses[ids[1]].status is AnnotationStatus.REVIEW_DENIED
    assert statuses[ids[2]].status is AnnotationStatus.PENDING
    edited = edit["editAnnotation"]["annotation"]
    assert edited["status"] == "SUCCESS" and edited["conceptId"] == s.concepts["dog"] and edited["box"] == box
    assert edited["reviewAction"] == "EDIT"
    for ident, action in zip(ids, ["APPROVE", "REJECT", "REQUEST_CHANGES", "EDIT"], strict=True):
        assert statuses[ident].reviewed_by == r.user_id and statuses[ident].review_action == action
        assert statuses[ident].reviewed_at is not None
    after = await task_view(api, s.w.owner, s.task_id)
    assert after["metrics"]["approved"] == 6 and after["metrics"]["awaitingReview"] == 0
    assert after["metrics"]["reviewed"] == 4
    assert after["review"] | {"reviewers": None} == {
        "inputsToReview": 4,
        "inputsReviewed": 4,
        "reviewedPercent": 100.0,
        "reviewComplete": True,
        "inputsToLabel": 1,  # the input sent back with request-changes
        "labelingActive": True,
        "reviewers": None,
    }
    assert after["review"]["reviewers"] == [{"userId": r.user_id, "assigned": 4, "done": 4, "percent": 100.0}]
    assert await queue_of(api, r, s.task_id) == []
    # events: each item left the reviewer's queue; progress carried the review figures
    removed = {i for e in seen if e["type"] == "review" and e["action"] == "REMOVED" for i in e["inputIds"]}
    assert removed == {i["inputId"] for i in items}
    progress = [e for e in seen if e["type"] == "task"]
    assert progress and progress[-1]["review"]["reviewedPercent"] == 100.0
    # the input with changes requested waits for the labeler; labeling it finishes it
    (labeler,) = s.labelers
    queue = (await api.gql(labeler, LABEL_QUEUE, t=s.task_id))["labelingQueue"]["nodes"]
    assert [(q["inputId"], q["reason"]) for q in queue] == [(statuses[ids[2]].input_id, "CHANGES_REQUESTED")]
    added = await api.gql(
        labeler,
        """mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { __typename } }""",
        i={
            "appId": s.w.app_id,
            "annotations": [
                {"inputId": queue[0]["inputId"], "conceptId": s.concepts["cat"], "taskId": s.task_id}
            ],
        },
    )
    assert added["addAnnotations"]["__typename"] == "AddAnnotationsSuccess"
    final = await task_view(api, s.w.owner, s.task_id)
    assert final["review"]["inputsToLabel"] == 0 and final["review"]["labelingActive"] is False
    by = {(x["kind"], x["id"]): x["annotations"] for x in final["labeledBy"]}
    assert by == {("MODEL", s.model_id): 8, ("USER", labeler.user_id): 1}
    # acting twice on the same annotation is refused with a code
    again = await review(api, r, s.task_id, "APPROVE", annotationIds=[ids[0], ids[0]])
    assert [e["code"] for e in again["errors"]] == ["NOT_AWAITING_REVIEW", "NOT_AWAITING_REVIEW"]
    bad = await review(api, r, s.task_id, "APPROVE")
    assert (bad["code"], bad["field"]) == ("SELECTION_REQUIRED", "annotationIds")


async def test_bulk_approve_by_model_approves_every_waiting_annotation_of_the_task(
    api: Api, drain: Drain
) -> None:
    s = await review_setup(api, drain, inputs=9, reviewers=3)
    res = await review(api, s.w.owner, s.task_id, "APPROVE", labeledBy=s.model_id)
    assert res["approved"] == 9 and len(res["changedIds"]) == 9
    assert await annotations(s.task_id, status="AWAITING_REVIEW") == []
    assert all(
        a.reviewed_by == s.w.owner.user_id for a in await annotations(s.task_id, review_action="APPROVE")
    )
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["metrics"]["approved"] == 18 and view["metrics"]["reviewed"] == 9
    assert view["review"]["reviewComplete"] is True
    assert all(r["done"] == r["assigned"] == 3 for r in view["review"]["reviewers"])


async def test_queue_least_confident_first_or_oldest_with_concept_filter(api: Api, drain: Drain) -> None:
    s = await review_setup(
        api,
        drain,
        inputs=5,
        reviewers=1,
        predictions=[{"concept": "cat", "confidence": 0.88}, {"concept": "dog", "confidence": 0.6}],
    )
    (r,) = s.reviewers
    # give each input its own confidence through the stored predictions, then re-route them
    from app.predictions.models import Prediction

    for k, input_id in enumerate(s.inputs):
        await Prediction.get_pymongo_collection().update_many(
            {"task_id": s.task_id, "input_id": input_id, "model_concept_id": "dog"},
            {"$set": {"confidence": 0.85 - 0.05 * k}},
        )
        if k % 2:
            await Prediction.get_pymongo_collection().update_many(
                {"task_id": s.task_id, "input_id": input_id, "model_concept_id": "cat"},
                {"$set": {"confidence": 0.95}},
            )
    res = await api.gql(
        s.w.owner,
        "mutation($i: ReapplyThresholdsInput!) { reapplyThresholds(input: $i) { __typename } }",
        i={"taskId": s.task_id, "dryRun": False},
    )
    assert res["reapplyThresholds"]["__typename"] == "ReapplyThresholdsSuccess"
    items = await queue_of(api, r, s.task_id)
    assert [i["inputId"] for i in items] == list(reversed(s.inputs))
    assert [i["minConfidence"] for i in items] == sorted(i["minConfidence"] for i in items)
    oldest = await queue_of(api, r, s.task_id, o="OLDEST")
    assert sorted(i["inputId"] for i in oldest) == sorted(s.inputs)
    cats = await queue_of(api, r, s.task_id, c=[s.concepts["cat"]])
    assert sorted(i["inputId"] for i in cats) == sorted(s.inputs[0::2])  # cat waits only on even inputs
    assert all(i["state"] == "OPEN" for i in items)
    opened = (await api.gql(r, OPEN, t=s.task_id, i=items[0]["inputId"]))["openReviewItem"]
    assert opened["item"]["state"] == "STARTED"
    assert (await queue_of(api, r, s.task_id))[0]["state"] == "STARTED"


async def test_consensus_needs_n_distinct_approvals(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=3, reviewers=3, approvalThresholdReviewers=2)
    docs = await Assignment.find({"task_id": s.task_id, "kind": "REVIEW"}).to_list()
    by_input: dict[str, list[str | None]] = {}
    for d in docs:
        by_input.setdefault(d.input_id, []).append(d.user_id)
    assert all(len(set(v)) == 2 for v in by_input.values()) and len(by_input) == 3
    assert sorted((await open_counts(s.task_id)).values()) == [2, 2, 2]
    input_id, (first, second) = next(iter(by_input.items()))
    callers = {r.user_id: r for r in s.reviewers}
    res = await review(api, callers[first], s.task_id, "APPROVE", inputIds=[input_id])
    assert (res["approved"], res["awaitingConsensus"]) == (0, 1)
    (ann,) = await annotations(s.task_id, input_id=input_id, concept_id=s.concepts["cat"])
    assert ann.status is AnnotationStatus.AWAITING_CONSENSUS_REVIEW and ann.approved_by == [first]
    assert input_id not in {i["inputId"] for i in await queue_of(api, callers[first], s.task_id)}
    again = await review(api, callers[first], s.task_id, "APPROVE", annotationIds=[ann.id])
    assert again["errors"][0]["code"] == "NOT_AWAITING_REVIEW"
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["review"]["inputsReviewed"] == 0
    res = await review(api, callers[second], s.task_id, "APPROVE", inputIds=[input_id])
    assert res["approved"] == 1
    (ann,) = await annotations(s.task_id, input_id=input_id, concept_id=s.concepts["cat"])
    assert ann.status is AnnotationStatus.SUCCESS and sorted(ann.approved_by) == sorted([first, second])
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["review"]["inputsReviewed"] == 1 and view["metrics"]["reviewed"] == 1


async def test_inputs_the_model_left_unlabeled_go_evenly_to_labelers(api: Api, drain: Drain) -> None:
    s = await review_setup(
        api,
        drain,
        inputs=5,
        reviewers=1,
        labelers=2,
        predictions=[{"concept": "cat", "confidence": 0.2}],
    )
    counts = await open_counts(s.task_id, AssignmentKind.LABEL)
    assert sorted(counts.values()) == [2, 3]
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["review"]["inputsToLabel"] == 5 and view["review"]["labelingActive"] is True
    assert view["review"]["inputsToReview"] == 0 and view["review"]["reviewComplete"] is True
    a, b = s.labelers
    qa = (await api.gql(a, LABEL_QUEUE, t=s.task_id))["labelingQueue"]["nodes"]
    qb = (await api.gql(b, LABEL_QUEUE, t=s.task_id))["labelingQueue"]["nodes"]
    assert {q["inputId"] for q in qa} | {q["inputId"] for q in qb} == set(s.inputs)
    assert all(q["reason"] == "EMPTY" for q in qa + qb)
