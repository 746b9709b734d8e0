"""``labelstream export`` without a server: a dataset version written as a zip straight from
the database (``MONGODB_URL``, or the servers of the ``labelstream up`` running on --data-dir).

The command itself lives with the API client (``app/client/commands/versions.py``), which uses
the API whenever a server is configured; this is its fallback on the machine that runs ``up``.
Image bytes come from the blob folder of the same data directory. No API key: whoever can reach
the database can read it anyway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.cli_state import NoDatabase, database_settings, running_state, settings_for
from app.client.errors import ClientError
from app.core.blobs import LocalBlobStore
from app.core.errors import DomainError, ErrorCode, ValidationFailed
from app.documents import open_database
from app.exports.models import DatasetVersion, VersionStatus
from app.exports.writers import parse_format, write_export
from app.settings import Settings


async def _export(
    settings: Settings, version_id: str, fmt: str, output: Path, images: bool
) -> tuple[int, int]:
    assert settings.mongodb_url
    kind = parse_format(fmt)
    client = await open_database(settings.mongodb_url, settings.mongodb_db)
    try:
        version = await DatasetVersion.get(version_id)
        if version is None:
            raise LookupError(version_id)
        if version.status is not VersionStatus.READY:
            raise ValidationFailed("the version is still being built", code=ErrorCode.VERSION_NOT_READY)
        tmp = output.with_name(output.name + ".part")
        with tmp.open("wb") as fh:
            await write_export(version, kind, fh, LocalBlobStore(settings.resolved_blob_dir), images=images)
        tmp.replace(output)
        return version.inputs_count, version.annotations_count
    finally:
        await client.close()


def export_local(version_id: str, fmt: str, output: Path | None, images: bool, data_dir: Path | None) -> bool:
    """Write the zip from the database; False when no database is at hand (MONGODB_URL unset
    and no ``up`` running on the data folder). Never starts or creates a database."""
    settings = settings_for(data_dir=data_dir)
    if not settings.mongodb_url and not running_state(settings):
        return False
    target = output or Path(f"{version_id}-{fmt.lower()}.zip")
    try:
        with database_settings(settings) as found:
            inputs, annotations = asyncio.run(_export(found, version_id, fmt, target, images))
    except NoDatabase:
        return False
    except LookupError:
        raise ClientError(f"no dataset version {version_id!r}", code="NOT_FOUND") from None
    except DomainError as exc:
        raise ClientError(exc.message, code=exc.code.value, field=exc.field) from None
    print(f"wrote {target} ({inputs} inputs, {annotations} annotations)")
    return True
