"""``app.blob_refs``: the one check before a blob is deleted, for every caller (deleting inputs,
a dataset version, a model version, an app): a key goes only when no input, model version or
pin names it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from app.access import Principal
from app.blob_refs import release_unused, upload_pin
from app.core import blob_pins
from app.core.blob_pins import BlobPin
from app.core.blobs import LocalBlobStore, blob_key
from app.core.ids import new_id
from app.inputs.models import Input
from app.inputs.service import NewInput, add_inputs
from app.models.models import ModelVersion
from app.settings import Settings
from app.users.models import User
from tests.factories import Api, world
from tests.tasks_engine.helpers import b64, create_dataset, png


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


class Interleaved(LocalBlobStore):
    """A real store that runs ``during`` (another request's steps) at one point of a release:
    ``before`` retiring the blob (after the first look) or ``after`` it."""

    def __init__(self, root: Path, when: str, during: Callable[[], Awaitable[None]]) -> None:
        super().__init__(root)
        self.when, self.during = when, during

    async def retire(self, key: str) -> str | None:
        if self.when == "before":
            await self.during()
        token = await super().retire(key)
        if self.when == "after":
            await self.during()
        return token


@pytest.mark.parametrize("when", ["before", "after"])
async def test_an_upload_of_the_same_bytes_during_a_release_keeps_them(settings: Settings, when: str) -> None:
    # given the last input naming some bytes, just deleted, its blob being released
    data = f"blob-refs upload during release {when}".encode()
    key = await LocalBlobStore(settings.resolved_blob_dir).put(data)
    inputs = Input.get_pymongo_collection()
    uploaded = {"_id": new_id(), "blob_key": key}

    async def upload() -> None:  # what adding an input does: pin, store the bytes, then the input
        async with upload_pin([key]):
            assert await LocalBlobStore(settings.resolved_blob_dir).put(data) == key
            await inputs.insert_one(uploaded)

    store = Interleaved(settings.resolved_blob_dir, when, upload)
    try:
        # when another request uploads the same bytes between the release's two looks
        await release_unused(store, [key])

        # then the new input's bytes are there, and nothing is left aside
        assert await store.get(key) == data
        assert not list(settings.resolved_blob_dir.joinpath(key[:2]).glob(".retired-*"))
    finally:
        await inputs.delete_one({"_id": uploaded["_id"]})


async def test_a_release_nobody_races_deletes_the_bytes_and_leaves_nothing_aside(settings: Settings) -> None:
    data = b"blob-refs released alone"
    store = LocalBlobStore(settings.resolved_blob_dir)
    key = await store.put(data)

    await release_unused(store, [key, key])

    assert await store.get(key) is None
    assert not list(settings.resolved_blob_dir.joinpath(key[:2]).glob(".retired-*"))


class PinCheckingStore(LocalBlobStore):
    """A real store that records, for every ``put``, whether the key was pinned at that moment."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.pinned_at_put: dict[str, bool] = {}

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        self.pinned_at_put[key] = await blob_pins.is_pinned(key)
        return await super().put(data)


async def test_adding_inputs_pins_their_bytes_while_storing_them(api: Api, settings: Settings) -> None:
    w = await world(api)
    ds = await create_dataset(api, w.owner, w.app_id)
    images = [png(seed, (17, 11)) for seed in (9311, 9312)]
    store = PinCheckingStore(settings.resolved_blob_dir)
    owner = await User.get(w.owner.user_id)
    assert owner is not None
    items = [NewInput(image_base64=b64(p), dataset_ids=[ds]) for p in images]

    result = await add_inputs(
        Principal(user=owner, key_id="test"), w.app_id, items, settings=settings, blobs=store
    )

    assert result.errors == [] and len(result.inputs) == 2
    keys = [blob_key(p) for p in images]
    assert store.pinned_at_put == dict.fromkeys(keys, True)
    assert [await blob_pins.is_pinned(k) for k in keys] == [False, False], "the upload's pins went"
