"""The review and labeling rules that follow from one annotation writer (issue 10, "Why").

Each test names the bug it pins: before the writer, these actions left ghost queue items, stale
figures or let the wrong person act.
"""

from __future__ import annotations

from typing import Any

from app.annotations.models import Annotation
from app.models.models import ModelEntry
from app.review.models import Assignment, AssignmentKind
from app.tasks.models import LabelingTask
from app.tasks.progress import recount
from tests.factories import Api
from tests.review.helpers import (
    EDIT,
    LABEL_QUEUE,
    OPEN,
    UPDATE,
    Events,
    annotations,
    queue_of,
    review,
    review_setup,
    task_view,
)
from tests.tasks_engine.conftest import Drain

REMOVE = """mutation($ids: [ID!]!) { removeAnnotations(ids: $ids) { __typename
  ... on RemoveAnnotationsSuccess { removedIds errors { index code } } ... on Error { code } } }"""
DELETE_INPUT = """mutation($id: ID!) { deleteInput(id: $id) { __typename ... on Error { code } } }"""
START = """mutation($id: ID!) { startLabelingTask(id: $id) { __typename ... on Error { code message } } }"""
ADD = """mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { __typename
  ... on AddAnnotationsSuccess { annotations { id status } errors { index code field } }
  ... on Error { code field message } } }"""


async def _no_ghosts(task_id: str) -> None:
    """Every open review item has annotations waiting; every waiting annotation has an item."""
    waiting = {a.input_id for a in await annotations(task_id, status="AWAITING_REVIEW")}
    open_items = {
        a.input_id
        for a in await Assignment.find(
            {"task_id": task_id, "kind": "REVIEW", "state": {"$in": ["OPEN", "STARTED"]}}
        ).to_list()
    }
    assert open_items == waiting


async def _metrics_match(task_id: str) -> None:
    task = await LabelingTask.get(task_id)
    assert task is not None
    counted = await recount(task_id)
    assert task.metrics.annotations_approved == counted["metrics.annotations_approved"]
    assert task.metrics.annotations_awaiting_review == counted["metrics.annotations_awaiting_review"]


async def test_removed_annotations_leave_no_ghost_queue_items(api: Api, drain: Drain, asgi_app: Any) -> None:
    s = await review_setup(api, drain, inputs=2, reviewers=1)
    waiting = await annotations(s.task_id, status="AWAITING_REVIEW")
    assert len(waiting) == 2
    async with Events(asgi_app.state.runtime.redis, s.task_id) as events:
        data = await api.gql(s.w.owner, REMOVE, ids=[a.id for a in waiting])
        assert data["removeAnnotations"]["removedIds"]
        items = await events.collect()
    assert await queue_of(api, s.reviewers[0], s.task_id) == []
    removed = [e for e in items if e["type"] == "review" and e["action"] == "REMOVED"]
    assert sorted(i for e in removed for i in e["inputIds"]) == sorted(a.input_id for a in waiting)
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["review"]["reviewComplete"] is True
    assert view["metrics"]["awaitingReview"] == 0
    await _no_ghosts(s.task_id)
    await _metrics_match(s.task_id)


async def test_deleting_an_input_withdraws_its_review_and_label_items(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=2, reviewers=1)
    doomed = s.inputs[0]
    assert (await api.gql(s.w.owner, DELETE_INPUT, id=doomed))["deleteInput"]["__typename"] == "DeleteSuccess"
    queue = await queue_of(api, s.reviewers[0], s.task_id)
    assert [q["inputId"] for q in queue] == [s.inputs[1]]
    assert await Assignment.find({"input_id": doomed}).count() == 0
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["metrics"]["inputsTotal"] == 1 and view["metrics"]["awaitingReview"] == 1
    await _no_ghosts(s.task_id)
    await _metrics_match(s.task_id)


async def test_a_rerun_that_deletes_earlier_annotations_keeps_queues_right(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=3, reviewers=2, deletePreviousAnnotations=True)
    assert (await api.gql(s.w.owner, START, id=s.task_id))["startLabelingTask"][
        "__typename"
    ] == "TaskRunSuccess"
    await _no_ghosts(s.task_id)  # between the start and the first batch
    await drain()
    await _no_ghosts(s.task_id)
    await _metrics_match(s.task_id)
    counted = [len(await queue_of(api, r, s.task_id)) for r in s.reviewers]
    assert sum(counted) == 3


async def test_a_task_without_reviewers_is_reviewed_by_its_creator(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=3, reviewers=0)
    queue = await queue_of(api, s.w.owner, s.task_id)
    assert len(queue) == 3 and {q["assignedTo"] for q in queue} == {s.w.owner.user_id}
    first = queue[0]["annotations"][0]["id"]
    done = await review(api, s.w.owner, s.task_id, "APPROVE", annotationIds=[first])
    assert done["approved"] == 1
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["review"]["inputsReviewed"] == 1 and view["metrics"]["reviewed"] == 1


async def test_one_reviewed_percent_everywhere_and_a_restart_keeps_it(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=4, reviewers=1)
    item = (await queue_of(api, s.reviewers[0], s.task_id))[0]
    await review(api, s.reviewers[0], s.task_id, "APPROVE", inputIds=[item["inputId"]])
    query = """query($id: ID!, $a: ID!) {
      labelingTask(id: $id) { metrics { reviewed inputsToReview reviewedPercent } review { reviewedPercent inputsReviewed } }
      labelingTasks(appId: $a) { nodes { metrics { reviewedPercent } } } }"""
    data = await api.gql(s.w.owner, query, id=s.task_id, a=s.w.app_id)
    task = data["labelingTask"]
    assert task["review"]["reviewedPercent"] == task["metrics"]["reviewedPercent"] == 25.0
    assert data["labelingTasks"]["nodes"][0]["metrics"]["reviewedPercent"] == 25.0
    # a new run keeps what people reviewed: the figures are recounted, not reset
    assert (await api.gql(s.w.owner, START, id=s.task_id))["startLabelingTask"][
        "__typename"
    ] == "TaskRunSuccess"
    await drain()
    task = (await api.gql(s.w.owner, query, id=s.task_id, a=s.w.app_id))["labelingTask"]
    assert task["metrics"]["reviewed"] == task["review"]["inputsReviewed"] == 1
    assert task["review"]["reviewedPercent"] == task["metrics"]["reviewedPercent"]


async def test_a_removed_reviewer_cannot_finish_an_opened_item_and_it_is_handed_back(
    api: Api, drain: Drain
) -> None:
    s = await review_setup(api, drain, inputs=2, reviewers=2)
    gone, stays = s.reviewers
    mine = await queue_of(api, gone, s.task_id)
    assert mine
    opened = await api.gql(gone, OPEN, t=s.task_id, i=mine[0]["inputId"])
    assert opened["openReviewItem"]["__typename"] == "QueueItemSuccess"
    await api.gql(s.w.owner, UPDATE, i={"id": s.task_id, "reviewerIds": [stays.user_id]})
    late = await review(api, gone, s.task_id, "APPROVE", inputIds=[mine[0]["inputId"]])
    assert late["errors"][0]["code"] == "NOT_FOUND" and late["approved"] == 0
    assert {q["inputId"] for q in await queue_of(api, stays, s.task_id)} == set(s.inputs)


async def test_editing_to_a_concept_outside_the_task_is_refused_unless_added(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=1, reviewers=1)
    politics = await api.concept(s.w.owner, s.w.app_id, "politics")
    ann = (await annotations(s.task_id, status="AWAITING_REVIEW"))[0]
    refused = await api.gql(s.reviewers[0], EDIT, i={"annotationId": ann.id, "conceptId": politics})
    assert refused["editAnnotation"]["code"] == "CONCEPT_NOT_IN_TASK"
    assert refused["editAnnotation"]["field"] == "conceptId"
    cat = s.concepts["dog"]
    edited = await api.gql(s.reviewers[0], EDIT, i={"annotationId": ann.id, "conceptId": cat})
    assert edited["editAnnotation"]["annotation"]["status"] == "SUCCESS"
    stored = await Annotation.get(ann.id)
    assert stored is not None and stored.edited_by == s.reviewers[0].user_id and stored.confidence == 1.0
    added = await api.gql(
        s.w.owner, EDIT, i={"annotationId": ann.id, "conceptId": politics, "addConceptToTask": True}
    )
    assert added["editAnnotation"]["__typename"] == "AnnotationSuccess"
    task = await LabelingTask.get(s.task_id)
    assert task is not None and politics in task.concept_ids


async def test_people_label_a_task_without_auto_annotation(api: Api) -> None:
    s = await review_setup(
        api, None, inputs=4, reviewers=1, labelers=2, run=False, autoAnnotation=False, start=True
    )
    task = await LabelingTask.get(s.task_id)
    assert task is not None and task.status.value == "IN_PROGRESS" and task.metrics.inputs_total == 4
    queues = {}
    for lab in s.labelers:
        data = await api.gql(lab, LABEL_QUEUE, t=s.task_id)
        queues[lab.user_id] = [n["inputId"] for n in data["labelingQueue"]["nodes"]]
    assert sorted(len(q) for q in queues.values()) == [2, 2], "partitioned evenly"
    one, other = s.labelers
    theirs = queues[other.user_id][0]
    refused = await api.gql(
        one,
        ADD,
        i={
            "appId": s.w.app_id,
            "annotations": [{"inputId": theirs, "conceptId": s.concepts["cat"], "taskId": s.task_id}],
        },
    )
    assert refused["addAnnotations"]["errors"][0]["code"] == "NOT_YOUR_ITEM"
    for lab in s.labelers:
        items = [
            {"inputId": i, "conceptId": s.concepts["cat"], "taskId": s.task_id} for i in queues[lab.user_id]
        ]
        made = await api.gql(lab, ADD, i={"appId": s.w.app_id, "annotations": items})
        assert made["addAnnotations"]["errors"] == []
        # the task has reviewers: people's labels wait for review
        assert {a["status"] for a in made["addAnnotations"]["annotations"]} == {"AWAITING_REVIEW"}
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["status"] == "DONE" and view["metrics"]["processed"] == 4
    assert view["review"]["inputsToLabel"] == 0 and view["review"]["inputsToReview"] == 4
    # "review everything labeled by this labeler" works for a person-labeler
    done = await review(api, s.reviewers[0], s.task_id, "APPROVE", labeledBy=one.user_id)
    assert done["approved"] == 2


async def test_a_concept_outside_the_task_is_refused_when_labeling(api: Api) -> None:
    s = await review_setup(api, None, inputs=1, reviewers=0, run=False, autoAnnotation=False, start=True)
    other = await api.concept(s.w.owner, s.w.app_id, "politics")
    data = await api.gql(
        s.w.owner,
        ADD,
        i={
            "appId": s.w.app_id,
            "annotations": [{"inputId": s.inputs[0], "conceptId": other, "taskId": s.task_id}],
        },
    )
    assert data["addAnnotations"]["errors"][0]["code"] == "CONCEPT_NOT_IN_TASK"


async def test_a_model_that_fails_at_run_time_fails_its_inputs_and_the_task_closes(
    api: Api, drain: Drain
) -> None:
    s = await review_setup(api, None, inputs=3, reviewers=1, run=False)
    # a model stored before adapters were checked, naming one that does not exist (any
    # non-transient failure of the model behaves the same)
    await ModelEntry.get_pymongo_collection().update_one(
        {"_id": s.model_id}, {"$set": {"adapter": "no-such-adapter"}}
    )
    assert (await api.gql(s.w.owner, START, id=s.task_id))["startLabelingTask"][
        "__typename"
    ] == "TaskRunSuccess"
    await drain()
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["status"] == "DONE" and view["metrics"]["processed"] == 3
    data = await api.gql(
        s.w.owner, "query($t: ID!) { taskInputs(taskId: $t) { nodes { state code } } }", t=s.task_id
    )
    assert {(n["state"], n["code"]) for n in data["taskInputs"]["nodes"]} == {("FAILED", "UNKNOWN_ADAPTER")}


async def test_review_items_of_a_deleted_task_go_with_it(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=2, reviewers=1)
    data = await api.gql(
        s.w.owner, "mutation($id: ID!) { deleteLabelingTask(id: $id) { __typename } }", id=s.task_id
    )
    assert data["deleteLabelingTask"]["__typename"] == "DeleteSuccess"
    assert await Assignment.find({"task_id": s.task_id, "kind": AssignmentKind.REVIEW.value}).count() == 0


REMOVE_MEMBER = """mutation($i: RemoveCollaboratorInput!) { removeCollaborator(input: $i) { __typename
  ... on Error { code } } }"""


async def test_owners_see_and_take_over_work_whose_reviewer_left_the_app(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=4, reviewers=2)
    gone = s.reviewers[0]
    theirs = {q["inputId"] for q in await queue_of(api, gone, s.task_id)}
    assert theirs
    data = await api.gql(s.w.owner, REMOVE_MEMBER, i={"appId": s.w.app_id, "userId": gone.user_id})
    assert data["removeCollaborator"]["__typename"] != "NotFoundError", data
    seen = await queue_of(api, s.w.owner, s.task_id)
    assert {q["inputId"] for q in seen} == theirs, "the owner sees the orphaned items (and only those)"
    taken = await api.gql(s.w.owner, OPEN, t=s.task_id, i=sorted(theirs)[0])
    assert taken["openReviewItem"]["__typename"] == "QueueItemSuccess"
    item = next(q for q in await queue_of(api, s.w.owner, s.task_id) if q["inputId"] == sorted(theirs)[0])
    assert item["assignedTo"] == s.w.owner.user_id and item["state"] == "STARTED"
    done = await review(api, s.w.owner, s.task_id, "APPROVE", inputIds=[item["inputId"]])
    assert done["approved"] == 1
    await _no_ghosts(s.task_id)


async def test_the_creator_labels_what_the_model_left_empty_when_nobody_is_named(
    api: Api, drain: Drain
) -> None:
    s = await review_setup(
        api, drain, inputs=2, reviewers=0, predictions=[{"concept": "cat", "confidence": 0.2}]
    )
    data = await api.gql(s.w.owner, LABEL_QUEUE, t=s.task_id)
    nodes = data["labelingQueue"]["nodes"]
    assert sorted(n["inputId"] for n in nodes) == sorted(s.inputs)
    assert {n["assignedTo"] for n in nodes} == {s.w.owner.user_id} and {n["reason"] for n in nodes} == {
        "EMPTY"
    }
    view = await task_view(api, s.w.owner, s.task_id)
    assert view["review"]["labelingActive"] is True and view["review"]["inputsToLabel"] == 2


async def test_work_returning_to_a_finished_input_goes_to_a_current_reviewer(api: Api, drain: Drain) -> None:
    """Found by the stateful test: the creator finished an input's review while the task named no
    reviewers; reviewers were named; a re-run brought a removed prediction back, and the finished
    item reopened for the creator, who no longer reviews the task."""
    preds = [
        {"concept": "cat", "confidence": 0.7},
        {"concept": "bird", "confidence": 0.6},
        {"concept": "dog", "confidence": 0.95},
    ]
    s = await review_setup(api, drain, inputs=1, reviewers=0, predictions=preds)
    waiting = {a.concept_id: a for a in await annotations(s.task_id, status="AWAITING_REVIEW")}
    removed = await api.gql(s.w.owner, REMOVE, ids=[waiting[s.concepts["cat"]].id])
    assert removed["removeAnnotations"]["removedIds"]
    done = await review(api, s.w.owner, s.task_id, "APPROVE", annotationIds=[waiting[s.concepts["bird"]].id])
    assert done["approved"] == 1
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    updated = await api.gql(s.w.owner, UPDATE, i={"id": s.task_id, "reviewerIds": [reviewer.user_id]})
    assert updated["updateLabelingTask"]["__typename"] == "LabelingTaskSuccess"
    assert (await api.gql(s.w.owner, START, id=s.task_id))["startLabelingTask"][
        "__typename"
    ] == "TaskRunSuccess"
    await drain()
    back = await annotations(s.task_id, status="AWAITING_REVIEW")
    assert [a.concept_id for a in back] == [s.concepts["cat"]]
    items = await Assignment.find({"task_id": s.task_id, "kind": "REVIEW"}).to_list()
    assert [(i.state.value, i.user_id, i.done_by) for i in items] == [("OPEN", reviewer.user_id, None)]
    assert [q["inputId"] for q in await queue_of(api, reviewer, s.task_id)] == s.inputs
    assert await queue_of(api, s.w.owner, s.task_id) == []
    await _no_ghosts(s.task_id)
