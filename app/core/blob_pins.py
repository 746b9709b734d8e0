"""Blob pins: a blob stays in the store while anything pins it.

Blobs are content-addressed and shared, and an input's blob used to go as soon as the last
input naming its key went. Whatever must keep image bytes beyond the inputs' lives (a dataset
version keeps the images it holds) pins the keys under an owner name; whoever deletes a blob
first asks whether anything still names or pins it (``app.blob_refs``). One document per
(owner, key), ``_id = "<owner>:<key>"``, so pinning twice is a no-op (an upsert) and pins of
one owner go together.

Ordering that makes a concurrent delete safe: the pinner pins *before* it last reads the thing
that references the blob, and the deleter removes its reference *before* it asks about pins.
Either the deleter sees the pin, or the reference is gone before the pinner reads it (and the
pinner then does not rely on the blob).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from pymongo import ASCENDING, IndexModel, UpdateOne

from app.core.documents import BaseDocument, utcnow

BATCH = 500


class BlobPin(BaseDocument):
    key: str
    owner: str

    class Settings:
        name = "blob_pins"
        indexes = [IndexModel([("key", ASCENDING)]), IndexModel([("owner", ASCENDING)])]


def pin_id(owner: str, key: str) -> str:
    return f"{owner}:{key}"


async def pin(owner: str, keys: Iterable[str]) -> None:
    """Keep every blob of ``keys`` until ``owner`` unpins it."""
    unique = sorted(set(keys))
    if not unique:
        return
    now = utcnow()
    writes = [
        UpdateOne(
            {"_id": pin_id(owner, key)},
            {"$setOnInsert": {"key": key, "owner": owner, "created_at": now, "updated_at": now}},
            upsert=True,
        )
        for key in unique
    ]
    await BlobPin.get_pymongo_collection().bulk_write(writes, ordered=False)


async def unpin(owner: str, *, batch: int = BATCH) -> AsyncIterator[list[str]]:
    """Drop ``owner``'s pins ``batch`` at a time, yielding the keys each batch released (a key
    may still be pinned by another owner: ``app.blob_refs.release_unused`` asks). Pins not yet
    reached when the caller stops early stay, which keeps blobs rather than losing them."""
    collection = BlobPin.get_pymongo_collection()
    while True:
        docs = await collection.find({"owner": owner}, {"key": 1}).sort("_id", 1).limit(batch).to_list()
        if not docs:
            return
        await collection.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        yield [d["key"] for d in docs]
