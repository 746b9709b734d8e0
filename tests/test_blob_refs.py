"""``app.blob_refs``: the one check before a blob is deleted, for every caller (deleting inputs,
a dataset version, a model version, an app): a key goes only when no input, model version or
pin names it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from app.access import Principal
from app.blob_refs import collect_garbage, recover_forever, recover_retired, release_unused
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


def retired_copies(settings: Settings, key: str) -> list[Path]:
    return list(settings.resolved_blob_dir.joinpath(".retired").glob(f"*-{key}"))


class Interleaved(LocalBlobStore):
    """A real store that runs another request's steps at given points of a release:
    ``hooks[(method, "before"|"after")]``, for ``retire`` and ``purge``/``restore``."""

    def __init__(self, root: Path, hooks: dict[tuple[str, str], Callable[[], Awaitable[None]]]) -> None:
        super().__init__(root)
        self.hooks = hooks

    async def _hook(self, method: str, when: str) -> None:
        step = self.hooks.pop((method, when), None)
        if step is not None:
            await step()

    async def retire(self, key: str) -> str | None:
        await self._hook("retire", "before")
        token = await super().retire(key)
        await self._hook("retire", "after")
        return token

    async def purge(self, key: str, token: str) -> None:
        await super().purge(key, token)
        await self._hook("decide", "after")

    async def restore(self, key: str, token: str) -> None:
        await super().restore(key, token)
        await self._hook("decide", "after")


# When another request uploads the same bytes (store them, write its input, ``ensure`` them)
# relative to a release: wholly before the blob is moved aside; wholly after (before the second
# look); or stored before the move, its input written and ``ensure`` called after the release.
SCHEDULES = {
    "upload-before-the-move": {("retire", "before"): ("put", "insert", "ensure")},
    "upload-after-the-move": {("retire", "after"): ("put", "insert", "ensure")},
    "stored-before-named-after": {("retire", "before"): ("put",), ("decide", "after"): ("insert", "ensure")},
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
async def test_an_upload_of_the_same_bytes_during_a_release_keeps_them(
    settings: Settings, schedule: str
) -> None:
    # given the last input naming some bytes, just deleted, its blob being released
    data = f"blob-refs upload during release {schedule}".encode()
    plain = LocalBlobStore(settings.resolved_blob_dir)
    key = await plain.put(data)
    inputs = Input.get_pymongo_collection()
    uploaded = {"_id": new_id(), "blob_key": key}
    steps = {
        "put": lambda: plain.put(data),
        "insert": lambda: inputs.insert_one(uploaded),
        "ensure": lambda: plain.ensure(key, data),
    }

    def run(names: tuple[str, ...]) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            for name in names:
                await steps[name]()

        return go

    store = Interleaved(
        settings.resolved_blob_dir, {at: run(names) for at, names in SCHEDULES[schedule].items()}
    )
    try:
        # when another request uploads the same bytes at that point of the release
        await release_unused(store, [key])

        # then the new input's bytes are there, and nothing is left aside
        assert not store.hooks, "every step ran"
        assert await store.get(key) == data
        assert not retired_copies(settings, key)
    finally:
        await inputs.delete_one({"_id": uploaded["_id"]})


async def test_a_release_nobody_races_deletes_the_bytes_and_leaves_nothing_aside(settings: Settings) -> None:
    data = b"blob-refs released alone"
    store = LocalBlobStore(settings.resolved_blob_dir)
    key = await store.put(data)

    await release_unused(store, [key, key])

    assert await store.get(key) is None
    assert not retired_copies(settings, key)


class EnsureRecordingStore(LocalBlobStore):
    """A real store that records, for every ``ensure``, whether an input named the key then."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.named_at_ensure: dict[str, bool] = {}

    async def ensure(self, key: str, data: bytes) -> None:
        self.named_at_ensure[key] = await Input.find_one({"blob_key": key}) is not None
        await super().ensure(key, data)


async def test_adding_inputs_ensures_their_bytes_once_the_inputs_name_them(
    api: Api, settings: Settings
) -> None:
    w = await world(api)
    ds = await create_dataset(api, w.owner, w.app_id)
    images = [png(seed, (17, 11)) for seed in (9311, 9312)]
    store = EnsureRecordingStore(settings.resolved_blob_dir)
    owner = await User.get(w.owner.user_id)
    assert owner is not None
    items = [NewInput(image_base64=b64(p), dataset_ids=[ds]) for p in images]

    result = await add_inputs(
        Principal(user=owner, key_id="test"), w.app_id, items, settings=settings, blobs=store
    )

    assert result.errors == [] and len(result.inputs) == 2
    assert store.named_at_ensure == {blob_key(p): True for p in images}


async def retire_as_a_dead_release(store: LocalBlobStore, data: bytes, age_s: float) -> str:
    """Store ``data`` and retire it as a release that died ``age_s`` ago would have left it."""
    key = await store.put(data)
    token = await store.retire(key)
    assert token is not None
    retired_at, _, rest = token.partition(".")
    old = f"{int(retired_at) - int(age_s)}.{rest}"
    store._retired(key, token).rename(store._retired(key, old))
    return key


async def test_blobs_a_dead_release_left_aside_come_back_when_named_and_go_when_not(
    api: Api, settings: Settings
) -> None:
    store = LocalBlobStore(settings.resolved_blob_dir)
    named_data, unnamed_data, fresh_data = b"recover: named", b"recover: unnamed", b"recover: fresh"
    # given three blobs retired by releases that never decided: two long ago, one just now
    named_key = await retire_as_a_dead_release(store, named_data, age_s=600)
    unnamed_key = await retire_as_a_dead_release(store, unnamed_data, age_s=600)
    fresh_key = await store.put(fresh_data)
    assert await store.retire(fresh_key) is not None
    # and an input that came to name the first one meanwhile
    inputs = Input.get_pymongo_collection()
    doc = {"_id": new_id(), "blob_key": named_key}
    await inputs.insert_one(doc)
    try:
        # when a worker recovers what dead releases left
        restored, purged = await recover_retired(store)

        # then the named blob is back, the unnamed one is gone, a live release's is untouched
        assert (restored, purged) == (1, 1)
        assert await store.get(named_key) == named_data
        assert await store.get(unnamed_key) is None
        assert not retired_copies(settings, named_key) and not retired_copies(settings, unnamed_key)
        assert len(retired_copies(settings, fresh_key)) == 1
        assert await recover_retired(store) == (0, 0)
    finally:
        await inputs.delete_one({"_id": doc["_id"]})
        await recover_retired(store, older_than_s=-1)  # the fresh one: nothing names it
    assert not retired_copies(settings, fresh_key)


async def test_the_worker_pass_recovers_retired_blobs_and_deletes_temporaries_of_dead_writes(
    settings: Settings,
) -> None:
    store = LocalBlobStore(settings.resolved_blob_dir)
    key = await retire_as_a_dead_release(store, b"recover: by the loop", age_s=600)
    tmp = settings.resolved_blob_dir / ".tmp"
    tmp.mkdir(exist_ok=True)
    dead, live = tmp / ".tmp-dead-write", tmp / ".tmp-live-write"
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(dead, (two_hours_ago, two_hours_ago))

    loop = asyncio.create_task(recover_forever(store, interval_s=3600))
    try:
        deadline = time.monotonic() + 30
        while retired_copies(settings, key) or dead.exists():
            assert time.monotonic() < deadline, "the pass ran at start"
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
    assert await store.get(key) is None  # nothing named it
    assert live.exists()
    live.unlink()


async def test_garbage_is_an_old_blob_nothing_names_and_collecting_it_keeps_the_rest(
    api: Api, tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    datas = {name: f"gc: {name}".encode() for name in ("unnamed", "by-input", "pinned", "fresh")}
    keys = {name: await store.put(data) for name, data in datas.items()}
    two_hours_ago = time.time() - 7200
    for name in ("unnamed", "by-input", "pinned"):
        os.utime(store._path(keys[name]), (two_hours_ago, two_hours_ago))
    named = [
        (Input.get_pymongo_collection(), {"_id": new_id(), "blob_key": keys["by-input"]}),
        (BlobPin.get_pymongo_collection(), {"_id": new_id(), "key": keys["pinned"], "owner": "test"}),
    ]
    for collection, doc in named:
        await collection.insert_one(doc)
    try:
        # a dry run counts the one old blob nothing names, and keeps it
        assert await collect_garbage(store, 3600, dry_run=True) == (3, 1)
        assert await store.get(keys["unnamed"]) == datas["unnamed"]

        assert await collect_garbage(store, 3600) == (3, 1)

        assert await store.get(keys["unnamed"]) is None
        for name in ("by-input", "pinned", "fresh"):
            assert await store.get(keys[name]) == datas[name], name
        assert await collect_garbage(store, 3600) == (2, 0)
    finally:
        for collection, doc in named:
            await collection.delete_one({"_id": doc["_id"]})


async def test_what_the_previous_layout_left_in_key_folders_joins_the_current_folders(
    api: Api, tmp_path: Path
) -> None:
    # given what releases and writes of the previous layout left beside the blobs:
    # `.retired-<token>-<rest of key>` and `.tmp-*` in the key's folder
    store = LocalBlobStore(tmp_path / "blobs")
    named_key, unnamed_key = blob_key(b"legacy: named"), blob_key(b"legacy: unnamed")
    for key, data in ((named_key, b"legacy: named"), (unnamed_key, b"legacy: unnamed")):
        folder = store._path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".retired-0123456789abcdef-{key[2:]}").write_bytes(data)
    folder = store._path(named_key).parent
    dead_write, live_write = folder / ".tmp-abc123", folder / ".tmp-def456"
    dead_write.write_bytes(b"half")
    live_write.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(dead_write, (two_hours_ago, two_hours_ago))
    stray = folder / ".retired-not-a-key"
    stray.write_bytes(b"?")
    inputs = Input.get_pymongo_collection()
    doc = {"_id": new_id(), "blob_key": named_key}
    await inputs.insert_one(doc)
    try:
        # a blob retired just now, or a file being written, may be a running process's: kept
        assert await store.adopt_legacy(60, 3600) == 1
        # retired long enough ago (the test cannot age a rename, so the bound moves instead)
        assert await store.adopt_legacy(-1, 3600) == 2
        # then decided for as any dead release's
        assert await recover_retired(store) == (1, 1)
        assert await store.drop_stale_temporaries(3600) == 1

        # the named blob is back, the rest is gone, and the live write and a stray are untouched
        assert await store.get(named_key) == b"legacy: named"
        assert await store.get(unnamed_key) is None
        assert sorted(p.name for p in folder.iterdir()) == [
            ".retired-not-a-key",
            ".tmp-def456",
            named_key[2:],
        ]
        assert await store.adopt_legacy(-1, 3600) == 0
    finally:
        await inputs.delete_one({"_id": doc["_id"]})
