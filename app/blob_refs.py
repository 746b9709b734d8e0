"""The one check before a stored blob is deleted: does anything still name it?

Blobs are content-addressed (the same bytes, one key), so one key can be named by several
inputs (their image, in any app), model versions (their file) and pins (``app.core.blob_pins``:
what dataset versions and model versions hold). Whoever drops references removes them first,
then hands the keys they named to ``release_unused``, which deletes each key that nothing names
any more (``app.core.blob_pins`` explains why this order is safe against a concurrent pin).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.core import blob_pins
from app.core.blob_pins import BlobPin
from app.core.blobs import BlobStore
from app.core.db import any_of, sorted_chunks
from app.inputs.models import Input
from app.models.models import ModelVersion


async def named(keys: Iterable[str]) -> set[str]:
    """The ``keys`` some input, model version or pin names (one indexed range per collection)."""
    keys = list(keys)
    used: set[str] = set()
    if not keys:
        return used
    for collection, field in (
        (Input.get_pymongo_collection(), "blob_key"),
        (ModelVersion.get_pymongo_collection(), "blob_key"),
        (BlobPin.get_pymongo_collection(), "key"),
    ):
        async for doc in collection.find({field: any_of(keys)}, {field: 1}):
            used.add(doc[field])
    return used


async def release_unused(blobs: BlobStore, keys: Iterable[str | None], batch: int = blob_pins.BATCH) -> None:
    """Delete each of ``keys`` that nothing names, checked ``batch`` keys at a time in key order
    (so each batch's ``any_of`` range stays narrow)."""
    for chunk in sorted_chunks({k for k in keys if k}, batch):
        used = await named(chunk)
        for key in chunk:
            if key not in used:
                await blobs.delete(key)
