"""Labeling tasks over HTTP: validation, concept production, people, update, delete, queries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from app.annotations.models import Annotation
from app.tasks.models import LabelingTask
from tests.factories import Api, Caller, World, world
from tests.registry.factories import (
    CREATE_TASK,
    TASK_FIELDS,
    create_task,
    dataset,
    model,
    task,
    text_input,
    workflow,
)

UPDATE = "mutation($i: UpdateLabelingTaskInput!) { updateLabelingTask(input: $i) { " + TASK_FIELDS + " } }"
DELETE = """mutation($id: ID!, $d: Boolean) { deleteLabelingTask(id: $id, deleteAnnotations: $d) {
  __typename ... on DeleteSuccess { id } ... on Error { code field } } }"""
TASKS = """query($a: ID!, $f: LabelingTaskFilter, $first: Int) {
  labelingTasks(appId: $a, filter: $f, first: $first) { nodes { id name } } }"""
TASK = """query($id: ID!) { labelingTask(id: $id) { id name status model { id } workflow { id } dataset { id }
  concepts { name } metrics { inputsTotal processed labelingPercent } } }"""


@dataclass
class Setup:
    w: World
    dataset_id: str
    cat: str
    dog: str
    model_id: str  # outputs "Cat" and "Dog" (by name) and "tabby" (needs a mapping)

    def task(self, **fields: Any) -> dict[str, Any]:
        return {
            "appId": self.w.app_id,
            "datasetId": self.dataset_id,
            "modelId": self.model_id,
            "conceptIds": [self.cat, self.dog],
        } | fields


async def setup(api: Api) -> Setup:
    w = await world(api)
    return Setup(
        w=w,
        dataset_id=await dataset(w.app_id),
        cat=await api.concept(w.owner, w.app_id, "cat"),
        dog=await api.concept(w.owner, w.app_id, "dog"),
        model_id=await model(api, w.owner, w.app_id, ("CAT", "Dog", "tabby")),
    )


def code(result: dict[str, Any]) -> tuple[str, str | None]:
    return result["code"], result["field"]


async def test_create_task_is_stored_queued_with_defaults(api: Api) -> None:
    s = await setup(api)
    made = await create_task(api, s.w.owner, defaults=True, **s.task(name=" Pets "))
    assert made["__typename"] == "LabelingTaskSuccess", made
    t = made["labelingTask"]
    # auto-annotation is on by default; with an empty dataset there is nothing to label
    assert (t["name"], t["status"], t["priority"], t["taskType"]) == (
        "Pets",
        "DONE",
        "MEDIUM",
        "CONCEPTS_CLASSIFICATION",
    )
    assert t["autoAnnotation"] is True and t["deletePreviousAnnotations"] is False
    assert t["thresholds"] == {
        "lower": 0.5,
        "upper": 0.9,
        "lowerInclusive": True,
        "upperInclusive": True,
    }
    assert t["conceptIds"] == [s.cat, s.dog] and t["modelId"] == s.model_id
    assert t["workflowId"] is None and t["datasetId"] == s.dataset_id
    assert t["metrics"] == {
        "inputsTotal": 0,
        "processed": 0,
        "failed": 0,
        "approved": 0,
        "awaitingReview": 0,
        "discarded": 0,
        "reviewed": 0,
        "labelingPercent": 100.0,  # DONE with nothing to label
    }
    read = (await api.gql(s.w.owner, TASK, id=t["id"]))["labelingTask"]
    assert read["model"] == {"id": s.model_id} and read["workflow"] is None
    assert read["dataset"] == {"id": s.dataset_id}
    assert [c["name"] for c in read["concepts"]] == ["cat", "dog"]
    stored = await LabelingTask.get(t["id"])
    assert stored is not None and stored.created_by == s.w.owner.user_id


async def test_create_task_with_every_option(api: Api) -> None:
    s = await setup(api)
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    admin = await api.member(s.w.owner, s.w.app_id, ["ADMIN"])
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    made = await create_task(
        api,
        admin,
        **s.task(
            taskType="BOUNDING_BOX_DETECTION",
            thresholds={"lower": 0.2, "upper": 0.8, "lowerInclusive": False},
            conceptThresholds=[{"conceptId": s.dog, "range": {"lower": 0.1, "upper": 0.3}}],
            reviewerIds=[reviewer.user_id, admin.user_id],
            labelerIds=[labeler.user_id, s.w.owner.user_id],
            reviewStrategy="PARTITIONED",
            partitionStrategy="WEIGHTED",
            reviewerWeights=[{"userId": reviewer.user_id, "weight": 2.5}],
            approvalThresholdReviewers=2,
            priority="HIGH",
            autoAnnotation=False,
            deletePreviousAnnotations=True,
        ),
    )
    t = made["labelingTask"]
    assert t["priority"] == "HIGH" and t["taskType"] == "BOUNDING_BOX_DETECTION"
    assert t["thresholds"]["lowerInclusive"] is False and t["thresholds"]["upperInclusive"] is True
    assert t["conceptThresholds"] == [{"conceptId": s.dog, "range": {"lower": 0.1, "upper": 0.3}}]
    assert t["reviewerIds"] == [reviewer.user_id, admin.user_id]
    assert t["reviewerWeights"] == [{"userId": reviewer.user_id, "weight": 2.5}]
    assert t["autoAnnotation"] is False and t["deletePreviousAnnotations"] is True


@pytest.mark.parametrize(
    ("lower", "upper"),
    [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.5), (0, 1)],
)
async def test_threshold_edges_are_accepted(api: Api, lower: float, upper: float) -> None:
    s = await setup(api)
    made = await create_task(api, s.w.owner, **s.task(thresholds={"lower": lower, "upper": upper}))
    assert made["__typename"] == "LabelingTaskSuccess", made
    assert made["labelingTask"]["thresholds"]["lower"] == lower


@pytest.mark.parametrize(
    ("lower", "upper", "expected"),
    [
        (0.6, 0.5, ("INVALID_THRESHOLD", "thresholds.lower")),
        (1.0, 0.0, ("INVALID_THRESHOLD", "thresholds.lower")),
        (-0.1, 0.5, ("OUT_OF_RANGE", "thresholds.lower")),
        (0.5, 1.5, ("OUT_OF_RANGE", "thresholds.upper")),
        (-1e308, 0.5, ("OUT_OF_RANGE", "thresholds.lower")),
        (0.5, 1e308, ("OUT_OF_RANGE", "thresholds.upper")),
        (1.0000001, 1.0000001, ("OUT_OF_RANGE", "thresholds.lower")),
    ],
)
async def test_threshold_errors(api: Api, lower: float, upper: float, expected: tuple[str, str]) -> None:
    s = await setup(api)
    made = await create_task(api, s.w.owner, **s.task(thresholds={"lower": lower, "upper": upper}))
    assert made["__typename"] == "ValidationError"
    assert code(made) == expected


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_thresholds_are_refused_before_the_service(api: Api, token: str) -> None:
    s = await setup(api)
    # JSON has no NaN/Infinity; a client may still send the bare token (Python's encoder does),
    # and GraphQL's Float refuses the value before any resolver runs. (The view currently reports
    # such variable-coercion errors as "internal error": see app/graphql/view.py format_error.)
    variables = json.dumps({"i": s.task(name="t", thresholds={"lower": 0.5, "upper": 0.7})})
    raw_variables = variables.replace('"upper": 0.7', f'"upper": {token}')
    body = '{"query": ' + json.dumps(CREATE_TASK) + ', "variables": ' + raw_variables + "}"
    response = await api.http.post(
        "/graphql",
        content=body,
        headers=s.w.owner.headers | {"Content-Type": "application/json"},
    )
    answer = response.json()
    assert answer.get("errors") and not answer.get("data"), answer
    assert await LabelingTask.find_all().count() == 0


async def test_nan_is_out_of_range_in_the_service(api: Api) -> None:
    from app.core.errors import ValidationFailed
    from app.tasks.models import ThresholdRange
    from app.tasks.service import check_range

    with pytest.raises(ValidationFailed) as caught:
        check_range(ThresholdRange(lower=float("nan"), upper=1.0), "thresholds")
    assert (caught.value.code.value, caught.value.field) == ("OUT_OF_RANGE", "thresholds.lower")


async def test_per_concept_thresholds_are_validated(api: Api) -> None:
    s = await setup(api)
    bird = await api.concept(s.w.owner, s.w.app_id, "bird")
    ok_range = {"lower": 0.1, "upper": 0.2}

    async def with_entries(entries: list[dict[str, Any]]) -> tuple[str, str | None]:
        return code(await create_task(api, s.w.owner, **s.task(conceptThresholds=entries)))

    assert await with_entries([{"conceptId": bird, "range": ok_range}]) == (
        "INVALID",
        "conceptThresholds.0.conceptId",
    )
    assert await with_entries(
        [{"conceptId": s.cat, "range": ok_range}, {"conceptId": s.cat, "range": ok_range}]
    ) == ("DUPLICATE", "conceptThresholds.1.conceptId")
    assert await with_entries(
        [
            {"conceptId": s.cat, "range": ok_range},
            {"conceptId": s.dog, "range": {"lower": 0.3, "upper": 0.2}},
        ]
    ) == ("INVALID_THRESHOLD", "conceptThresholds.1.range.lower")
    assert await with_entries([{"conceptId": s.dog, "range": {"lower": 0, "upper": 2}}]) == (
        "OUT_OF_RANGE",
        "conceptThresholds.0.range.upper",
    )


async def test_concepts_produced_directly_by_name_ignoring_case(api: Api) -> None:
    s = await setup(api)
    made = await create_task(api, s.w.owner, **s.task(conceptIds=[s.cat]))
    assert made["__typename"] == "LabelingTaskSuccess"
    bird = await api.concept(s.w.owner, s.w.app_id, "bird")
    refused = await create_task(api, s.w.owner, **s.task(conceptIds=[s.cat, s.dog, bird]))
    assert code(refused) == ("CONCEPT_NOT_PRODUCED", "conceptIds.2")


async def test_concepts_produced_through_the_mapping_many_to_one(api: Api) -> None:
    s = await setup(api)
    pet = await api.concept(s.w.owner, s.w.app_id, "pet")
    mapping = [
        {"modelConceptId": "m-tabby", "conceptId": pet},
        {"modelConceptId": "m-dog", "conceptId": pet},
    ]
    made = await create_task(api, s.w.owner, **s.task(conceptIds=[pet], conceptMapping=mapping))
    assert made["__typename"] == "LabelingTaskSuccess", made
    assert made["labelingTask"]["conceptMapping"] == mapping
    # without the mapping, nothing produces "pet"
    assert code(await create_task(api, s.w.owner, **s.task(conceptIds=[pet]))) == (
        "CONCEPT_NOT_PRODUCED",
        "conceptIds.0",
    )


async def test_mapping_entries_must_name_real_model_concepts_and_task_concepts(api: Api) -> None:
    s = await setup(api)

    async def mapped(mapping: list[dict[str, str]]) -> tuple[str, str | None]:
        return code(await create_task(api, s.w.owner, **s.task(conceptMapping=mapping)))

    assert await mapped([{"modelConceptId": "m-horse", "conceptId": s.cat}]) == (
        "NOT_FOUND",
        "conceptMapping.0.modelConceptId",
    )
    bird = await api.concept(s.w.owner, s.w.app_id, "bird")
    assert await mapped([{"modelConceptId": "m-tabby", "conceptId": bird}]) == (
        "INVALID",
        "conceptMapping.0.conceptId",
    )
    assert await mapped(
        [
            {"modelConceptId": "m-tabby", "conceptId": s.cat},
            {"modelConceptId": "m-tabby", "conceptId": s.dog},
        ]
    ) == ("DUPLICATE", "conceptMapping.1.modelConceptId")


async def test_zero_shot_models_produce_any_concept(api: Api) -> None:
    s = await setup(api)
    zero = await model(api, s.w.owner, s.w.app_id, zeroShot=True, kind="TEXT_CLASSIFIER")
    odd = await api.concept(s.w.owner, s.w.app_id, "customer complaint")
    made = await create_task(api, s.w.owner, **s.task(modelId=zero, conceptIds=[odd, s.cat]))
    assert made["__typename"] == "LabelingTaskSuccess", made


async def test_a_model_without_concepts_produces_nothing(api: Api) -> None:
    s = await setup(api)
    empty = await model(api, s.w.owner, s.w.app_id)
    assert code(await create_task(api, s.w.owner, **s.task(modelId=empty))) == (
        "MODEL_HAS_NO_CONCEPTS",
        "modelId",
    )
    flow = await workflow(api, s.w.owner, s.w.app_id, [empty])
    assert code(await create_task(api, s.w.owner, **s.task(modelId=None, workflowId=flow))) == (
        "MODEL_HAS_NO_CONCEPTS",
        "workflowId",
    )


async def test_workflows_produce_the_union_of_their_models(api: Api) -> None:
    s = await setup(api)
    cats = await model(api, s.w.owner, s.w.app_id, ("cat",))
    dogs = await model(api, s.w.owner, s.w.app_id, ("DOG",), kind="DETECTOR")
    flow = await workflow(api, s.w.owner, s.w.app_id, [cats, dogs])
    made = await create_task(api, s.w.owner, **s.task(modelId=None, workflowId=flow))
    assert made["__typename"] == "LabelingTaskSuccess", made
    assert made["labelingTask"]["workflowId"] == flow and made["labelingTask"]["modelId"] is None
    only_cats = await workflow(api, s.w.owner, s.w.app_id, [cats])
    refused = await create_task(api, s.w.owner, **s.task(modelId=None, workflowId=only_cats))
    assert code(refused) == ("CONCEPT_NOT_PRODUCED", "conceptIds.1")
    mapped = await create_task(
        api,
        s.w.owner,
        **s.task(
            modelId=None,
            workflowId=only_cats,
            conceptMapping=[{"modelConceptId": "m-cat", "conceptId": s.dog}],
        ),
    )
    assert mapped["__typename"] == "LabelingTaskSuccess", mapped
    zero = await model(api, s.w.owner, s.w.app_id, zeroShot=True)
    with_zero = await workflow(api, s.w.owner, s.w.app_id, [cats, zero])
    bird = await api.concept(s.w.owner, s.w.app_id, "bird")
    ok = await create_task(api, s.w.owner, **s.task(modelId=None, workflowId=with_zero, conceptIds=[bird]))
    assert ok["__typename"] == "LabelingTaskSuccess", ok


async def test_exactly_one_of_model_and_workflow(api: Api) -> None:
    s = await setup(api)
    flow = await workflow(api, s.w.owner, s.w.app_id, [s.model_id])
    assert code(await create_task(api, s.w.owner, **s.task(workflowId=flow))) == (
        "INVALID",
        "workflowId",
    )
    assert code(await create_task(api, s.w.owner, **s.task(modelId=None))) == (
        "REQUIRED",
        "modelId",
    )


async def test_references_of_other_apps_answer_like_unknown_ones(api: Api) -> None:
    s = await setup(api)
    o = s.w.stranger
    their_dataset = await dataset(s.w.other_app_id)
    their_concept = await api.concept(o, s.w.other_app_id, "cat")
    their_model = await model(api, o, s.w.other_app_id, ("cat",))
    their_flow = await workflow(api, o, s.w.other_app_id, [their_model])
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        ({"datasetId": their_dataset}, ("NOT_FOUND", "datasetId")),
        ({"datasetId": "0" * 32}, ("NOT_FOUND", "datasetId")),
        ({"modelId": their_model}, ("NOT_FOUND", "modelId")),
        ({"modelId": "unknown"}, ("NOT_FOUND", "modelId")),
        ({"modelId": None, "workflowId": their_flow}, ("NOT_FOUND", "workflowId")),
        ({"conceptIds": [s.cat, their_concept]}, ("NOT_FOUND", "conceptIds.1")),
        ({"conceptIds": ["0" * 32]}, ("NOT_FOUND", "conceptIds.0")),
        ({"conceptIds": []}, ("EMPTY", "conceptIds")),
        ({"conceptIds": [s.cat, s.cat]}, ("DUPLICATE", "conceptIds.1")),
        ({"name": " "}, ("EMPTY", "name")),
        ({"appId": s.w.other_app_id}, ("NOT_FOUND", "appId")),
    ]
    for fields, expected in cases:
        assert code(await create_task(api, s.w.owner, **s.task(**fields))) == expected, fields
    assert await LabelingTask.find_all().count() == 0


async def test_roles_needed_to_create_a_task(api: Api) -> None:
    s = await setup(api)
    for roles in (["LABELER"], ["REVIEWER"], ["LABELER", "REVIEWER"]):
        member = await api.member(s.w.owner, s.w.app_id, roles)
        assert code(await create_task(api, member, **s.task())) == ("PERMISSION_DENIED", "appId")
    admin = await api.member(s.w.owner, s.w.app_id, ["ADMIN"])
    assert (await create_task(api, admin, **s.task()))["__typename"] == "LabelingTaskSuccess"


async def test_reviewers_and_labelers_need_membership_and_roles(api: Api) -> None:
    s = await setup(api)
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    outsider = await api.user()
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        ({"reviewerIds": [reviewer.user_id, labeler.user_id]}, ("MISSING_ROLE", "reviewerIds.1")),
        ({"reviewerIds": [outsider.user_id]}, ("NOT_FOUND", "reviewerIds.0")),
        ({"reviewerIds": [s.w.stranger.user_id]}, ("NOT_FOUND", "reviewerIds.0")),
        ({"reviewerIds": [reviewer.user_id, reviewer.user_id]}, ("DUPLICATE", "reviewerIds.1")),
        ({"labelerIds": [reviewer.user_id]}, ("MISSING_ROLE", "labelerIds.0")),
        ({"labelerIds": ["nobody"]}, ("NOT_FOUND", "labelerIds.0")),
        (
            {"reviewerIds": [reviewer.user_id], "reviewerWeights": [{"userId": labeler.user_id}]},
            ("INVALID", "reviewerWeights.0.userId"),
        ),
        (
            {
                "reviewerIds": [reviewer.user_id],
                "reviewerWeights": [{"userId": reviewer.user_id, "weight": 0}],
            },
            ("OUT_OF_RANGE", "reviewerWeights.0.weight"),
        ),
        (
            {"reviewerIds": [reviewer.user_id], "approvalThresholdReviewers": 2},
            ("OUT_OF_RANGE", "approvalThresholdReviewers"),
        ),
        ({"approvalThresholdReviewers": 0}, ("OUT_OF_RANGE", "approvalThresholdReviewers")),
    ]
    for fields, expected in cases:
        assert code(await create_task(api, s.w.owner, **s.task(**fields))) == expected, fields
    ok = await create_task(
        api,
        s.w.owner,
        **s.task(reviewerIds=[reviewer.user_id, s.w.owner.user_id], labelerIds=[labeler.user_id]),
    )
    assert ok["__typename"] == "LabelingTaskSuccess", ok


async def _update(api: Api, caller: Caller, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await api.gql(caller, UPDATE, i=fields))["updateLabelingTask"]
    return result


async def test_update_task_changes_given_fields_and_keeps_worker_counters(api: Api) -> None:
    s = await setup(api)
    r1 = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    r2 = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    task_id = await task(
        api,
        s.w.owner,
        **s.task(
            reviewerIds=[r1.user_id, r2.user_id],
            reviewerWeights=[{"userId": r2.user_id, "weight": 3}],
        ),
    )
    # a worker's counters, written concurrently with $inc, must survive an update
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task_id}, {"$inc": {"metrics.inputs_total": 4, "metrics.inputs_processed": 1}}
    )
    done = await _update(
        api,
        s.w.owner,
        id=task_id,
        name="Renamed",
        priority="LOW",
        thresholds={"lower": 0.1, "upper": 0.2},
        conceptThresholds=[{"conceptId": s.cat, "range": {"lower": 0.3, "upper": 0.4}}],
    )
    t = done["labelingTask"]
    assert (t["name"], t["priority"], t["thresholds"]["lower"], t["thresholds"]["upper"]) == (
        "Renamed",
        "LOW",
        0.1,
        0.2,
    )
    assert t["reviewerIds"] == [r1.user_id, r2.user_id] and t["status"] == "QUEUED"
    assert t["metrics"]["inputsTotal"] == 4 and t["metrics"]["labelingPercent"] == 25.0
    # removing a reviewer drops their weight too
    t = (await _update(api, s.w.owner, id=task_id, reviewerIds=[r1.user_id]))["labelingTask"]
    assert t["reviewerIds"] == [r1.user_id] and t["reviewerWeights"] == []
    stored = await LabelingTask.get(task_id)
    assert stored is not None and stored.updated_at > stored.created_at


async def test_update_task_errors(api: Api) -> None:
    s = await setup(api)
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    task_id = await task(api, s.w.owner, **s.task())
    bird = await api.concept(s.w.owner, s.w.app_id, "bird")
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        ({"name": ""}, ("EMPTY", "name")),
        ({"thresholds": {"lower": 0.9, "upper": 0.1}}, ("INVALID_THRESHOLD", "thresholds.lower")),
        ({"thresholds": {"lower": -1, "upper": 0.1}}, ("OUT_OF_RANGE", "thresholds.lower")),
        (
            {"conceptThresholds": [{"conceptId": bird, "range": {"lower": 0, "upper": 1}}]},
            ("INVALID", "conceptThresholds.0.conceptId"),
        ),
        ({"reviewerIds": [labeler.user_id]}, ("MISSING_ROLE", "reviewerIds.0")),
        (
            {"reviewerWeights": [{"userId": labeler.user_id}]},
            ("INVALID", "reviewerWeights.0.userId"),
        ),
    ]
    for fields, expected in cases:
        assert code(await _update(api, s.w.owner, id=task_id, **fields)) == expected, fields
    assert code(await _update(api, labeler, id=task_id, name="x")) == ("PERMISSION_DENIED", "id")
    assert code(await _update(api, s.w.stranger, id=task_id, name="x")) == ("NOT_FOUND", "id")
    assert code(await _update(api, s.w.owner, id="1" * 32, name="x")) == ("NOT_FOUND", "id")
    unchanged = await LabelingTask.get(task_id)
    assert unchanged is not None and unchanged.name == "Task" and unchanged.thresholds.lower == 0.5


async def test_delete_task_keeps_or_deletes_its_annotations(api: Api) -> None:
    s = await setup(api)
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    keep = await task(api, s.w.owner, **s.task(name="keep"))
    drop = await task(api, s.w.owner, **s.task(name="drop"))
    item = await text_input(s.w.app_id, [s.dataset_id])
    for task_id in (keep, keep, drop, drop):
        await Annotation(app_id=s.w.app_id, input_id=item, concept_id=s.cat, task_id=task_id).insert()
    assert code((await api.gql(labeler, DELETE, id=keep))["deleteLabelingTask"]) == (
        "PERMISSION_DENIED",
        "id",
    )
    assert code((await api.gql(s.w.stranger, DELETE, id=keep))["deleteLabelingTask"]) == (
        "NOT_FOUND",
        "id",
    )
    assert (await api.gql(s.w.owner, DELETE, id=keep))["deleteLabelingTask"] == {
        "__typename": "DeleteSuccess",
        "id": keep,
    }
    assert (await api.gql(s.w.owner, DELETE, id=drop, d=True))["deleteLabelingTask"]["id"] == drop
    assert await Annotation.find({"task_id": keep}).count() == 2
    assert await Annotation.find({"task_id": drop}).count() == 0
    assert code((await api.gql(s.w.owner, DELETE, id=keep))["deleteLabelingTask"]) == (
        "NOT_FOUND",
        "id",
    )
    assert (await api.gql(s.w.owner, TASK, id=keep))["labelingTask"] is None
    # with no task left, the model can go
    gone = await api.gql(
        s.w.owner, "mutation($id: ID!) { deleteModel(id: $id) { __typename } }", id=s.model_id
    )
    assert gone["deleteModel"]["__typename"] == "DeleteSuccess"


async def test_list_tasks_with_filters(api: Api) -> None:
    s = await setup(api)
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    other_ds = await dataset(s.w.app_id, "other")
    a = await task(api, s.w.owner, **s.task(name="a", priority="HIGH"))
    b = await task(api, s.w.owner, **s.task(name="b", priority="LOW", datasetId=other_ds))
    c = await task(api, s.w.owner, **s.task(name="c"))
    await LabelingTask.get_pymongo_collection().update_one({"_id": c}, {"$set": {"status": "DONE"}})

    async def names(f: dict[str, Any] | None, caller: Caller = reviewer) -> list[str]:
        data = await api.gql(caller, TASKS, a=s.w.app_id, f=f)
        return [n["name"] for n in data["labelingTasks"]["nodes"]]

    assert await names(None) == ["a", "b", "c"]
    assert await names({"statuses": ["QUEUED"]}) == ["a", "b"]
    assert await names({"priorities": ["HIGH", "LOW"]}) == ["a", "b"]
    assert await names({"datasetIds": [s.dataset_id]}) == ["a", "c"]
    assert await names({"statuses": ["QUEUED"], "datasetIds": [s.dataset_id]}) == ["a"]
    assert await names({"statuses": ["DONE"], "priorities": ["MEDIUM"]}) == ["c"]
    assert await names({"statuses": [], "priorities": None}) == ["a", "b", "c"]
    assert await names({"statuses": ["FAILED"]}) == []
    assert [a, b] == [
        n["id"] for n in (await api.gql(reviewer, TASKS, a=s.w.app_id, first=2))["labelingTasks"]["nodes"]
    ]
    errors = await api.gql_errors(reviewer, TASKS, a=s.w.app_id, first=51)
    assert errors[0]["extensions"]["code"] == "OUT_OF_RANGE"
    errors = await api.gql_errors(s.w.stranger, TASKS, a=s.w.app_id)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    assert (await api.gql(s.w.stranger, TASK, id=a))["labelingTask"] is None
    read = (await api.gql(reviewer, TASK, id=c))["labelingTask"]
    assert read["status"] == "DONE"


async def test_labeling_percent_is_computed_from_the_counters(api: Api) -> None:
    s = await setup(api)
    task_id = await task(api, s.w.owner, **s.task())
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task_id}, {"$inc": {"metrics.inputs_total": 3, "metrics.inputs_processed": 2}}
    )
    metrics = (await api.gql(s.w.owner, TASK, id=task_id))["labelingTask"]["metrics"]
    assert metrics == {"inputsTotal": 3, "processed": 2, "labelingPercent": 66.67}
