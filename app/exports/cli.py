"""``labelstream export VERSION_ID``: write a dataset version as a zip, straight from MongoDB.

Runs against ``MONGODB_URL`` (or the servers of a running ``labelstream up`` on --data-dir);
image bytes come from the blob folder of the same --data-dir. No API key: whoever can reach the
database can read it anyway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.cli_state import running_state as _running_state
from app.cli_state import settings_for as _settings
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


def export_command(
    version_id: Annotated[str, typer.Argument(help="The dataset version's id.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="COCO, YOLO, YOLO_SEGMENT, VOC or JSONL.")
    ] = "COCO",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Zip file to write.")] = None,
    images: Annotated[bool, typer.Option("--images/--no-images", help="Include the image files.")] = True,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of the data and blobs.")] = None,
) -> None:
    """Export a dataset version as a zip (COCO, YOLO, YOLO_SEGMENT, VOC, JSONL)."""
    err = Console(stderr=True, highlight=False)
    settings = _settings(data_dir=data_dir)
    if not settings.mongodb_url:
        state = _running_state(settings)
        if not state:
            err.print("[red]MONGODB_URL is not set and no `labelstream up` is running[/red]")
            raise typer.Exit(2)
        settings = settings.model_copy(update={"mongodb_url": state["mongodb_url"]})
    target = output or Path(f"{version_id}-{format.lower()}.zip")
    try:
        inputs, annotations = asyncio.run(_export(settings, version_id, format, target, images))
    except LookupError:
        err.print(f"[red]no dataset version {version_id!r}[/red]")
        raise typer.Exit(1) from None
    except DomainError as exc:
        err.print(f"[red]{exc.code.value}: {exc.message}[/red]")
        raise typer.Exit(2) from None
    print(f"wrote {target} ({inputs} inputs, {annotations} annotations)")
