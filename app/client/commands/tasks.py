"""``labelstream tasks list|watch``: labeling tasks, and their progress live over the
``labelingTaskProgress`` subscription (WebSocket, graphql-transport-ws)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from app.client.commands.common import AppOpt, KeyOpt, UrlOpt, api, app_id, console, err, guarded, table
from app.client.errors import FAILED
from app.client.live import subscribe

tasks_cli = typer.Typer(help="Labeling tasks.", no_args_is_help=True)

LIST = (
    "query($a: ID!, $f: LabelingTaskFilter, $first: Int, $after: String) {"
    " labelingTasks(appId: $a, filter: $f, first: $first, after: $after) {"
    " nodes { id name status priority createdAt"
    " metrics { inputsTotal processed failed labelingPercent reviewedPercent } }"
    " pageInfo { hasNextPage endCursor } } }"
)
PROGRESS = (
    "subscription($t: ID!) { labelingTaskProgress(taskId: $t) {"
    " taskId name status final"
    " metrics { inputsTotal processed failed approved awaitingReview labelingPercent } } }"
)
RUNNING = ["QUEUED", "IN_PROGRESS"]
BAD_ENDS = {"FAILED", "CANCELLED"}


@tasks_cli.command("list")
@guarded
def tasks_list(
    app: AppOpt = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only tasks in this status (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many tasks.")] = 50,
) -> None:
    """List the app's labeling tasks with their progress."""
    with api(url, key) as client:
        app_ = app_id(client, app)
        filt = {"statuses": [s.upper() for s in status]} if status else None
        rows = table("ID", "NAME", "STATUS", "LABELED", "REVIEWED", "INPUTS", "FAILED")
        for n, t in enumerate(client.pages(LIST, ["labelingTasks"], a=app_, f=filt)):
            if n >= limit:
                break
            m = t["metrics"]
            labeled, reviewed = f"{m['labelingPercent']:.1f}%", f"{m['reviewedPercent']:.1f}%"
            done = f"{m['processed']}/{m['inputsTotal']}"
            rows.add_row(t["id"], t["name"], t["status"], labeled, reviewed, done, str(m["failed"]))
        console.print(rows)


@tasks_cli.command("watch")
@guarded
def tasks_watch(
    task_ids: Annotated[
        list[str] | None, typer.Argument(help="Tasks to watch (default: the app's running ones).")
    ] = None,
    app: AppOpt = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Live progress bars until every task is over (DONE, IDLE, FAILED or CANCELLED).

    Exits 1 when a task failed or was cancelled."""
    with api(url, key) as client:
        ids = list(task_ids or [])
        if not ids:
            app_ = app_id(client, app)
            ids = [t["id"] for t in client.pages(LIST, ["labelingTasks"], a=app_, f={"statuses": RUNNING})]
            if not ids:
                console.print("No task is running.")
                return
        finals: dict[int, dict[str, Any]] = {}
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), console=err,
        ) as bars:  # fmt: skip
            rows: dict[int, TaskID] = {
                k: bars.add_task(t, total=None, status="connecting") for k, t in enumerate(ids)
            }
            for index, data in subscribe(client, PROGRESS, [{"t": t} for t in ids]):
                if data is None:
                    continue
                p = data["labelingTaskProgress"]
                m = p["metrics"]
                bars.update(
                    rows[index], description=p["name"], total=max(m["inputsTotal"], 1),
                    completed=m["processed"], status=f"{p['status']} failed={m['failed']}",
                )  # fmt: skip
                if p["final"]:
                    finals[index] = p
                    if len(finals) == len(ids):
                        break
    bad = 0
    for index in sorted(finals):
        p, m = finals[index], finals[index]["metrics"]
        console.print(
            f"{p['taskId']} {p['name']}: {p['status']} ({m['processed']}/{m['inputsTotal']} inputs, "
            f"{m['failed']} failed, {m['approved']} approved, {m['awaitingReview']} to review)"
        )
        bad += p["status"] in BAD_ENDS
    if bad:
        raise typer.Exit(FAILED)
