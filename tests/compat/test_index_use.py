"""Every list and page query shape is answered from an index, checked with ``explain``.

The filters come from the application's own builders and the indexes from its models, so a
change to either that loses the index fails here. What ``explain`` answers differs: MongoDB
and FerretDB 2 name an index scan (``IXSCAN``; DocumentDB's PostgreSQL plan "Index Scan" /
"Bitmap Index Scan"); nx-27017 returns SQLite's ``EXPLAIN QUERY PLAN`` rows ("SEARCH ... USING
INDEX" when its SQL path takes the query, "SCAN" when it decodes every document in Python). An
engine whose answer names neither skips.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.annotations.models import Annotation, AnnotationStatus
from app.annotations.service import AnnotationFilter, FilterOperator, filter_query, with_region
from app.core.blob_pins import BlobPin
from app.core.db import any_of, sorted_chunks
from app.core.pagination import PAGE_KEY, after_filter
from app.datasets.service import member_of
from app.inputs.models import Input
from app.models.models import ModelVersion
from app.review.models import Assignment, AssignmentKind
from app.review.queue import QueueOrder, _after, _cursor, queue_query, queue_sort
from app.search.models import Embedding
from app.tasks.models import InputState, TaskInput
from tests.compat.helpers import Db, fresh_database
from tests.servers import Servers

INDEXED = ("IXSCAN", "IDHACK", "USING INDEX", "USING COVERING INDEX", "Index Scan", "Index Only Scan")
UNINDEXED = ("COLLSCAN", "SCAN ", "Seq Scan")
AFTER = "0190" + "0" * 28
ROWS = 800


@pytest.fixture(scope="module")
async def db(servers: Servers) -> AsyncIterator[Db]:
    """One database for the module: every test here only reads it (and ``explain``s)."""
    async with fresh_database(servers) as database:
        for model in (Annotation, Input, TaskInput, Assignment, Embedding):
            await database[model.Settings.name].create_indexes(model.Settings.indexes)  # type: ignore[attr-defined]
        # enough rows over several apps/tasks that a cost-based planner prefers the index
        await database.annotations.insert_many(
            [
                {
                    "_id": f"{i:032x}",
                    PAGE_KEY: f"{i:032x}",
                    "key": f"{i:032x}",  # unique
                    "app_id": f"app{i % 10}",
                    "status": "SUCCESS",
                    "concept_id": f"c{i % 7}",
                    "task_id": f"t{i % 5}",
                    "input_id": f"i{i}",
                    "dataset_ids": ["d"],
                    "confidence": (i % 100) / 100,
                    "box": None,
                    "polygon": None,
                    "labeled_by_user_id": None,
                    "labeled_by_model_id": None,
                }
                for i in range(ROWS)
            ]
        )
        await database.inputs.insert_many(
            [
                {"_id": f"{i:032x}", PAGE_KEY: f"{i:032x}", "app_id": f"app{i % 10}", "dataset_ids": ["d"]}
                for i in range(ROWS)
            ]
        )
        await database.task_inputs.insert_many(
            [
                {
                    "_id": f"t{i % 10}:{i:032x}",
                    "task_id": f"t{i % 10}",
                    "input_id": f"i{i}",
                    "state": "PENDING",
                }
                for i in range(ROWS)
            ]
        )
        await database.embeddings.insert_many(
            [
                {
                    "_id": f"e{i:032x}",
                    "app_id": f"app{i % 10}",
                    "model": "m",
                    "kind": "ANNOTATION" if i % 2 else "INPUT",
                    "ref_id": f"{i:032x}",
                    "input_id": f"i{i}",
                    "deleted": False,
                    "rev": f"{i:032x}",
                }
                for i in range(ROWS)
            ]
        )
        await database.assignments.insert_many(
            [
                {
                    "_id": f"{i:032x}",
                    "task_id": f"t{i % 10}",
                    "kind": "REVIEW",
                    "user_id": "u",
                    "state": "OPEN",
                    "order": f"{i:032x}",
                    "min_confidence": (i % 100) / 100,
                    "concept_ids": ["c"],
                }
                for i in range(ROWS)
            ]
        )
        yield database


async def plan(db: Db, collection: str, filt: dict[str, Any], sort: dict[str, int]) -> str:
    answer = await db.command(
        {
            "explain": {"find": collection, "filter": filt, "sort": sort, "limit": 101},
            "verbosity": "queryPlanner",
        }
    )
    text = json.dumps(answer.get("queryPlanner", answer), default=str)
    if not any(marker in text for marker in INDEXED + UNINDEXED):
        pytest.skip(f"this engine's explain names no scan: {text[:300]}")
    return text


def assert_indexed(text: str) -> None:
    assert any(marker in text for marker in INDEXED), text[:2000]


ANNOTATION_FILTERS = {
    "none": AnnotationFilter(),
    "and": AnnotationFilter(
        statuses=[AnnotationStatus.SUCCESS], concept_ids=["c1", "c2"], task_ids=["t1"], min_confidence=0.2
    ),
    "dataset": AnnotationFilter(dataset_ids=["d"]),
    "or-of-one": AnnotationFilter(operator=FilterOperator.OR, concept_ids=["c1"]),
}


@pytest.mark.parametrize("name", list(ANNOTATION_FILTERS))
@pytest.mark.parametrize("cursor", [False, True], ids=["first-page", "after-cursor"])
async def test_annotation_pages_use_an_index(db: Db, name: str, cursor: bool) -> None:
    query = filter_query("app3", ANNOTATION_FILTERS[name])
    if cursor:
        query = after_filter(query, PAGE_KEY, AFTER)
    assert_indexed(await plan(db, "annotations", query, {PAGE_KEY: 1}))


@pytest.mark.engine_bug("embedded", "nx-27017 answers $or (here: has a box or a polygon) in Python")
async def test_annotation_object_pages_use_an_index(db: Db) -> None:
    query = after_filter(with_region(filter_query("app3", AnnotationFilter())), PAGE_KEY, AFTER)
    assert_indexed(await plan(db, "annotations", query, {PAGE_KEY: 1}))


@pytest.mark.parametrize("cursor", [False, True], ids=["first-page", "after-cursor"])
async def test_input_pages_and_the_seeding_cursor_use_an_index(db: Db, cursor: bool) -> None:
    # inputs (app), a dataset's inputs, and the task seeding's chunks (app + dataset)
    for query in ({"app_id": "app3"}, {"app_id": "app3", **member_of("d")}):
        if cursor:
            query = after_filter(query, PAGE_KEY, AFTER)
        assert_indexed(await plan(db, "inputs", query, {PAGE_KEY: 1}))


async def test_first_pages_of_task_inputs_use_an_index(db: Db) -> None:
    states = {"$in": [InputState.PENDING.value]}
    assert_indexed(await plan(db, "task_inputs", {"task_id": {"$eq": "t3"}, "state": states}, {"_id": 1}))


@pytest.mark.engine_bug("embedded", "nx-27017 answers any range on _id in Python (mixed _id types)")
async def test_cursor_pages_of_task_inputs_use_an_index(db: Db) -> None:
    states = {"$in": [InputState.FAILED.value]}
    query = after_filter({"task_id": {"$eq": "t3"}, "state": states}, "_id", AFTER)
    assert_indexed(await plan(db, "task_inputs", query, {"_id": 1}))


async def test_review_queue_pages_oldest_first_use_an_index(db: Db) -> None:
    first = queue_query("t3", AssignmentKind.REVIEW, ["u"], ["c"])
    sort = dict(queue_sort(QueueOrder.OLDEST))
    assert_indexed(await plan(db, "assignments", first, sort))
    doc = Assignment.model_construct(
        app_id="a", task_id="t3", input_id="i", kind=AssignmentKind.REVIEW, order=AFTER
    )
    after = _after(QueueOrder.OLDEST, _cursor(QueueOrder.OLDEST, doc))
    assert_indexed(
        await plan(db, "assignments", queue_query("t3", AssignmentKind.REVIEW, ["u"], [], after), sort)
    )


@pytest.mark.engine_bug("embedded", "nx-27017 answers $or (the least-confident cursor) in Python")
async def test_review_queue_pages_least_confident_first_use_an_index(db: Db) -> None:
    doc = Assignment.model_construct(
        app_id="a", task_id="t3", input_id="i", kind=AssignmentKind.REVIEW, min_confidence=0.5
    )
    after = _after(QueueOrder.LEAST_CONFIDENT, _cursor(QueueOrder.LEAST_CONFIDENT, doc))
    query = queue_query("t3", AssignmentKind.REVIEW, ["u"], [], after)
    assert_indexed(await plan(db, "assignments", query, dict(queue_sort(QueueOrder.LEAST_CONFIDENT))))


@pytest.mark.parametrize("collection", ["annotations", "assignments"])
async def test_a_chunks_reads_by_input_use_an_index_and_find_what_in_finds(db: Db, collection: str) -> None:
    """The labeling run reads a chunk's annotations and assignments by input (``any_of``);
    a plain ``$in`` on input_id is a scan of the whole collection on nx-27017."""
    chunk = [f"i{i}" for i in range(400, 450, 3)] + ["i9999", "i41"]
    query = {"task_id": "t3", "input_id": any_of(chunk)}
    assert_indexed(await plan(db, collection, query, {"_id": 1}))
    if collection == "annotations":
        plain = await db.annotations.find({"task_id": "t3", "input_id": {"$in": chunk}}).to_list()
        bounded = await db.annotations.find(query).to_list()
        assert plain and sorted(d["_id"] for d in bounded) == sorted(d["_id"] for d in plain)
        # review planning reads only the statuses it needs (``assign._annotations``)
        by_status = {**query, "status": {"$in": ["SUCCESS", "AWAITING_REVIEW"]}}
        assert_indexed(await plan(db, collection, by_status, {"_id": 1}))
        assert sorted(d["_id"] for d in await db.annotations.find(by_status).to_list()) == sorted(
            d["_id"] for d in plain
        )
        waiting = {**query, "status": {"$in": ["AWAITING_REVIEW", "AWAITING_CONSENSUS_REVIEW"]}}
        assert await db.annotations.find(waiting).to_list() == []


async def test_deleted_inputs_leave_their_tasks_through_an_index(db: Db) -> None:
    """``progress.on_changes``: the task inputs of deleted inputs, by input, a sorted chunk."""
    chunk = sorted([*(f"i{i}" for i in range(300, 320)), "i9999"])
    query = {"input_id": any_of(chunk)}
    assert_indexed(await plan(db, "task_inputs", query, {"_id": 1}))
    assert len(await db.task_inputs.find(query).to_list()) == 20


async def test_vectors_of_removed_annotations_become_tombstones_through_an_index(db: Db) -> None:
    """``search.store.tombstone``: by ``ref_id``, a sorted chunk, then kind and liveness."""
    chunk = sorted(f"{i:032x}" for i in range(401, 440, 2))
    query = {"ref_id": any_of(chunk), "kind": "ANNOTATION", "deleted": False}
    assert_indexed(await plan(db, "embeddings", query, {"_id": 1}))
    assert len(await db.embeddings.find(query).to_list()) == 20


def test_any_of_is_in_bounded_by_its_strings() -> None:
    assert any_of(["b", "a", "b"]) == {"$in": ["b", "a"], "$gte": "a", "$lte": "b"}
    assert any_of([]) == {"$in": []}


def test_sorted_chunks_split_ids_in_order_without_repeats() -> None:
    assert list(sorted_chunks(["c", "a", "b", "a", "d"], 2)) == [["a", "b"], ["c", "d"]]
    assert list(sorted_chunks([], 3)) == []
    assert any_of([2, 1]) == {"$in": [2, 1]}  # BSON orders numbers and strings otherwise
    assert any_of(["a", None]) == {"$in": ["a", None]}


@pytest.mark.parametrize(
    ("model", "field"), [(Input, "blob_key"), (ModelVersion, "blob_key"), (BlobPin, "key")]
)
async def test_the_check_before_a_blob_goes_reads_each_collection_through_an_index(
    servers: Servers, model: Any, field: str
) -> None:
    """``app.blob_refs.named``: by key, a sorted chunk, in inputs, model versions and pins."""
    async with fresh_database(servers) as db:
        await _check_blob_reads(db, model, field)


async def _check_blob_reads(db: Db, model: Any, field: str) -> None:
    collection = db[model.Settings.name]
    await collection.create_indexes(model.Settings.indexes)
    # every field of the collection's unique indexes set (a missing one counts as null)
    rows = [
        {"_id": f"b{i}", field: f"{i:064x}", "model_id": f"m{i}", "number": 1, "owner": f"o{i}"}
        for i in range(ROWS)
    ]
    await collection.insert_many(rows)
    chunk = sorted(f"{i:064x}" for i in range(401, 440, 2))
    query = {field: any_of(chunk)}
    assert_indexed(await plan(db, model.Settings.name, query, {"_id": 1}))
    assert len(await collection.find(query).to_list()) == 20
