"""``labelstream blobs gc``: delete stored files (images, model files) that nothing names.

A deletion releases its blobs after its documents are gone; one that dies in between (a killed
process, a database outage) leaves files nothing names, which nothing else would ever delete.
This command finds them: every blob older than ``--older-than-hours`` that no input, model
version or pin names (``app.blob_refs.collect_garbage``). It runs against ``MONGODB_URL`` or the
database of the ``labelstream up`` running on --data-dir, with that folder's blob store, and is
safe while the service runs: an upload of the same bytes meanwhile keeps them, as with any
deletion.

It also finishes what dead releases and writes left, as the workers do every few minutes
(``app.blob_refs.finish_dead``), including what the previous store layout left in key
folders, which the workers' loop does not read (``LocalBlobStore.adopt_legacy``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.blob_refs import STALE_RETIRED_S, STALE_TEMPORARY_S, collect_garbage, finish_dead
from app.core.blobs import LocalBlobStore
from app.documents import open_database
from app.settings import Settings


@dataclass
class GcResult:
    scanned: int
    unused: int
    restored: int = 0  # retired by a release that died, named: put back
    purged: int = 0  # retired by a release that died, named by nothing: deleted
    temporaries: int = 0  # files of writes that died: deleted


async def run_gc(settings: Settings, older_than_s: float, dry_run: bool) -> GcResult:
    assert settings.mongodb_url
    client = await open_database(settings.mongodb_url, settings.mongodb_db)
    try:
        blobs = LocalBlobStore(settings.resolved_blob_dir)
        if dry_run:
            return GcResult(*await collect_garbage(blobs, older_than_s, dry_run=True))
        await blobs.adopt_legacy(STALE_RETIRED_S, STALE_TEMPORARY_S)
        result = GcResult(*await collect_garbage(blobs, older_than_s))
        result.restored, result.purged, result.temporaries = await finish_dead(blobs)
        return result
    finally:
        await client.close()


def gc(settings: Settings, older_than_hours: float, dry_run: bool) -> str:
    """Run it and say what it did, in one line."""
    r = asyncio.run(run_gc(settings, older_than_hours * 3600, dry_run))
    scope = f"{r.scanned} blobs older than {older_than_hours:g} h in {settings.resolved_blob_dir}"
    if dry_run:
        return f"{r.unused} unused of {scope} (--dry-run: kept)"
    line = f"deleted {r.unused} unused of {scope}"
    if r.restored or r.purged or r.temporaries:
        line += (
            f"; left by dead releases and writes: {r.restored} blobs restored, {r.purged} deleted,"
            f" {r.temporaries} temporary files deleted"
        )
    return line
