"""Datasets over HTTP: create (optionally with all inputs), update, delete, membership changes
and the counter that follows them, and the queries."""

from __future__ import annotations

from typing import Any

from app.annotations.models import Annotation
from app.inputs.models import Input as InputDoc
from app.settings import Settings
from app.tasks.models import LabelingTask
from tests.factories import Api, Caller, world
from tests.inputs.helpers import text_input

CREATE = """mutation($a: ID!, $n: String!, $d: String! = "", $all: Boolean! = false) {
  createDataset(input: {appId: $a, name: $n, description: $d, allInputs: $all}) {
    __typename ... on DatasetSuccess { dataset { id appId name description inputsCount } }
    ... on Error { code field } } }"""
UPDATE = """mutation($id: ID!, $n: String, $d: String) {
  updateDataset(input: {id: $id, name: $n, description: $d}) {
    __typename ... on DatasetSuccess { dataset { name description inputsCount } }
    ... on Error { code field } } }"""
DELETE = "mutation($id: ID!) { deleteDataset(id: $id) { __typename ... on Error { code field } } }"
ADD = """mutation($d: ID!, $ids: [ID!]!) { addInputsToDataset(datasetId: $d, inputIds: $ids) {
  __typename ... on DatasetSuccess { dataset { inputsCount } } ... on Error { code field } } }"""
REMOVE = """mutation($d: ID!, $ids: [ID!]!) { removeInputsFromDataset(datasetId: $d, inputIds: $ids) {
  __typename ... on DatasetSuccess { dataset { inputsCount } } ... on Error { code field } } }"""
ONE = """query($id: ID!, $first: Int, $after: String) { dataset(id: $id) { id inputsCount
  inputs(first: $first, after: $after) { nodes { id datasetIds }
    pageInfo { hasNextPage endCursor } } } }"""
LIST = """query($a: ID!, $first: Int, $after: String) { datasets(appId: $a, first: $first, after: $after) {
  nodes { id name } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""


async def create(api: Api, caller: Caller, app_id: str, name: str = "d", **kw: Any) -> str:
    result = (await api.gql(caller, CREATE, a=app_id, n=name, **kw))["createDataset"]
    assert result["__typename"] == "DatasetSuccess", result
    dataset_id: str = result["dataset"]["id"]
    return dataset_id


async def count(api: Api, caller: Caller, dataset_id: str) -> int:
    n: int = (await api.gql(caller, ONE, id=dataset_id))["dataset"]["inputsCount"]
    return n


async def members(dataset_id: str) -> set[str]:
    """Ids of inputs holding the dataset id, read straight from the database."""
    docs = await InputDoc.find({"dataset_ids": {"$in": [dataset_id]}}).to_list()
    return {d.id for d in docs}


async def annotation_datasets(input_id: str) -> list[list[str]]:
    return [a.dataset_ids for a in await Annotation.find({"input_id": input_id}).to_list()]


async def annotate(app_id: str, input_id: str) -> None:
    await Annotation(app_id=app_id, input_id=input_id, concept_id="c").insert()


# --- createDataset ------------------------------------------------------------------------


async def test_create_dataset_and_its_errors(api: Api) -> None:
    w = await world(api)
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    made = (await api.gql(admin, CREATE, a=w.app_id, n=" Cats ", d="all the cats"))["createDataset"][
        "dataset"
    ]
    assert (made["name"], made["description"], made["appId"], made["inputsCount"]) == (
        "Cats",
        "all the cats",
        w.app_id,
        0,
    )
    cases: list[tuple[Caller, str, dict[str, Any], str, str, str]] = [
        (w.owner, w.app_id, {"n": " "}, "ValidationError", "EMPTY", "name"),
        (w.owner, w.app_id, {"n": "x" * 201}, "ValidationError", "TOO_LONG", "name"),
        (
            w.owner,
            w.app_id,
            {"n": "a", "d": "x" * 2001},
            "ValidationError",
            "TOO_LONG",
            "description",
        ),
        (labeler, w.app_id, {"n": "a"}, "PermissionDeniedError", "PERMISSION_DENIED", "appId"),
        (w.owner, w.other_app_id, {"n": "a"}, "NotFoundError", "NOT_FOUND", "appId"),
        (w.owner, "unknown", {"n": "a"}, "NotFoundError", "NOT_FOUND", "appId"),
    ]
    for caller, app_id, variables, typename, code, field in cases:
        result = (await api.gql(caller, CREATE, a=app_id, **variables))["createDataset"]
        assert (result["__typename"], result["code"], result["field"]) == (typename, code, field)
    listed = (await api.gql(w.owner, LIST, a=w.app_id))["datasets"]["nodes"]
    assert [d["name"] for d in listed] == ["Cats"]


async def test_create_dataset_with_all_inputs_of_the_app(api: Api) -> None:
    w = await world(api)
    ids = [await text_input(api, w.owner, w.app_id, str(i)) for i in range(4)]
    theirs = await text_input(api, w.stranger, w.other_app_id)
    await annotate(w.app_id, ids[0])
    await annotate(w.other_app_id, theirs)
    everything = await create(api, w.owner, w.app_id, "all", all=True)
    empty = await create(api, w.owner, w.app_id, "none")
    assert (await count(api, w.owner, everything), await count(api, w.owner, empty)) == (4, 0)
    assert await members(everything) == set(ids)
    assert await annotation_datasets(ids[0]) == [[everything]]
    assert await annotation_datasets(theirs) == [[]]
    # an input added later is not in it until added
    later = await text_input(api, w.owner, w.app_id, "later")
    assert later not in await members(everything)


# --- updateDataset ------------------------------------------------------------------------


async def test_update_dataset(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    input_id = await text_input(api, w.owner, w.app_id)
    d = await create(api, w.owner, w.app_id, "old", d="keep me")
    await api.gql(w.owner, ADD, d=d, ids=[input_id])
    renamed = (await api.gql(w.owner, UPDATE, id=d, n="new"))["updateDataset"]
    assert renamed["dataset"] == {"name": "new", "description": "keep me", "inputsCount": 1}
    described = (await api.gql(w.owner, UPDATE, id=d, d="changed"))["updateDataset"]
    assert described["dataset"]["name"] == "new" and described["dataset"]["description"] == "changed"
    cases: list[tuple[Caller, str, dict[str, Any], str, str]] = [
        (w.owner, d, {"n": ""}, "EMPTY", "name"),
        (w.owner, d, {"n": "x" * 201}, "TOO_LONG", "name"),
        (w.owner, d, {"d": "x" * 2001}, "TOO_LONG", "description"),
        (labeler, d, {"n": "x"}, "PERMISSION_DENIED", "id"),
        (w.stranger, d, {"n": "x"}, "NOT_FOUND", "id"),
        (w.owner, "unknown", {"n": "x"}, "NOT_FOUND", "id"),
    ]
    for caller, ident, variables, code, field in cases:
        result = (await api.gql(caller, UPDATE, id=ident, **variables))["updateDataset"]
        assert (result["code"], result["field"]) == (code, field), result


# --- deleteDataset ------------------------------------------------------------------------


async def test_delete_dataset_keeps_its_inputs_and_unlinks_them(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    d, other = await create(api, w.owner, w.app_id, "a"), await create(api, w.owner, w.app_id, "b")
    input_id = await text_input(api, w.owner, w.app_id, datasetIds=[d, other])
    await annotate(w.app_id, input_id)
    await api.gql(w.owner, ADD, d=d, ids=[input_id])
    assert await annotation_datasets(input_id) == [[d]]

    for caller, ident, code in (
        (labeler, d, "PERMISSION_DENIED"),
        (w.stranger, d, "NOT_FOUND"),
        (w.owner, "unknown", "NOT_FOUND"),
    ):
        result = (await api.gql(caller, DELETE, id=ident))["deleteDataset"]
        assert (result["code"], result["field"]) == (code, "id")
    assert (await api.gql(w.owner, DELETE, id=d))["deleteDataset"] == {"__typename": "DeleteSuccess"}
    stored = await InputDoc.get(input_id)
    assert stored is not None and stored.dataset_ids == [other]
    assert await annotation_datasets(input_id) == [[]]
    assert (await api.gql(w.owner, ONE, id=d))["dataset"] is None
    assert (await api.gql(w.owner, DELETE, id=d))["deleteDataset"]["code"] == "NOT_FOUND"
    assert await count(api, w.owner, other) == 1


async def test_a_dataset_used_by_a_labeling_task_cannot_be_deleted(api: Api) -> None:
    w = await world(api)
    d = await create(api, w.owner, w.app_id)
    await LabelingTask(
        app_id=w.app_id, name="t", dataset_id=d, concept_ids=[], created_by=w.owner.user_id
    ).insert()
    result = (await api.gql(w.owner, DELETE, id=d))["deleteDataset"]
    assert (result["__typename"], result["code"], result["field"]) == (
        "ConflictError",
        "IN_USE",
        "id",
    )
    assert (await api.gql(w.owner, ONE, id=d))["dataset"] is not None


# --- addInputsToDataset / removeInputsFromDataset -----------------------------------------


async def test_adding_inputs_is_idempotent_and_counted_exactly(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    d = await create(api, w.owner, w.app_id)
    ids = [await text_input(api, w.owner, w.app_id, str(i)) for i in range(3)]
    await annotate(w.app_id, ids[0])
    added = (await api.gql(labeler, ADD, d=d, ids=[ids[0], ids[1], ids[0]]))["addInputsToDataset"]
    assert added == {"__typename": "DatasetSuccess", "dataset": {"inputsCount": 2}}
    again = (await api.gql(w.owner, ADD, d=d, ids=ids))["addInputsToDataset"]
    assert again["dataset"]["inputsCount"] == 3
    assert (await api.gql(w.owner, ADD, d=d, ids=ids))["addInputsToDataset"]["dataset"] == {"inputsCount": 3}
    assert await members(d) == set(ids)
    assert await annotation_datasets(ids[0]) == [[d]]


async def test_removing_inputs_is_idempotent_and_counted_exactly(api: Api) -> None:
    w = await world(api)
    d = await create(api, w.owner, w.app_id)
    ids = [await text_input(api, w.owner, w.app_id, str(i), datasetIds=[d]) for i in range(3)]
    loose = await text_input(api, w.owner, w.app_id, "not in the dataset")
    await annotate(w.app_id, ids[0])
    await api.gql(w.owner, ADD, d=d, ids=[ids[0]])  # the annotation now carries the id
    assert await annotation_datasets(ids[0]) == [[d]]
    removed = (await api.gql(w.owner, REMOVE, d=d, ids=[ids[0], loose, ids[0]]))["removeInputsFromDataset"]
    assert removed == {"__typename": "DatasetSuccess", "dataset": {"inputsCount": 2}}
    again = (await api.gql(w.owner, REMOVE, d=d, ids=[ids[0]]))["removeInputsFromDataset"]
    assert again["dataset"]["inputsCount"] == 2
    assert await members(d) == {ids[1], ids[2]}
    assert await annotation_datasets(ids[0]) == [[]]


async def test_membership_errors_change_nothing(api: Api, settings: Settings) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    d = await create(api, w.owner, w.app_id)
    theirs_dataset = await create(api, w.stranger, w.other_app_id)
    mine = await text_input(api, w.owner, w.app_id)
    theirs = await text_input(api, w.stranger, w.other_app_id)
    cases: list[tuple[Caller, str, list[str], str, str]] = [
        (w.owner, d, [mine, theirs], "NOT_FOUND", "inputIds.1"),
        (w.owner, d, [mine, "unknown"], "NOT_FOUND", "inputIds.1"),
        (w.owner, d, [], "EMPTY", "inputIds"),
        (w.owner, d, [mine] * (settings.max_bulk_items + 1), "TOO_MANY", "inputIds"),
        (reviewer, d, [mine], "PERMISSION_DENIED", "datasetId"),
        (w.owner, theirs_dataset, [mine], "NOT_FOUND", "datasetId"),
        (w.stranger, d, [theirs], "NOT_FOUND", "datasetId"),
        (w.owner, "unknown", [mine], "NOT_FOUND", "datasetId"),
    ]
    for mutation, name in ((ADD, "addInputsToDataset"), (REMOVE, "removeInputsFromDataset")):
        for caller, dataset_id, ids, code, field in cases:
            result = (await api.gql(caller, mutation, d=dataset_id, ids=ids))[name]
            assert (result["code"], result["field"]) == (code, field), (name, result)
    assert await members(d) == set() and await count(api, w.owner, d) == 0
    assert await count(api, w.stranger, theirs_dataset) == 0


# --- queries ------------------------------------------------------------------------------


async def test_datasets_are_paginated_and_private(api: Api) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    ids = [await create(api, w.owner, w.app_id, f"d{i}") for i in range(5)]
    await create(api, w.stranger, w.other_app_id, "theirs")
    first = (await api.gql(reviewer, LIST, a=w.app_id, first=3))["datasets"]
    assert [n["id"] for n in first["nodes"]] == ids[:3]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await api.gql(reviewer, LIST, a=w.app_id, first=3, after=first["pageInfo"]["endCursor"]))[
        "datasets"
    ]
    assert [n["id"] for n in rest["nodes"]] == ids[3:]
    assert rest["pageInfo"]["hasNextPage"] is False and rest["pageInfo"]["hasPreviousPage"] is True
    errors = await api.gql_errors(w.owner, LIST, a=w.other_app_id)
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["field"]) == (
        "NOT_FOUND",
        "appId",
    )
    errors = await api.gql_errors(w.owner, LIST, a=w.app_id, first=51)
    assert errors[0]["extensions"]["code"] == "OUT_OF_RANGE"
    assert (await api.gql(w.stranger, ONE, id=ids[0]))["dataset"] is None
    assert (await api.gql(w.owner, ONE, id="unknown"))["dataset"] is None


async def test_dataset_inputs_connection_pages_through_members_only(api: Api) -> None:
    w = await world(api)
    d = await create(api, w.owner, w.app_id)
    ids = [
        await text_input(api, w.owner, w.app_id, str(i), datasetIds=[d] if i != 2 else []) for i in range(6)
    ]
    expected = [i for n, i in enumerate(ids) if n != 2]
    seen: list[str] = []
    after = None
    while True:
        data = (await api.gql(w.owner, ONE, id=d, first=2, after=after))["dataset"]
        seen += [n["id"] for n in data["inputs"]["nodes"]]
        assert all(n["datasetIds"] == [d] for n in data["inputs"]["nodes"])
        if not data["inputs"]["pageInfo"]["hasNextPage"]:
            break
        after = data["inputs"]["pageInfo"]["endCursor"]
    assert seen == expected
    assert (await api.gql(w.owner, ONE, id=d))["dataset"]["inputsCount"] == 5
    errors = await api.gql_errors(w.owner, ONE, id=d, first=51)
    assert errors[0]["extensions"]["code"] == "OUT_OF_RANGE"
