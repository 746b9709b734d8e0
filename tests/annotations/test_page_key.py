"""Annotation and input pages range over ``page_key``, a copy of ``_id`` (app/annotations/models.py): every
annotation gets one however it is written, and older ones get it at start-up."""

from __future__ import annotations

from typing import Any

from app.annotations import store
from app.annotations.models import Annotation
from app.core.pagination import after_filter, backfill_page_keys
from app.inputs.models import Input
from tests.annotations.test_graphql import LIST, add, setup
from tests.factories import Api
from tests.registry.factories import text_input
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import create_task, scenario

INPUTS = """query($a: ID!, $after: String) { inputs(appId: $a, first: 2, after: $after) {
  nodes { id } pageInfo { hasNextPage endCursor } } }"""


async def _page_keys(app_id: str) -> list[tuple[str, Any]]:
    docs = await Annotation.get_pymongo_collection().find({"app_id": app_id}, {"page_key": 1}).to_list()
    return [(d["_id"], d.get("page_key")) for d in docs]


async def _all_ids(api: Api, caller: Any, app_id: str) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        data = (await api.gql(caller, LIST, a=app_id, first=2, after=after))["annotations"]
        seen += [n["id"] for n in data["nodes"]]
        if not data["pageInfo"]["hasNextPage"]:
            return seen
        after = data["pageInfo"]["endCursor"]


async def test_people_and_model_annotations_get_their_id_as_page_key(api: Api, drain: Drain) -> None:
    sc = await scenario(api, images=3)
    await create_task(api, sc.w.owner, appId=sc.w.app_id, datasetId=sc.ds, modelId=sc.model,
                      conceptIds=list(sc.c.values()))  # fmt: skip
    await drain()
    made = await api.gql(
        sc.w.owner,
        "mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { "
        "... on AddAnnotationsSuccess { annotations { id } } } }",
        i={"appId": sc.w.app_id, "annotations": [{"inputId": sc.inputs[0], "conceptId": sc.c["cat"]}]},
    )
    assert len(made["addAnnotations"]["annotations"]) == 1
    keys = await _page_keys(sc.w.app_id)
    machine = await Annotation.find({"app_id": sc.w.app_id, "labeled_by_model_id": sc.model}).count()
    assert machine > 0 and len(keys) == machine + 1
    assert all(page_key == _id for _id, page_key in keys)


async def test_annotations_stored_before_page_keys_are_paged_once_backfilled(api: Api) -> None:
    s = await setup(api)
    made = await add(api, s.w.owner, s.w.app_id, [s.item(confidence=c / 10) for c in range(5)])
    ids = sorted(a["id"] for a in made["annotations"])
    # as stored by a release without page keys (test set-up may write the collection)
    await Annotation.get_pymongo_collection().update_many(
        {"app_id": s.w.app_id}, {"$unset": {"page_key": ""}}
    )
    assert await _all_ids(api, s.w.owner, s.w.app_id) != ids

    assert await store.backfill_page_keys() == 5
    assert await store.backfill_page_keys() == 0  # idempotent
    assert await _all_ids(api, s.w.owner, s.w.app_id) == ids
    assert all(page_key == _id for _id, page_key in await _page_keys(s.w.app_id))


def test_the_cursor_range_joins_the_filter_at_the_top_level() -> None:
    assert after_filter({"app_id": "a", "status": {"$in": ["S"]}}, "page_key", "x") == {
        "app_id": "a",
        "status": {"$in": ["S"]},
        "page_key": {"$gt": "x"},
    }
    # an operator condition on the key itself takes the bound beside it
    assert after_filter({"_id": {"$in": ["p", "z"]}}, "_id", "x") == {"_id": {"$in": ["p", "z"], "$gt": "x"}}
    # an equality, or a bound already there, keeps both under $and
    assert after_filter({"_id": "z"}, "_id", "x") == {"$and": [{"_id": "z"}, {"_id": {"$gt": "x"}}]}
    assert after_filter({"_id": {"$gt": "y"}}, "_id", "x") == {
        "$and": [{"_id": {"$gt": "y"}}, {"_id": {"$gt": "x"}}]
    }


async def test_inputs_get_page_keys_and_older_ones_are_backfilled(api: Api) -> None:
    s = await setup(api)
    made = [s.input_id] + [await text_input(s.w.app_id, [s.dataset_id], text=f"t{i}") for i in range(3)]
    coll = Input.get_pymongo_collection()
    assert all(d["page_key"] == d["_id"] for d in await coll.find({"app_id": s.w.app_id}).to_list())
    await coll.update_many({"app_id": s.w.app_id}, {"$unset": {"page_key": ""}})
    assert await backfill_page_keys(coll) == len(made)
    seen: list[str] = []
    after = None
    while True:
        data = (await api.gql(s.w.owner, INPUTS, a=s.w.app_id, after=after))["inputs"]
        seen += [n["id"] for n in data["nodes"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == sorted(made)
