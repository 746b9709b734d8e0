"""One test per MongoDB pattern the application relies on (MONGODB.md), asserting what real
MongoDB documents. Runs on whichever engine the suite uses: the embedded nx-27017 by default,
FerretDB with LABELSTREAM_TEST_ENGINE=ferretdb, a real server with MONGODB_URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import ASCENDING, IndexModel, InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from tests.compat.helpers import Db, fresh_database
from tests.servers import Servers


@pytest.fixture
async def db(servers: Servers) -> AsyncIterator[Db]:
    async with fresh_database(servers) as database:
        yield database


async def test_string_ids_and_string_references(db: Db) -> None:
    await db.items.insert_many([{"_id": "a1", "app_id": "x"}, {"_id": "a2", "app_id": "y"}])
    assert [d["_id"] async for d in db.items.find({"app_id": "x"})] == ["a1"]
    assert await db.items.find_one({"_id": "a2"}) == {"_id": "a2", "app_id": "y"}


async def test_unique_and_compound_unique_indexes_raise_duplicate_key(db: Db) -> None:
    await db.c.create_indexes(
        [
            IndexModel([("app_id", ASCENDING), ("name_key", ASCENDING)], unique=True),
            IndexModel([("app_id", ASCENDING)]),
        ]
    )
    await db.c.insert_one({"_id": "1", "app_id": "a", "name_key": "cat"})
    await db.c.insert_one({"_id": "2", "app_id": "b", "name_key": "cat"})
    with pytest.raises(DuplicateKeyError):
        await db.c.insert_one({"_id": "3", "app_id": "a", "name_key": "cat"})


async def test_single_field_index_with_sort_and_cursor_on_id(db: Db) -> None:
    # the pagination pattern: filter, sort by _id, continue after the last _id
    await db.p.create_index([("app_id", ASCENDING)])
    await db.p.insert_many([{"_id": f"{i:04d}", "app_id": "a" if i % 2 else "b"} for i in range(20)])
    first = [d["_id"] async for d in db.p.find({"app_id": "a"}).sort("_id", 1).limit(3)]
    assert first == ["0001", "0003", "0005"]
    nxt = db.p.find({"$and": [{"app_id": "a"}, {"_id": {"$gt": first[-1]}}]}).sort("_id", 1).limit(3)
    assert [d["_id"] async for d in nxt] == ["0007", "0009", "0011"]


async def test_concurrent_inc_counters_lose_nothing(db: Db) -> None:
    await db.t.insert_one({"_id": "t", "metrics": {"processed": 0, "failed": 0}})

    async def bump() -> None:
        for _ in range(25):
            await db.t.update_one({"_id": "t"}, {"$inc": {"metrics.processed": 1, "metrics.failed": 2}})

    await asyncio.gather(*(bump() for _ in range(4)))
    doc = await db.t.find_one({"_id": "t"})
    assert doc["metrics"] == {"processed": 100, "failed": 200}


async def test_current_date_stores_a_real_date(db: Db) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    await db.k.insert_one({"_id": "k", "last_used_at": None})
    await db.k.update_one({"_id": "k"}, {"$currentDate": {"last_used_at": True}})
    doc = await db.k.find_one({"_id": "k"})
    assert isinstance(doc["last_used_at"], datetime)
    # find, not count_documents: nx-27017's count ignores date ranges (see docs/MONGODB.md)
    assert [d["_id"] async for d in db.k.find({"last_used_at": {"$gte": before}})] == ["k"]


async def test_inserted_datetimes_support_range_queries(db: Db) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await db.d.insert_many([{"_id": str(i), "at": t0 + timedelta(hours=i)} for i in range(5)])
    got = [d["_id"] async for d in db.d.find({"at": {"$gte": t0 + timedelta(hours=2)}}).sort("_id", 1)]
    assert got == ["2", "3", "4"]


async def test_find_one_and_update_claims_each_item_once(db: Db) -> None:
    await db.q.insert_many([{"_id": f"{i:03d}", "claimed_by": None} for i in range(60)])

    async def claimer(name: str) -> list[str]:
        mine = []
        while True:
            doc = await db.q.find_one_and_update(
                {"claimed_by": None},
                {"$set": {"claimed_by": name}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                return mine
            mine.append(doc["_id"])

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == [f"{i:03d}" for i in range(60)]


async def test_upsert_with_set_on_insert_is_idempotent(db: Db) -> None:
    await db.a.create_index([("key", ASCENDING)], unique=True)
    for confidence in (0.7, 0.9):
        await db.a.update_one(
            {"key": "task|input|concept"},
            {"$setOnInsert": {"_id": "ann1", "created": True}, "$set": {"confidence": confidence}},
            upsert=True,
        )
    docs = [d async for d in db.a.find({})]
    assert docs == [{"_id": "ann1", "key": "task|input|concept", "created": True, "confidence": 0.9}]


async def test_add_to_set_and_pull_of_scalars(db: Db) -> None:
    await db.i.insert_many([{"_id": "i1", "dataset_ids": []}, {"_id": "i2", "dataset_ids": ["d0"]}])
    res = await db.i.update_many({"_id": {"$in": ["i1", "i2"]}}, {"$addToSet": {"dataset_ids": "d0"}})
    assert res.modified_count == 1
    assert {d["_id"] async for d in db.i.find({"dataset_ids": "d0"})} == {"i1", "i2"}
    await db.i.update_many({}, {"$pull": {"dataset_ids": "d0"}})
    assert [d["dataset_ids"] async for d in db.i.find({}).sort("_id", 1)] == [[], []]


async def test_unordered_bulk_write_reports_duplicates_and_keeps_the_rest(db: Db) -> None:
    await db.b.create_index([("key", ASCENDING)], unique=True)
    await db.b.insert_one({"_id": "x", "key": "k1"})
    with pytest.raises(BulkWriteError) as info:
        await db.b.bulk_write(
            [
                InsertOne({"_id": "y", "key": "k1"}),
                InsertOne({"_id": "z", "key": "k2"}),
                UpdateOne({"_id": "x"}, {"$set": {"seen": True}}),
            ],
            ordered=False,
        )
    assert [e["code"] for e in info.value.details["writeErrors"]] == [11000]
    assert {d["_id"] async for d in db.b.find({})} == {"x", "z"}
    # query by the boolean; nx-27017 stores a $set true as 1, so documents are read through
    # the pydantic models (which coerce) and never compared with `is True`
    assert [d["_id"] async for d in db.b.find({"seen": True})] == ["x"]


async def test_group_and_sum_aggregation(db: Db) -> None:
    await db.g.insert_many(
        [
            {"_id": "1", "task": "t", "status": "SUCCESS"},
            {"_id": "2", "task": "t", "status": "SUCCESS"},
            {"_id": "3", "task": "t", "status": "AWAITING_REVIEW"},
            {"_id": "4", "task": "u", "status": "SUCCESS"},
        ]
    )
    rows = await (
        await db.g.aggregate(
            [
                {"$match": {"task": "t"}},
                {"$group": {"_id": "$status", "n": {"$sum": 1}}},
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    assert rows == [{"_id": "AWAITING_REVIEW", "n": 1}, {"_id": "SUCCESS", "n": 2}]


async def test_string_regex_prefix_and_in_and_or(db: Db) -> None:
    await db.r.insert_many([{"_id": "1", "n": "cat"}, {"_id": "2", "n": "car"}, {"_id": "3", "n": "dog"}])
    assert {d["_id"] async for d in db.r.find({"n": {"$regex": "^ca"}})} == {"1", "2"}
    assert {d["_id"] async for d in db.r.find({"$or": [{"n": "dog"}, {"_id": {"$in": ["1"]}}]})} == {"1", "3"}
    assert {
        d["_id"] async for d in db.r.find({"$and": [{"n": {"$regex": "^ca"}}, {"_id": {"$in": ["2", "3"]}}]})
    } == {"2"}


async def test_flat_geometry_arrays_round_trip(db: Db) -> None:
    polygon = [0.1, 0.2, 0.3, 0.4, 0.5, 0.25]
    await db.geo.insert_one({"_id": "a", "box": [0.1, 0.2, 0.5, 0.6], "polygon": polygon, "none": None})
    doc = await db.geo.find_one({"_id": "a"})
    assert doc["box"] == [0.1, 0.2, 0.5, 0.6] and doc["polygon"] == polygon and doc["none"] is None


async def test_unique_violation_by_an_update_is_recognised_as_a_duplicate(db: Db) -> None:
    from app.core.db import is_duplicate_key

    await db.u.create_index([("name_key", ASCENDING)], unique=True)
    await db.u.insert_many([{"_id": "1", "name_key": "cat"}, {"_id": "2", "name_key": "dog"}])
    with pytest.raises(PyMongoError) as info:
        await db.u.update_one({"_id": "2"}, {"$set": {"name_key": "cat"}})
    assert is_duplicate_key(info.value)
    with pytest.raises(PyMongoError) as info:
        await db.u.replace_one({"_id": "2"}, {"name_key": "cat"})
    assert is_duplicate_key(info.value)


async def test_whole_document_replace_keeps_real_dates(db: Db) -> None:
    await db.rd.insert_one({"_id": "d", "updated_at": datetime(2026, 1, 1, tzinfo=UTC), "n": 1})
    new = datetime(2026, 6, 1, tzinfo=UTC)
    await db.rd.replace_one({"_id": "d"}, {"updated_at": new, "n": 2})
    assert [d["n"] async for d in db.rd.find({"updated_at": {"$gt": datetime(2026, 3, 1, tzinfo=UTC)}})] == [
        2
    ]


async def test_opening_an_existing_database_again_keeps_its_indexes(db: Db) -> None:
    """A restart runs the index set-up again over existing indexes (what open_database does)."""
    from app.documents import create_indexes

    await create_indexes(db)
    await create_indexes(db)
    await db.users.insert_one({"_id": "u1", "email": "a@example.com"})
    with pytest.raises(DuplicateKeyError):
        await db.users.insert_one({"_id": "u2", "email": "a@example.com"})


async def test_membership_in_an_indexed_array_field_with_in(db: Db) -> None:
    await db.m.create_index([("dataset_ids", ASCENDING)])
    await db.m.insert_many([{"_id": "i1", "dataset_ids": ["d1", "d2"]}, {"_id": "i2", "dataset_ids": ["d2"]}])
    assert {d["_id"] async for d in db.m.find({"dataset_ids": {"$in": ["d1"]}})} == {"i1"}
    assert {d["_id"] async for d in db.m.find({"dataset_ids": {"$in": ["d2"]}})} == {"i1", "i2"}


@pytest.mark.engine_bug(
    "embedded",
    "nx-27017 0.8.1: equality on an indexed array field matches nothing; the code uses $in",
)
async def test_equality_on_an_indexed_array_field_matches_elements(db: Db) -> None:
    await db.m.create_index([("dataset_ids", ASCENDING)])
    await db.m.insert_many([{"_id": "i1", "dataset_ids": ["d1", "d2"]}, {"_id": "i2", "dataset_ids": ["d2"]}])
    assert {d["_id"] async for d in db.m.find({"dataset_ids": "d2"})} == {"i1", "i2"}
