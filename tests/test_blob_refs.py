"""``app.blob_refs``: the one check before a blob is deleted, for every caller (deleting inputs,
a dataset version, a model version, an app): a key goes only when no input, model version or
pin names it."""

from __future__ import annotations

import pytest

from app.blob_refs import release_unused
from app.core.blob_pins import BlobPin
from app.core.blobs import LocalBlobStore
from app.core.ids import new_id
from app.inputs.models import Input
from app.models.models import ModelVersion
from app.settings import Settings
from tests.factories import Api


@pytest.mark.parametrize("batch", [1, 2, 500])
async def test_a_blob_goes_only_when_no_input_model_version_or_pin_names_it(
    api: Api, settings: Settings, batch: int
) -> None:
    store = LocalBlobStore(settings.resolved_blob_dir)
    data = [f"blob-refs {batch} {k}".encode() for k in range(5)]  # bytes of this test alone
    keys = [await store.put(d) for d in data]
    by_input, by_version, by_pin = keys[:3]  # the last two: named by nothing
    named = [
        (Input.get_pymongo_collection(), {"_id": new_id(), "blob_key": by_input}),
        (ModelVersion.get_pymongo_collection(), {"_id": new_id(), "blob_key": by_version}),
        (BlobPin.get_pymongo_collection(), {"_id": new_id(), "key": by_pin, "owner": "test"}),
    ]
    for collection, doc in named:
        await collection.insert_one(doc)
    try:
        await release_unused(store, [*keys, None, by_input], batch=batch)

        for key, value in zip(keys, data, strict=True):
            kept = key in (by_input, by_version, by_pin)
            assert (await store.get(key)) == (value if kept else None), key
    finally:
        for collection, doc in named:
            await collection.delete_one({"_id": doc["_id"]})
