"""The one check before a stored blob is deleted: does anything still name it?

Blobs are content-addressed (the same bytes, one key), so one key can be named by several
inputs (their image, in any app), model versions (their file) and pins (``app.core.blob_pins``:
what dataset versions and model versions hold). Whoever drops references removes them first,
then hands the keys they named to ``release_unused``, which deletes each key that nothing names
any more (``app.core.blob_pins`` explains why this order is safe against a concurrent pin).

An upload of bytes that are being released must not lose them: the uploader pins their key
*before* it stores them (``upload_pin``), and the release looks twice. It retires each key
nothing names (``BlobStore.retire``: moved aside), asks again, and puts back what is named by
then (a pin taken meanwhile) or deletes it for good. Whatever the interleaving, either the
second look sees the uploader's pin, or the pin came after the blob was moved aside, and then
the uploader's store found no blob and wrote it anew.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from app.core import blob_pins
from app.core.blob_pins import BlobPin
from app.core.blobs import BlobStore
from app.core.db import any_of, sorted_chunks
from app.core.ids import new_id
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
    (so each batch's ``any_of`` range stays narrow), in two looks (module docstring)."""
    for chunk in sorted_chunks({k for k in keys if k}, batch):
        used = await named(chunk)
        retired = {}
        for key in chunk:
            if key not in used and (token := await blobs.retire(key)) is not None:
                retired[key] = token
        if not retired:
            continue
        used = await named(retired)
        for key, token in retired.items():
            if key in used:
                await blobs.restore(key, token)
            else:
                await blobs.purge(key, token)


@contextlib.asynccontextmanager
async def upload_pin(keys: Iterable[str]) -> AsyncIterator[None]:
    """Pin ``keys`` (``blob_key`` of the bytes about to be stored) while the caller stores the
    bytes and the documents that name them; the pin goes when the block ends, either way."""
    owner = f"upload:{new_id()}"
    await blob_pins.pin(owner, keys)
    try:
        yield
    finally:
        async for _ in blob_pins.unpin(owner):
            pass
