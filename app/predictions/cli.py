"""``labelstream import-predictions FILE --task ID``: the ``importPredictions`` mutation over HTTP.

An API client, like the other client commands: it sends the file as a GraphQL multipart request
to the server and key of ``--url`` / ``--key``, else ``LABELSTREAM_URL`` / ``LABELSTREAM_API_KEY``,
else the saved ``labelstream login`` (``app.client.config.resolve``). It prints what the import
did, or every problem of a refused file (with its line) and exits 1; nothing is imported then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console

from app.client import config
from app.client.errors import UsageError
from app.predictions.formats import ImportFormat

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

MUTATION = """mutation($i: ImportPredictionsInput!) { importPredictions(input: $i) { __typename
  ... on ImportPredictionsSuccess { sourceId inputs predictions skipped approved awaitingReview discarded
        labelingTask { id status } }
  ... on ImportPredictionsError { problemsCount problems { line file code message } }
  ... on Error { code field message } } }"""
SUFFIXES = {".json": ImportFormat.COCO_RESULTS, ".zip": ImportFormat.YOLO, ".jsonl": ImportFormat.JSONL}
FORMATS = ", ".join(f.value.lower() for f in ImportFormat)


def guess_format(path: Path, given: str | None) -> ImportFormat:
    if given:
        try:
            return ImportFormat(given.upper().replace("-", "_"))
        except ValueError:
            raise typer.BadParameter(f"one of {FORMATS}", param_hint="--format") from None
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise typer.BadParameter(
            f"cannot tell from {path.name!r}; give one of {FORMATS}", param_hint="--format"
        )
    return found


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        left, sep, right = value.partition("=")
        if not sep or not left or not right:
            raise typer.BadParameter(f"{value!r} is not FROM=TO", param_hint=option)
        out.append((left, right))
    return out


def post_import(
    url: str, key: str, variables: dict[str, Any], path: Path, timeout: float = 600.0
) -> dict[str, Any]:
    """Send the multipart request; returns the mutation's result union member."""
    operations = {"query": MUTATION, "variables": {"i": {**variables, "file": None}}}
    with path.open("rb") as fh:
        response = httpx.post(
            url.rstrip("/") + "/graphql",
            data={"operations": orjson.dumps(operations).decode(), "map": '{"0": ["variables.i.file"]}'},
            files={"0": (path.name, fh, "application/octet-stream")},
            headers={"Authorization": f"Key {key}"},
            timeout=timeout,
        )
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if body.get("errors") or response.status_code != 200:
        errors = body.get("errors") or [{"message": f"HTTP {response.status_code}: {response.text[:200]}"}]
        raise RuntimeError("; ".join(str(e.get("message")) for e in errors))
    result: dict[str, Any] = body["data"]["importPredictions"]
    return result


def import_predictions_command(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The predictions file.")
    ],
    task: Annotated[str, typer.Option("--task", "-t", help="The labeling task's id.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help=f"{FORMATS}; default from the file's suffix (.json, .zip, .jsonl)."
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="The API's base URL (default: LABELSTREAM_URL, else the saved login)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="An API key (default: LABELSTREAM_API_KEY, else the saved login)."),
    ] = None,
    map_concept: Annotated[
        list[str] | None, typer.Option("--map-concept", help="CATEGORY=CONCEPT_ID (repeat).")
    ] = None,
    map_image: Annotated[
        list[str] | None, typer.Option("--map-image", help="IMAGE=INPUT_ID (repeat).")
    ] = None,
    names: Annotated[str | None, typer.Option("--names", help="YOLO class names, comma-separated.")] = None,
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown-categories", help="Skip predictions of unknown categories.")
    ] = False,
) -> None:
    """Import predictions computed elsewhere into a labeling task (COCO results, YOLO zip, JSONL)."""
    try:
        target = config.resolve(url, key)
    except UsageError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    variables: dict[str, Any] = {
        "taskId": task,
        "format": guess_format(file, fmt).value,
        "conceptMapping": [
            {"modelConceptId": a, "conceptId": b} for a, b in _pairs(map_concept or [], "--map-concept")
        ],
        "imageMapping": [{"image": a, "inputId": b} for a, b in _pairs(map_image or [], "--map-image")],
        "skipUnknownCategories": skip_unknown,
    }
    if names:
        variables["names"] = [n.strip() for n in names.split(",")]
    try:
        result = post_import(target.url, target.key, variables, file)
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        err.print(f"[red]import failed: {exc}[/red]")
        raise typer.Exit(1) from None
    kind = result["__typename"]
    if kind == "ImportPredictionsSuccess":
        task_info = result["labelingTask"]
        console.print(
            f"imported {result['predictions']} predictions on {result['inputs']} inputs into task "
            f"{task_info['id']} ({task_info['status']}): {result['approved']} approved, "
            f"{result['awaitingReview']} awaiting review, {result['discarded']} discarded, "
            f"{result['skipped']} skipped; source {result['sourceId']}"
        )
        return
    if kind == "ImportPredictionsError":
        err.print(f"[red]refused, nothing imported: {result['problemsCount']} problem(s)[/red]")
        for p in result["problems"]:
            where = f"{p['file']}:" if p["file"] else ""
            err.print(f"  {where}{p['line']}: {p['code']} {p['message']}")
    else:
        err.print(f"[red]{result['code']}: {result['message']}[/red] ({result.get('field') or ''})")
    raise typer.Exit(1)
