"""``labelstream import PATH``: a folder of images, a file of URLs, or a COCO / YOLO / VOC /
JSON Lines dataset with its labels (boxes, polygons), into a dataset of an app, through the API.

The concepts the labels name are found by name in the app, or created. A state file (printed at
the end; ``--state`` to choose it) remembers what was imported: running the same command again
retries only what failed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.client import config, sources
from app.client.api import ERROR_FIELDS, Api
from app.client.commands.common import AppOpt, DataDirOpt, KeyOpt, UrlOpt, api, app_id, console, err, guarded
from app.client.errors import FAILED
from app.client.importer import Importer, ImportState

CONCEPTS = (
    "query($a: ID!, $first: Int, $after: String) { concepts(appId: $a, first: $first, after: $after) {"
    " nodes { id name } pageInfo { hasNextPage endCursor } } }"
)
CREATE_CONCEPT = (
    "mutation($i: CreateConceptInput!) { createConcept(input: $i) { __typename"
    " ... on ConceptSuccess { concept { id name } } " + ERROR_FIELDS + " } }"
)
DATASET = "query($id: ID!) { dataset(id: $id) { id name appId } }"
DATASETS = (
    "query($a: ID!, $first: Int, $after: String) { datasets(appId: $a, first: $first, after: $after) {"
    " nodes { id name } pageInfo { hasNextPage endCursor } } }"
)
CREATE_DATASET = (
    "mutation($i: CreateDatasetInput!) { createDataset(input: $i) { __typename"
    " ... on DatasetSuccess { dataset { id name } } " + ERROR_FIELDS + " } }"
)


def concept_ids(client: Api, app: str, names: list[str]) -> dict[str, str]:
    """Name -> id of the app's concepts, creating the missing ones."""
    known = {c["name"]: c["id"] for c in client.pages(CONCEPTS, ["concepts"], a=app)}
    for name in names:
        if name not in known:
            made = client.mutate(CREATE_CONCEPT, "createConcept", i={"appId": app, "name": name})
            known[name] = made["concept"]["id"]
    return known


def dataset_id(client: Api, app: str, chosen: str) -> tuple[str, str]:
    """(id, name) of the dataset named or identified by ``chosen``; created when no dataset of
    the app has that name or id."""
    for d in client.pages(DATASETS, ["datasets"], a=app):
        if chosen in (d["id"], d["name"]):
            return d["id"], d["name"]
    made = client.mutate(CREATE_DATASET, "createDataset", i={"appId": app, "name": chosen})
    return made["dataset"]["id"], made["dataset"]["name"]


def _state_path(about: dict[str, str]) -> Path:
    digest = hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(about.items())).encode()).hexdigest()
    return config.state_dir() / "imports" / f"{digest[:16]}.json"


@guarded
def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder of images, a file of URLs, a COCO JSON file, a YOLO / VOC folder, or a "
            "JSON Lines export (data.jsonl)."
        ),
    ],
    format: Annotated[
        sources.SourceFormat, typer.Option("--format", "-f", help="What PATH is (auto: guessed).")
    ] = sources.SourceFormat.AUTO,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="Dataset id or name (created if no such name; default: PATH's name)."
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state", help="State file of this import (default: in $XDG_STATE_HOME/labelstream/imports)."
        ),
    ] = None,
    app: AppOpt = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Import images (and their labels) as inputs (and annotations) of a dataset.

    Re-running the same command skips what an earlier run imported and retries what failed."""
    source = sources.read(path, format)
    with api(url, key, data_dir) as client:
        app_ = app_id(client, app)
        default_name = path.stem if path.is_file() else path.resolve().name
        ds_id, ds_name = dataset_id(client, app_, dataset or default_name)
        about = {
            "server": client.url,
            "app": app_,
            "dataset": ds_id,
            "source": str(path.expanduser().resolve()),
            "format": source.format.value,
        }
        state_file = state or _state_path(about)
        status = ImportState.open(state_file, about)
        ids = concept_ids(client, app_, source.concepts)
        labels = sum(len(i.labels) for i in source.items)
        err.print(
            f"Importing {len(source.items)} {source.format.value} items ({labels} labels, "
            f"{len(source.concepts)} concepts) into dataset {ds_name} ({ds_id}) of app {app_}"
        )
        with Progress(
            TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
        ) as bar:
            job = bar.add_task("import", total=len(source.items))
            outcome = Importer(client, app_, ds_id, ids, status, about).run(
                source, lambda n: bar.advance(job, n)
            )
            status.save(about)
    _report(outcome.__dict__, state_file, ds_id)


def _report(outcome: dict[str, Any], state_file: Path, ds_id: str) -> None:
    console.print(
        f"Imported {outcome['inputs_added']} inputs and {outcome['annotations_added']} annotations "
        f"into dataset {ds_id}; {outcome['skipped']} already imported."
    )
    failed: dict[str, str] = outcome["failed"]
    if not failed:
        return
    err.print(f"[red]{len(failed)} failed:[/red]")
    for key, why in list(failed.items())[:20]:
        err.print(f"  {key}: {why}", soft_wrap=True, markup=False)
    if len(failed) > 20:
        err.print(f"  ... and {len(failed) - 20} more")
    err.print(f"State: {state_file}. Run the same command again to retry the failed ones.", soft_wrap=True)
    raise typer.Exit(FAILED)
