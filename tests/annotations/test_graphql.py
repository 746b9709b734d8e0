"""Annotations over HTTP: bulk add with per-item errors, geometry, remove, AND/OR filters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from app.annotations.models import Annotation, AnnotationStatus
from tests.factories import Api, Caller, World, world
from tests.registry.factories import dataset, model, task, text_input

FIELDS = """id inputId conceptId datasetIds confidence status labeledByUserId labeledByModelId
  taskId reviewedBy createdAt updatedAt box { top left bottom right } polygon { row col }
  input { id } concept { name } labeledByUser { email } labeledByModel { name }"""
ADD = (
    "mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { __typename "
    "... on AddAnnotationsSuccess { annotations { " + FIELDS + " } errors { index code field message } } "
    "... on Error { code field } } }"
)
ADD_ONE = (
    "mutation($i: AddAnnotationInput!) { addAnnotation(input: $i) { __typename "
    "... on AnnotationSuccess { annotation { " + FIELDS + " } } ... on Error { code field } } }"
)
REMOVE = """mutation($ids: [ID!]!) { removeAnnotations(ids: $ids) { __typename
  ... on RemoveAnnotationsSuccess { removedIds errors { index code field } }
  ... on Error { code field } } }"""
LIST = """query($a: ID!, $f: AnnotationFilter, $first: Int, $after: String) {
  annotations(appId: $a, filter: $f, first: $first, after: $after) {
    nodes { id } pageInfo { hasNextPage endCursor } } }"""
ONE = "query($id: ID!) { annotation(id: $id) { id concept { name } } }"


@dataclass
class Setup:
    w: World
    dataset_id: str
    input_id: str
    cat: str
    dog: str

    def item(self, **fields: Any) -> dict[str, Any]:
        return {"inputId": self.input_id, "conceptId": self.cat} | fields


async def setup(api: Api) -> Setup:
    w = await world(api)
    ds = await dataset(w.app_id)
    return Setup(
        w=w,
        dataset_id=ds,
        input_id=await text_input(w.app_id, [ds]),
        cat=await api.concept(w.owner, w.app_id, "cat"),
        dog=await api.concept(w.owner, w.app_id, "dog"),
    )


async def add(api: Api, caller: Caller, app_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = (await api.gql(caller, ADD, i={"appId": app_id, "annotations": items}))[
        "addAnnotations"
    ]
    return result


async def test_add_annotations_stores_them_for_the_caller(api: Api) -> None:
    s = await setup(api)
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    result = await add(
        api,
        labeler,
        s.w.app_id,
        [
            s.item(),
            s.item(
                conceptId=s.dog,
                box={"top": 0.1, "left": 0.2, "bottom": 0.3, "right": 0.4},
                confidence=0.5,
            ),
            s.item(polygon=[{"row": 0, "col": 0}, {"row": 0, "col": 1}, {"row": 1, "col": 1}]),
        ],
    )
    assert result["__typename"] == "AddAnnotationsSuccess" and result["errors"] == []
    first, boxed, poly = result["annotations"]
    assert first["labeledByUserId"] == labeler.user_id and first["labeledByModelId"] is None
    assert first["labeledByUser"] == {"email": labeler.email} and first["labeledByModel"] is None
    assert first["datasetIds"] == [s.dataset_id] and first["inputId"] == s.input_id
    assert (first["confidence"], first["status"], first["box"], first["polygon"]) == (
        1.0,
        "SUCCESS",
        None,
        None,
    )
    assert first["concept"] == {"name": "cat"} and first["taskId"] is None
    assert first["input"] == {"id": s.input_id}
    assert boxed["box"] == {"top": 0.1, "left": 0.2, "bottom": 0.3, "right": 0.4}
    assert boxed["confidence"] == 0.5 and boxed["concept"] == {"name": "dog"}
    assert poly["polygon"] == [{"row": 0, "col": 0}, {"row": 0, "col": 1}, {"row": 1, "col": 1}]
    stored = await Annotation.get(poly["id"])
    assert stored is not None and stored.polygon == [0, 0, 0, 1, 1, 1]  # flat storage


BOX = {"top": 0.1, "left": 0.1, "bottom": 0.5, "right": 0.5}
TRI = [{"row": 0.1, "col": 0.1}, {"row": 0.1, "col": 0.9}, {"row": 0.9, "col": 0.5}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"box": BOX | {"top": -0.01}}, "box.top"),
        ({"box": BOX | {"right": 1.01}}, "box.right"),
        ({"box": BOX | {"left": 2}}, "box.left"),
        ({"box": BOX | {"top": 0.6}}, "box.bottom"),  # inverted: top below bottom
        ({"box": BOX | {"left": 0.5}}, "box.right"),  # zero width
        ({"polygon": TRI[:2]}, "polygon"),  # degenerate: two points
        ({"polygon": []}, "polygon"),
        (
            {
                "polygon": [
                    {"row": 0.1, "col": 0.1},
                    {"row": 0.2, "col": 0.2},
                    {"row": 0.3, "col": 0.3},
                ]
            },
            "polygon",
        ),  # on one line
        ({"polygon": [*TRI[:2], {"row": 0.5, "col": 1.2}]}, "polygon.2.col"),
        ({"polygon": [{"row": -1, "col": 0}, *TRI[1:]]}, "polygon.0.row"),
        ({"box": BOX, "polygon": TRI}, "polygon"),  # not both
    ],
)
async def test_invalid_geometry_is_reported_per_item(api: Api, fields: dict[str, Any], field: str) -> None:
    s = await setup(api)
    result = await add(api, s.w.owner, s.w.app_id, [s.item(), s.item(**fields)])
    assert len(result["annotations"]) == 1
    assert [(e["index"], e["code"], e["field"]) for e in result["errors"]] == [
        (1, "INVALID_GEOMETRY", f"annotations.1.{field}")
    ]


async def test_geometry_on_the_edges_is_accepted(api: Api) -> None:
    s = await setup(api)
    full = {"top": 0, "left": 0, "bottom": 1, "right": 1}
    square = [{"row": r, "col": c} for r, c in ((0, 0), (0, 1), (1, 1), (1, 0))]
    result = await add(api, s.w.owner, s.w.app_id, [s.item(box=full), s.item(polygon=square)])
    assert result["errors"] == [] and len(result["annotations"]) == 2


async def test_bad_references_and_confidence_are_reported_per_item(api: Api) -> None:
    s = await setup(api)
    their_input = await text_input(s.w.other_app_id)
    their_concept = await api.concept(s.w.stranger, s.w.other_app_id, "cat")
    items = [
        s.item(inputId=their_input),
        s.item(inputId="0" * 32),
        s.item(conceptId=their_concept),
        s.item(taskId="0" * 32),
        s.item(confidence=1.5),
        s.item(confidence=-0.1),
        s.item(),
    ]
    result = await add(api, s.w.owner, s.w.app_id, items)
    assert [(e["index"], e["code"], e["field"]) for e in result["errors"]] == [
        (0, "NOT_FOUND", "annotations.0.inputId"),
        (1, "NOT_FOUND", "annotations.1.inputId"),
        (2, "NOT_FOUND", "annotations.2.conceptId"),
        (3, "NOT_FOUND", "annotations.3.taskId"),
        (4, "OUT_OF_RANGE", "annotations.4.confidence"),
        (5, "OUT_OF_RANGE", "annotations.5.confidence"),
    ]
    assert len(result["annotations"]) == 1
    assert await Annotation.find_all().count() == 1


async def test_add_annotations_whole_call_errors(api: Api) -> None:
    s = await setup(api)
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])

    def code(r: dict[str, Any]) -> tuple[str, str | None]:
        return r["code"], r["field"]

    assert code(await add(api, s.w.owner, s.w.app_id, [])) == ("EMPTY", "annotations")
    assert code(await add(api, s.w.owner, s.w.app_id, [s.item()] * 21)) == (
        "TOO_MANY",
        "annotations",
    )
    assert code(await add(api, reviewer, s.w.app_id, [s.item()])) == ("PERMISSION_DENIED", "appId")
    assert code(await add(api, s.w.owner, s.w.other_app_id, [s.item()])) == ("NOT_FOUND", "appId")
    assert code(await add(api, s.w.owner, "nope", [s.item()])) == ("NOT_FOUND", "appId")
    assert await Annotation.find_all().count() == 0
    # exactly at the cap is fine
    assert len((await add(api, s.w.owner, s.w.app_id, [s.item()] * 20))["annotations"]) == 20


async def test_add_annotation_single(api: Api) -> None:
    s = await setup(api)
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    cats = await model(api, s.w.owner, s.w.app_id, ("cat",))
    task_id = await task(
        api, s.w.owner, appId=s.w.app_id, datasetId=s.dataset_id, modelId=cats, conceptIds=[s.cat]
    )

    async def one(caller: Caller, app_id: str, **fields: Any) -> dict[str, Any]:
        i = {"appId": app_id, "annotation": s.item(**fields)}
        result: dict[str, Any] = (await api.gql(caller, ADD_ONE, i=i))["addAnnotation"]
        return result

    made = await one(s.w.owner, s.w.app_id, taskId=task_id, box=BOX)
    assert made["__typename"] == "AnnotationSuccess", made
    assert made["annotation"]["taskId"] == task_id and made["annotation"]["box"] == BOX
    bad = await one(s.w.owner, s.w.app_id, box=BOX | {"bottom": 1.5})
    assert (bad["__typename"], bad["code"], bad["field"]) == (
        "ValidationError",
        "INVALID_GEOMETRY",
        "annotation.box.bottom",
    )
    assert (await one(s.w.owner, s.w.app_id, inputId="x"))["field"] == "annotation.inputId"
    assert (await one(reviewer, s.w.app_id))["code"] == "PERMISSION_DENIED"
    assert (await one(s.w.owner, s.w.other_app_id))["code"] == "NOT_FOUND"


async def test_remove_annotations_per_item(api: Api) -> None:
    s = await setup(api)
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    ids = [a["id"] for a in (await add(api, s.w.owner, s.w.app_id, [s.item()] * 3))["annotations"]]
    theirs_input = await text_input(s.w.other_app_id)
    theirs_concept = await api.concept(s.w.stranger, s.w.other_app_id, "x")
    theirs = (
        await add(
            api,
            s.w.stranger,
            s.w.other_app_id,
            [{"inputId": theirs_input, "conceptId": theirs_concept}],
        )
    )["annotations"][0]["id"]

    denied = (await api.gql(reviewer, REMOVE, ids=[ids[0]]))["removeAnnotations"]
    assert denied["removedIds"] == []
    assert denied["errors"] == [{"index": 0, "code": "PERMISSION_DENIED", "field": "ids.0"}]

    done = (await api.gql(labeler, REMOVE, ids=[ids[0], theirs, "0" * 32, ids[1], ids[0]]))[
        "removeAnnotations"
    ]
    assert done["removedIds"] == [ids[0], ids[1]]
    assert done["errors"] == [
        {"index": 1, "code": "NOT_FOUND", "field": "ids.1"},
        {"index": 2, "code": "NOT_FOUND", "field": "ids.2"},
        {"index": 4, "code": "DUPLICATE", "field": "ids.4"},
    ]
    assert {a.id for a in await Annotation.find_all().to_list()} == {ids[2], theirs}
    again = (await api.gql(s.w.owner, REMOVE, ids=[ids[0]]))["removeAnnotations"]
    assert again["errors"][0]["code"] == "NOT_FOUND"
    too_many = (await api.gql(s.w.owner, REMOVE, ids=[ids[2]] * 21))["removeAnnotations"]
    assert (too_many["code"], too_many["field"]) == ("TOO_MANY", "ids")
    empty = (await api.gql(s.w.owner, REMOVE, ids=[]))["removeAnnotations"]
    assert (empty["code"], empty["field"]) == ("EMPTY", "ids")


@dataclass
class Corpus:
    s: Setup
    labeler: Caller
    model_id: str
    task_id: str
    other_input: str
    ids: dict[str, str]


async def corpus(api: Api) -> Corpus:
    """Five annotations that differ in concept, labeler, status, confidence, task and input."""
    s = await setup(api)
    labeler = await api.member(s.w.owner, s.w.app_id, ["LABELER"])
    model_id = await model(api, s.w.owner, s.w.app_id, ("cat", "dog"))
    task_id = await task(
        api,
        s.w.owner,
        appId=s.w.app_id,
        datasetId=s.dataset_id,
        modelId=model_id,
        conceptIds=[s.cat],
    )
    other_input = await text_input(s.w.app_id)  # in no dataset
    ids: dict[str, str] = {}
    made = await add(
        api,
        s.w.owner,
        s.w.app_id,
        [s.item(confidence=0.9), s.item(conceptId=s.dog, inputId=other_input, confidence=0.2)],
    )
    ids["owner_cat"], ids["owner_dog"] = (a["id"] for a in made["annotations"])
    made = await add(api, labeler, s.w.app_id, [s.item(conceptId=s.dog, confidence=0.6)])
    ids["labeler_dog"] = made["annotations"][0]["id"]
    for key, status, confidence in (
        ("model_cat", "AWAITING_REVIEW", 0.7),
        ("model_dog", "SUCCESS", 0.95),
    ):
        doc = Annotation(
            app_id=s.w.app_id,
            input_id=s.input_id,
            concept_id=s.cat if key == "model_cat" else s.dog,
            dataset_ids=[s.dataset_id],
            confidence=confidence,
            status=AnnotationStatus(status),
            labeled_by_model_id=model_id,
            task_id=task_id,
        )
        await doc.insert()
        ids[key] = doc.id
    # another app's annotation never shows up
    theirs_input = await text_input(s.w.other_app_id)
    theirs_concept = await api.concept(s.w.stranger, s.w.other_app_id, "cat")
    await add(
        api,
        s.w.stranger,
        s.w.other_app_id,
        [{"inputId": theirs_input, "conceptId": theirs_concept}],
    )
    return Corpus(s, labeler, model_id, task_id, other_input, ids)


async def test_filters_combine_with_and_or(api: Api) -> None:
    c = await corpus(api)
    s, ids = c.s, c.ids

    async def found(f: dict[str, Any] | None) -> set[str]:
        data = await api.gql(s.w.owner, LIST, a=s.w.app_id, f=f)
        got = {n["id"] for n in data["annotations"]["nodes"]}
        return {k for k, v in ids.items() if v in got}

    everything = set(ids)
    assert await found(None) == everything
    assert await found({}) == everything
    assert await found({"operator": "OR"}) == everything
    assert await found({"conceptIds": [s.cat]}) == {"owner_cat", "model_cat"}
    assert await found({"labeledBy": [c.labeler.user_id]}) == {"labeler_dog"}
    assert await found({"labeledBy": [c.model_id]}) == {"model_cat", "model_dog"}
    assert await found({"labeledBy": [c.labeler.user_id, c.model_id]}) == {
        "labeler_dog",
        "model_cat",
        "model_dog",
    }
    assert await found({"statuses": ["AWAITING_REVIEW"]}) == {"model_cat"}
    assert await found({"taskIds": [c.task_id]}) == {"model_cat", "model_dog"}
    assert await found({"inputIds": [c.other_input]}) == {"owner_dog"}
    assert await found({"datasetIds": [s.dataset_id]}) == everything - {"owner_dog"}
    assert await found({"minConfidence": 0.6}) == {
        "owner_cat",
        "labeler_dog",
        "model_cat",
        "model_dog",
    }
    assert await found({"minConfidence": 0.6, "maxConfidence": 0.9}) == {
        "owner_cat",
        "labeler_dog",
        "model_cat",
    }
    assert await found({"maxConfidence": 0.2}) == {"owner_dog"}
    # AND needs every criterion, OR any of them
    both = {"conceptIds": [s.dog], "labeledBy": [s.w.owner.user_id]}
    assert await found(both) == {"owner_dog"}
    assert await found(both | {"operator": "OR"}) == {
        "owner_cat",
        "owner_dog",
        "labeler_dog",
        "model_dog",
    }
    three = {"statuses": ["AWAITING_REVIEW"], "inputIds": [c.other_input], "maxConfidence": 0.1}
    assert await found(three) == set()
    assert await found(three | {"operator": "OR"}) == {"model_cat", "owner_dog"}
    assert await found({"conceptIds": [s.cat], "minConfidence": 0.8, "operator": "AND"}) == {"owner_cat"}
    assert await found({"conceptIds": [s.cat], "minConfidence": 0.8, "operator": "OR"}) == {
        "owner_cat",
        "model_cat",
        "model_dog",
    }
    # empty lists are no criterion
    assert await found({"conceptIds": [], "operator": "OR", "statuses": ["SUCCESS"]}) == (
        everything - {"model_cat"}
    )
    # other app's ids simply match nothing
    assert await found({"conceptIds": ["0" * 32]}) == set()


async def test_filter_errors_and_access(api: Api) -> None:
    c = await corpus(api)
    s = c.s
    cases = [
        ({"minConfidence": 0.8, "maxConfidence": 0.2}, ("OUT_OF_RANGE", "filter.minConfidence")),
        ({"minConfidence": -0.5}, ("OUT_OF_RANGE", "filter.minConfidence")),
        ({"maxConfidence": 1.5}, ("OUT_OF_RANGE", "filter.maxConfidence")),
        ({"conceptIds": ["x"] * 101}, ("TOO_MANY", "filter.conceptIds")),
    ]
    for f, expected in cases:
        errors = await api.gql_errors(s.w.owner, LIST, a=s.w.app_id, f=f)
        ext = errors[0]["extensions"]
        assert (ext["code"], ext["field"]) == expected, f
    errors = await api.gql_errors(s.w.stranger, LIST, a=s.w.app_id)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    data = await api.gql(reviewer, LIST, a=s.w.app_id)
    assert len(data["annotations"]["nodes"]) == 5
    one = (await api.gql(reviewer, ONE, id=c.ids["model_cat"]))["annotation"]
    assert one["concept"] == {"name": "cat"}
    assert (await api.gql(s.w.stranger, ONE, id=c.ids["model_cat"]))["annotation"] is None
    read = await api.gql(
        s.w.owner,
        "query($id: ID!) { annotation(id: $id) { labeledByModelId labeledByModel { id } labeledByUser { id } } }",
        id=c.ids["model_dog"],
    )
    assert read["annotation"] == {
        "labeledByModelId": c.model_id,
        "labeledByModel": {"id": c.model_id},
        "labeledByUser": None,
    }


async def test_annotations_are_paginated_with_a_cap(api: Api) -> None:
    c = await corpus(api)
    s = c.s
    ordered = sorted(c.ids.values())
    seen: list[str] = []
    after = None
    for _ in range(3):
        data = (await api.gql(s.w.owner, LIST, a=s.w.app_id, first=2, after=after))["annotations"]
        seen += [n["id"] for n in data["nodes"]]
        after = data["pageInfo"]["endCursor"]
        if not data["pageInfo"]["hasNextPage"]:
            break
    assert seen == ordered
    # paging under an OR filter keeps the filter
    f = {"operator": "OR", "conceptIds": [s.cat], "taskIds": [c.task_id]}
    page1 = (await api.gql(s.w.owner, LIST, a=s.w.app_id, f=f, first=2))["annotations"]
    page2 = (
        await api.gql(s.w.owner, LIST, a=s.w.app_id, f=f, first=2, after=page1["pageInfo"]["endCursor"])
    )["annotations"]
    got = [n["id"] for n in page1["nodes"] + page2["nodes"]]
    assert got == sorted([c.ids["owner_cat"], c.ids["model_cat"], c.ids["model_dog"]])
    assert page2["pageInfo"]["hasNextPage"] is False
    errors = await api.gql_errors(s.w.owner, LIST, a=s.w.app_id, first=51)
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["field"]) == (
        "OUT_OF_RANGE",
        "first",
    )
    errors = await api.gql_errors(s.w.owner, LIST, a=s.w.app_id, after="!!not-a-cursor")
    assert errors[0]["extensions"]["code"] == "INVALID_CURSOR"
    assert (await api.gql(s.w.owner, LIST, a=s.w.app_id, first=50))["annotations"]["pageInfo"][
        "hasNextPage"
    ] is False
