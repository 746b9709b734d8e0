"""Bulk actions on a selection of annotations (a search result list): one mutation, per-item
errors, every write through the annotation writer with the single actions' rules."""

from __future__ import annotations

from typing import Any

from app.annotations.models import Annotation
from tests.factories import Api, Caller
from tests.review.helpers import annotations, review_setup
from tests.search.helpers import BULK
from tests.tasks_engine.conftest import Drain


async def bulk(
    api: Api, caller: Caller, app_id: str, ids: list[str], action: str, concept: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"appId": app_id, "annotationIds": ids, "action": action}
    if concept is not None:
        body["conceptId"] = concept
    data = await api.gql(caller, BULK, i=body)
    result: dict[str, Any] = data["bulkAnnotationAction"]
    return result


async def test_approve_and_reject_follow_review_rules_with_per_item_errors(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=3, reviewers=1)
    waiting = [a.id for a in await annotations(s.task_id, status="AWAITING_REVIEW")]
    approved = [a.id for a in await annotations(s.task_id, status="SUCCESS")]
    assert len(waiting) == 3 and len(approved) == 3
    result = await bulk(api, s.w.owner, s.w.app_id, [waiting[0], approved[0], "nope", waiting[0]], "APPROVE")
    assert result["changedIds"] == [waiting[0]]
    assert [(e["index"], e["code"], e["field"]) for e in result["errors"]] == [
        (1, "NOT_AWAITING_REVIEW", "annotationIds.1"),
        (2, "NOT_FOUND", "annotationIds.2"),
        (3, "DUPLICATE", "annotationIds.3"),
    ]
    result = await bulk(api, s.w.owner, s.w.app_id, waiting[1:], "REJECT")
    assert sorted(result["changedIds"]) == sorted(waiting[1:]) and result["errors"] == []
    statuses = {a.id: a.status.value for a in await annotations(s.task_id)}
    assert statuses[waiting[0]] == "SUCCESS"
    assert statuses[waiting[1]] == statuses[waiting[2]] == "REVIEW_DENIED"
    # a stranger's call names nothing of this app
    result = await bulk(api, s.w.stranger, s.w.other_app_id, waiting, "APPROVE")
    assert {e["code"] for e in result["errors"]} == {"NOT_FOUND"} and result["changedIds"] == []


async def test_add_concept_relabel_and_remove(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=2, reviewers=1)
    extra = await api.concept(s.w.owner, s.w.app_id, "bird")
    waiting = [a.id for a in await annotations(s.task_id, status="AWAITING_REVIEW")]
    result = await bulk(api, s.w.owner, s.w.app_id, waiting, "ADD_CONCEPT", extra)
    assert len(result["changedIds"]) == 2 and result["errors"] == []
    added = await Annotation.find({"_id": {"$in": result["changedIds"]}}).to_list()
    assert {a.concept_id for a in added} == {extra}
    assert {a.input_id for a in added} == {
        a.input_id for a in await annotations(s.task_id, status="AWAITING_REVIEW")
    }
    # relabel inside the task: the concept must be one of the task's (editAnnotation's rule)
    result = await bulk(api, s.w.owner, s.w.app_id, waiting, "RELABEL", extra)
    assert {e["code"] for e in result["errors"]} == {"CONCEPT_NOT_IN_TASK"}
    dog = s.concepts["dog"]
    result = await bulk(api, s.w.owner, s.w.app_id, [waiting[0]], "RELABEL", dog)
    assert result["changedIds"] == [waiting[0]]
    doc = await Annotation.get(waiting[0])
    assert doc is not None and doc.concept_id == dog and doc.edited_by == s.w.owner.user_id
    # relabel outside any task (the annotations ADD_CONCEPT made), then a no-op relabel
    cat = s.concepts["cat"]
    result = await bulk(api, s.w.owner, s.w.app_id, [added[0].id], "RELABEL", cat)
    assert result["changedIds"] == [added[0].id]
    result = await bulk(api, s.w.owner, s.w.app_id, [added[0].id], "RELABEL", cat)
    assert result["errors"][0]["code"] == "DUPLICATE"
    # a reviewer may not remove (needs a contributor role)
    reviewer = s.reviewers[0]
    result = await bulk(api, reviewer, s.w.app_id, [added[1].id], "REMOVE")
    assert result["errors"][0]["code"] == "PERMISSION_DENIED"
    result = await bulk(api, s.w.owner, s.w.app_id, [a.id for a in added], "REMOVE")
    assert sorted(result["changedIds"]) == sorted(a.id for a in added)
    assert await Annotation.find({"_id": {"$in": [a.id for a in added]}}).to_list() == []


async def test_whole_call_errors(api: Api, drain: Drain) -> None:
    s = await review_setup(api, drain, inputs=1, reviewers=1)
    waiting = [a.id for a in await annotations(s.task_id, status="AWAITING_REVIEW")]
    assert (await bulk(api, s.w.owner, s.w.app_id, waiting, "RELABEL"))["code"] == "REQUIRED"
    assert (await bulk(api, s.w.owner, s.w.app_id, waiting, "ADD_CONCEPT", "nope"))["code"] == "NOT_FOUND"
    assert (await bulk(api, s.w.owner, s.w.app_id, [], "REMOVE"))["code"] == "EMPTY"
    assert (await bulk(api, s.w.owner, s.w.app_id, ["x"] * 21, "REMOVE"))["code"] == "TOO_MANY"
    assert (await bulk(api, s.w.stranger, s.w.app_id, waiting, "REMOVE"))["code"] == "NOT_FOUND"
