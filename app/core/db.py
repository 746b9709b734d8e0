"""Opening a database: one PyMongo async client, Beanie initialised over the given documents.

Which documents exist is the application's business (``app.documents``): core knows no domain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure


async def connect(url: str, db_name: str, models: Sequence[Any]) -> AsyncMongoClient[Any]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, tz_aware=True, uuidRepresentation="standard")
    await init_beanie(database=client[db_name], document_models=list(models), skip_indexes=True)
    await ensure_indexes(client[db_name], models)
    return client


async def ensure_indexes(database: Any, models: Sequence[Any]) -> None:
    """Create every model's indexes, one ``createIndexes`` call per index.

    Idempotent on every engine. (FerretDB 1.24 drops the connection when one call re-creates
    two or more existing indexes, which Beanie's own index set-up does on every restart.)
    """
    for model in models:
        collection = database[model.Settings.name]
        for index in getattr(model.Settings, "indexes", []):
            await collection.create_indexes([index])


def is_duplicate_key(exc: BaseException) -> bool:
    """A unique-index violation, however the engine reports it.

    MongoDB and nx-27017 raise ``DuplicateKeyError`` (11000). FerretDB 1.24 does so for inserts
    but reports a violation by an update or replace as ``OperationFailure`` code 1 carrying
    SQLite's "UNIQUE constraint failed" (tests/compat/README.md).
    """
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(e.get("code") == 11000 for e in errors)
    return isinstance(exc, OperationFailure) and (exc.code == 11000 or "UNIQUE constraint failed" in str(exc))


@contextlib.contextmanager
def duplicates_ignored() -> Iterator[None]:
    """Around an unordered ``insert_many`` / ``bulk_write`` of documents with deterministic
    ids: a duplicate key means the same write was made before (a repeated job, a concurrent
    run), so only other errors are raised."""
    try:
        yield
    except BulkWriteError as exc:
        if not is_duplicate_key(exc):
            raise


def one_reply(count: int) -> int:
    """The ``batch_size`` of a find that returns at most ``count`` documents in one reply: a
    first reply holds 101 unless told, then a ``getMore`` each (one more than ``count`` lets
    the server close the cursor with that reply)."""
    return count + 1


def any_of(values: Iterable[Any]) -> dict[str, Any]:
    """The condition "the field equals one of ``values``" for an indexed field holding one
    string (an id): ``$in``, bounded by the values' own range.

    It matches the same documents as ``$in`` alone, on every engine. nx-27017 answers a plain
    ``$in`` on a field (``_id`` aside) by reading every document of the collection, since its
    SQL tests each one with a subquery no index serves: a chunk of 50 inputs' annotations took
    ~33 ms among 6,000 and grows with the collection. The range comes from the field's index
    there, and MongoDB and FerretDB intersect both on theirs (bench/RESULTS.md). For values
    that are not all strings (whose order differs between Python and BSON), plain ``$in``."""
    items = list(dict.fromkeys(values))
    if not items or not all(isinstance(v, str) for v in items):
        return {"$in": items}
    return {"$in": items, "$gte": min(items), "$lte": max(items)}


def sorted_chunks(values: Iterable[str], size: int) -> Iterator[list[str]]:
    """``values`` without repeats, in order, ``size`` at a time: for ``any_of`` over many ids,
    each chunk's range then covers only its own part of the index."""
    ordered = sorted(set(values))
    for k in range(0, len(ordered), size):
        yield ordered[k : k + size]
