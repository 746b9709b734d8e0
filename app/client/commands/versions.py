"""``labelstream versions list|create|download`` and ``labelstream export``: dataset versions
through the API (the download is ``DatasetVersion.exportUrl``, sent with the API key).

``export`` with no server configured but a database at hand (MONGODB_URL, or the ``up`` running
on --data-dir) writes the zip straight from the database, as it always did (``app/exports/cli.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.client.api import ERROR_FIELDS, Api
from app.client.commands.common import DataDirOpt, KeyOpt, UrlOpt, api, console, err, guarded, table, target
from app.client.errors import ClientError, UsageError

versions_cli = typer.Typer(
    help="Dataset versions: immutable snapshots, and their exports.", no_args_is_help=True
)

LIST = (
    "query($d: ID!, $first: Int, $after: String) {"
    " datasetVersions(datasetId: $d, first: $first, after: $after) {"
    " nodes { id description status inputsCount annotationsCount createdAt }"
    " pageInfo { hasNextPage endCursor } } }"
)
CREATE = (
    "mutation($i: CreateDatasetVersionInput!) { createDatasetVersion(input: $i) { __typename"
    " ... on DatasetVersionSuccess { datasetVersion { id status inputsCount annotationsCount } } "
    + ERROR_FIELDS
    + " } }"
)
ONE = (
    "query($id: ID!, $f: ExportFormat!) { datasetVersion(id: $id) {"
    " id status inputsCount annotationsCount exportUrl(format: $f) } }"
)
READY_WAIT_S = 600.0

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format", "-f", help="COCO, YOLO, YOLO_SEGMENT, VOC or JSONL (the server's ExportFormat)."
    ),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Zip file to write.")]
ImagesOpt = Annotated[bool, typer.Option("--images/--no-images", help="Include the image files.")]


@versions_cli.command("list")
@guarded
def versions_list(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset id.")],
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """List a dataset's versions, oldest first."""
    with api(url, key) as client:
        rows = table("ID", "STATUS", "INPUTS", "ANNOTATIONS", "CREATED", "DESCRIPTION")
        for v in client.pages(LIST, ["datasetVersions"], d=dataset):
            rows.add_row(
                v["id"], v["status"], str(v["inputsCount"]), str(v["annotationsCount"]), v["createdAt"][:19],
                v["description"],
            )  # fmt: skip
        console.print(rows)


@versions_cli.command("create")
@guarded
def versions_create(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset id.")],
    description: Annotated[str, typer.Option(help="What this snapshot is.")] = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Snapshot a dataset (its SUCCESS annotations); prints the version's id."""
    with api(url, key) as client:
        made = client.mutate(
            CREATE, "createDatasetVersion", i={"datasetId": dataset, "description": description}
        )
        v = made["datasetVersion"]
        counts = f"{v['inputsCount']} inputs, {v['annotationsCount']} annotations"
        err.print(f"Version {v['id']}: {v['status']}, {counts}")
        print(v["id"])


def download(client: Api, version_id: str, fmt: str, output: Path | None, images: bool) -> Path:
    fmt = fmt.upper()
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        v: dict[str, Any] | None = client.query(ONE, id=version_id, f=fmt)["datasetVersion"]
        if v is None:
            raise ClientError(f"no dataset version {version_id!r}", code="NOT_FOUND")
        if v["status"] == "READY":
            break
        if time.monotonic() > deadline:
            raise ClientError(f"version {version_id} is still {v['status']}", code="VERSION_NOT_READY")
        time.sleep(1.0)  # a version is built once; no subscription announces it
    dest = output or Path(f"{version_id}-{fmt.lower()}.zip")
    path, _, query = str(v["exportUrl"]).partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    if not images:
        params["images"] = "false"
    try:
        client.download(path, params, dest)
    except OSError as exc:
        raise UsageError(f"cannot write {dest}: {exc}") from None
    print(f"wrote {dest} ({v['inputsCount']} inputs, {v['annotationsCount']} annotations)")
    return dest


@versions_cli.command("download")
@guarded
def versions_download(
    version_id: Annotated[str, typer.Argument(help="The dataset version's id.")],
    format: FormatOpt = "COCO",
    output: OutputOpt = None,
    images: ImagesOpt = True,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Download a dataset version as a zip."""
    with api(url, key) as client:
        download(client, version_id, format, output, images)


@guarded
def export_command(
    version_id: Annotated[str, typer.Argument(help="The dataset version's id.")],
    format: FormatOpt = "COCO",
    output: OutputOpt = None,
    images: ImagesOpt = True,
    url: UrlOpt = None,
    key: KeyOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export a dataset version as a zip (COCO, YOLO, YOLO_SEGMENT, VOC, JSONL), through the API
    of the server you logged in to (or --url/--key). Without one, from the database of the
    `labelstream up` running on --data-dir, or MONGODB_URL."""
    try:
        found = target(url, key, data_dir)
    except UsageError as no_server:
        from app.exports.cli import export_local

        if url or key or not export_local(version_id, format, output, images, data_dir):
            raise no_server from None
        return
    with Api(found) as client:
        download(client, version_id, format, output, images)
