"""The one check before a stored blob is deleted: does anything still name it?

Blobs are content-addressed (the same bytes, one key), so one key can be named by several
inputs (their image, in any app), model versions (their file) and pins (``app.core.blob_pins``:
what dataset versions and model versions hold). Whoever drops references removes them first,
then hands the keys they named to ``release_unused``, which deletes each key that nothing names
any more (``app.core.blob_pins`` explains why this order is safe against a concurrent pin).

An upload of bytes that are being released must not lose them. The release looks twice: it
retires each key nothing names (``BlobStore.retire``: moved aside), asks again, and puts back
what is named by then or deletes it for good. The uploader stores the bytes, writes the
documents that name the key, then calls ``BlobStore.ensure`` (store them again if they are
gone). Either the release's second look sees the uploader's document, or that document came
later, and then the uploader's ``ensure`` came after the blob was moved aside, found it gone
and stored it again.

A release that dies between its two looks leaves blobs retired; ``recover_retired`` (every
worker, at start and then every ``blob_recover_interval_s``) decides for them as the release
would have: back if something names the key, gone if not. Deciding late is as safe as deciding
on time: an uploader that named the key after the blob was moved aside stored it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from app.core import blob_pins
from app.core.blob_pins import BlobPin
from app.core.blobs import BlobStore
from app.core.db import any_of, sorted_chunks
from app.inputs.models import Input
from app.models.models import ModelVersion

log = logging.getLogger(__name__)

# a blob retired longer ago than this was left by a release that died (a live one decides
# within milliseconds of retiring)
STALE_RETIRED_S = 60.0
# a temporary file this old belongs to a write that died
STALE_TEMPORARY_S = 3600.0


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


async def release_unused(blobs: BlobStore, keys: Iterable[str | None], batch: int = blob_pins.BATCH) -> int:
    """Delete each of ``keys`` that nothing names, checked ``batch`` keys at a time in key order
    (so each batch's ``any_of`` range stays narrow), in two looks (module docstring). Returns
    how many went."""
    deleted = 0
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
                deleted += 1
    return deleted


async def recover_retired(blobs: BlobStore, older_than_s: float = STALE_RETIRED_S) -> tuple[int, int]:
    """Decide for the blobs that releases retired and never decided for (they died): restore
    each that something names, purge the rest. Returns (restored, purged)."""
    tokens: dict[str, list[str]] = {}
    for key, token in await blobs.stale_retired(older_than_s):
        tokens.setdefault(key, []).append(token)
    restored = purged = 0
    for chunk in sorted_chunks(tokens, blob_pins.BATCH):
        used = await named(chunk)
        for key in chunk:
            for token in tokens[key]:
                if key in used:
                    await blobs.restore(key, token)
                    restored += 1
                else:
                    await blobs.purge(key, token)
                    purged += 1
    return restored, purged


async def finish_dead(blobs: BlobStore) -> tuple[int, int, int]:
    """What dead releases and writes left: ``recover_retired``, then temporary files over
    ``STALE_TEMPORARY_S`` old deleted. Returns (restored, purged, temporaries deleted)."""
    restored, purged = await recover_retired(blobs)
    return restored, purged, await blobs.drop_stale_temporaries(STALE_TEMPORARY_S)


async def recover_forever(blobs: BlobStore, interval_s: float) -> None:
    """A worker's background pass: ``finish_dead``, at start and then every ``interval_s``
    (survives MongoDB outages)."""
    while True:
        try:
            restored, purged, dropped = await finish_dead(blobs)
            if restored or purged or dropped:
                log.warning(
                    "left by dead releases or writes: %d blobs restored, %d deleted, %d temporary files",
                    restored,
                    purged,
                    dropped,
                )
        except Exception:
            log.warning("recovering retired blobs failed; trying again", exc_info=True)
        await asyncio.sleep(interval_s)


async def collect_garbage(blobs: BlobStore, older_than_s: float, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete every stored blob older than ``older_than_s`` that nothing names: what a deletion
    that died before its release left, whatever the path. Safe while the service runs (the
    same two looks as any release). Returns (scanned, unused): with ``dry_run``, the unused are
    counted and kept; without it, they are deleted (those named by the second look stay)."""
    scanned = unused = 0
    async for keys in blobs.stored(older_than_s):
        scanned += len(keys)
        if dry_run:
            for chunk in sorted_chunks(keys, blob_pins.BATCH):
                unused += len(chunk) - len(await named(chunk))
        else:
            unused += await release_unused(blobs, keys)
    return scanned, unused
