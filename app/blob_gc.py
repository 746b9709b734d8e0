"""``labelstream blobs gc``: delete stored files (images, model files) that nothing names.

A deletion releases its blobs after its documents are gone; one that dies in between (a killed
process, a database outage) leaves files nothing names, which nothing else would ever delete.
This command finds them: every blob older than ``--older-than-hours`` that no input, model
version or pin names (``app.blob_refs.collect_garbage``). It runs against ``MONGODB_URL`` or the
database of the ``labelstream up`` running on --data-dir, with that folder's blob store, and is
safe while the service runs: an upload of the same bytes meanwhile keeps them, as with any
deletion.
"""

from __future__ import annotations

import asyncio

from app.blob_refs import collect_garbage
from app.core.blobs import LocalBlobStore
from app.documents import open_database
from app.settings import Settings


async def run_gc(settings: Settings, older_than_s: float, dry_run: bool) -> tuple[int, int]:
    assert settings.mongodb_url
    client = await open_database(settings.mongodb_url, settings.mongodb_db)
    try:
        blobs = LocalBlobStore(settings.resolved_blob_dir)
        return await collect_garbage(blobs, older_than_s, dry_run=dry_run)
    finally:
        await client.close()


def gc(settings: Settings, older_than_hours: float, dry_run: bool) -> str:
    """Run it and say what it did, in one line."""
    scanned, unused = asyncio.run(run_gc(settings, older_than_hours * 3600, dry_run))
    scope = f"{scanned} blobs older than {older_than_hours:g} h in {settings.resolved_blob_dir}"
    if dry_run:
        return f"{unused} unused of {scope} (--dry-run: kept)"
    return f"deleted {unused} unused of {scope}"
