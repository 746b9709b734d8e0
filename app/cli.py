"""The ``labelstream`` command.

labelstream up          embedded servers (when no URL is set) + API + one worker
labelstream serve       the API only (needs MONGODB_URL; REDIS_URL for jobs)
labelstream worker      one arq worker
labelstream schema export|check
labelstream blobs gc    delete stored files nothing names (left by a deletion that died)

The API-client commands (login, logout, whoami, keys, import, tasks, versions, export) live in
``app/client/commands`` and talk to whichever server the user logged in to;
``labelstream import-predictions FILE --task ID`` (``app/predictions/cli.py``) too.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from app.cli_state import running_state as _running_state
from app.cli_state import settings_for as _settings
from app.cli_state import state_file as _state_file
from app.settings import Settings

cli = typer.Typer(
    help="Labelstream: self-hosted auto-annotation with a GraphQL API.",
    no_args_is_help=True,
    add_completion=False,
)
schema_cli = typer.Typer(help="The GraphQL schema file (schema.graphql).", no_args_is_help=True)
cli.add_typer(schema_cli, name="schema")
blobs_cli = typer.Typer(help="The blob store: images and model files.", no_args_is_help=True)
cli.add_typer(blobs_cli, name="blobs")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

HostOpt = Annotated[str | None, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int | None, typer.Option("--port", help="Port to listen on.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for embedded servers' data and blobs.")
]


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _uvicorn(settings: Settings) -> None:
    import uvicorn

    from app.main import create_app

    config = uvicorn.Config(
        lambda: create_app(settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        ws="websockets-sansio",
        ws_per_message_deflate=settings.ws_per_message_deflate,
        lifespan="on",
    )
    uvicorn.Server(config).run()


async def _bootstrap(settings: Settings, email: str) -> str | None:
    from app.apps.service import bootstrap
    from app.documents import open_database

    assert settings.mongodb_url
    client = await open_database(settings.mongodb_url, settings.mongodb_db)
    try:
        made = await bootstrap(email, "My first app")
        return made[2] if made else None
    finally:
        await client.close()


@cli.command()
def up(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    owner_email: Annotated[
        str, typer.Option(help="Owner created on first start.")
    ] = "owner@localhost.localdomain",
    workers: Annotated[int, typer.Option(min=0, max=16, help="Worker processes to run.")] = 1,
) -> None:
    """Run everything: embedded MongoDB-wire and Redis servers when no URL is set, the API and
    a worker. Ctrl-C (or SIGTERM) stops all of it; data stays in --data-dir for the next start."""
    from app.embedded import WORKERS_PID_FILE, EmbeddedServers
    from app.supervisor import Supervisor

    _exit_on_sigterm()
    settings = _settings(host, port, data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if _running_state(settings):
        err.print(f"[red]labelstream up is already running on {settings.data_dir}[/red]")
        raise typer.Exit(1)
    with EmbeddedServers(settings.data_dir, settings.mongodb_url, settings.redis_url) as servers:
        assert servers.mongodb_url and servers.redis_url
        settings = settings.model_copy(
            update={"mongodb_url": servers.mongodb_url, "redis_url": servers.redis_url}
        )
        if servers.mongo is not None:
            console.print(f"MongoDB (embedded nx-27017): {servers.mongodb_url}")
        if servers.redis is not None:
            console.print(f"Redis (embedded valkey): {servers.redis_url}")
        secret = asyncio.run(_bootstrap(settings, owner_email))
        if secret:
            console.print(f"Created owner {owner_email} and the app 'My first app'.")
            console.print("Your API key (shown once; send it as 'Authorization: Key <key>'):")
            print(f"API key: {secret}", flush=True)
        env = {
            **os.environ,
            "MONGODB_URL": servers.mongodb_url,
            "REDIS_URL": servers.redis_url,
            "LABELSTREAM_DATA_DIR": str(settings.data_dir),
        }
        supervisor = Supervisor(
            [sys.executable, "-m", "app.cli", "worker"],
            env,
            workers,
            settings.data_dir / WORKERS_PID_FILE,
            say=lambda text: err.print(f"[yellow]{text}[/yellow]"),
        )
        try:
            with _state_file(settings, servers.mongodb_url, servers.redis_url):
                supervisor.start()  # restarts a worker that dies, with back-off
                url = f"http://{settings.host}:{settings.port}/graphql"
                console.print(f"GraphiQL: {url}", soft_wrap=True)
                _uvicorn(settings)
        finally:
            supervisor.stop()


@cli.command()
def demo(data_dir: DataDirOpt = None) -> None:
    """Label the bundled sample images with the built-in models, with a live progress bar.

    Uses the servers of a running `labelstream up` on the same --data-dir, else starts the
    embedded ones for the duration of the demo (its data stays in --data-dir)."""
    from app.demo.runner import DemoError, run_demo
    from app.embedded import EmbeddedServers

    _exit_on_sigterm()
    settings = _settings(data_dir=data_dir).model_copy(update={"task_batch_size": 1})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    state = None if settings.mongodb_url else _running_state(settings)
    if state:
        settings = settings.model_copy(
            update={"mongodb_url": state["mongodb_url"], "redis_url": state["redis_url"]}
        )
    with EmbeddedServers(settings.data_dir, settings.mongodb_url, settings.redis_url) as servers:
        settings = settings.model_copy(
            update={"mongodb_url": servers.mongodb_url, "redis_url": servers.redis_url}
        )
        try:
            asyncio.run(run_demo(settings, console))
        except DemoError as exc:
            err.print(f"[red]demo failed: {exc}[/red]")
            raise typer.Exit(1) from None


@cli.command()
def serve(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run the API only, against MONGODB_URL (and REDIS_URL)."""
    settings = _settings(host, port, data_dir)
    if not settings.mongodb_url:
        err.print("[red]MONGODB_URL is not set[/red] (or run `labelstream up`)")
        raise typer.Exit(2)
    _uvicorn(settings)


@cli.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
) -> None:
    """Run one arq worker against REDIS_URL and MONGODB_URL."""
    import logging

    from pymongo.errors import PyMongoError
    from redis.exceptions import RedisError

    from app.worker import create_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    settings = _settings()
    if not settings.mongodb_url or not settings.redis_url:
        err.print("[red]MONGODB_URL and REDIS_URL must be set[/red] (or run `labelstream up`)")
        raise typer.Exit(2)
    delay = 1.0
    while True:  # a lost Redis or MongoDB is waited out, not a reason to exit (the work is durable)
        started = time.monotonic()
        try:
            create_worker(settings, burst=burst).run()
            return  # burst done, or stopped by a signal
        except (ConnectionError, OSError, RedisError, PyMongoError) as exc:
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
            logging.getLogger("labelstream.worker").warning("lost a server (%s); again in %.0f s", exc, delay)
            time.sleep(delay)


@schema_cli.command("export")
def schema_export(
    path: Annotated[Path, typer.Option(help="Where to write.")] = Path("schema.graphql"),
    possible_types: Annotated[
        bool,
        typer.Option("--possible-types", help="Also write possible-types.json (Apollo/urql) next to it."),
    ] = False,
) -> None:
    """Write the SDL the code builds (and the interfaces' and unions' possible types)."""
    from app.graphql import possible_types as pt
    from app.graphql.schema import schema_sdl

    path.write_text(schema_sdl())
    console.print(f"wrote {path}")
    if possible_types or (path.parent / pt.FILE_NAME).exists():  # kept in step once it exists
        console.print(f"wrote {pt.write(path.parent)}")


@schema_cli.command("check")
def schema_check(
    path: Annotated[Path, typer.Option(help="File to compare.")] = Path("schema.graphql"),
) -> None:
    """Exit 1, with a diff, when the file differs from the SDL the code builds (or
    possible-types.json, when it exists next to it, from the possible types)."""
    from app.graphql import possible_types as pt
    from app.graphql.schema import schema_sdl

    if (stale := pt.stale(path.parent)) is not None and stale.exists():
        err.print(f"[red]{stale} differs from the code; run `labelstream schema export`[/red]")
        raise typer.Exit(1)
    built = schema_sdl()
    current = path.read_text() if path.exists() else ""
    if current == built:
        console.print(f"{path} is up to date")
        return
    diff = difflib.unified_diff(
        current.splitlines(True), built.splitlines(True), str(path), "built from code"
    )
    sys.stdout.writelines(diff)
    err.print(f"[red]{path} differs from the code; run `labelstream schema export`[/red]")
    raise typer.Exit(1)


@blobs_cli.command("gc")
def blobs_gc(
    data_dir: DataDirOpt = None,
    older_than_hours: Annotated[
        float, typer.Option("--older-than-hours", min=0, help="Only blobs stored longer ago than this.")
    ] = 1.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the unused blobs, delete nothing.")
    ] = False,
) -> None:
    """Delete stored images and model files that no input, model version or dataset version names
    any more: what a deletion that died midway left. Safe while the service runs. Uses
    MONGODB_URL, or the database of the `labelstream up` running on --data-dir."""
    from app.blob_gc import gc
    from app.cli_state import NoDatabase, database_settings

    try:
        with database_settings(_settings(data_dir=data_dir)) as found:
            console.print(gc(found, older_than_hours, dry_run))
    except NoDatabase as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None


from app.client.commands import register  # noqa: E402 - the API-client commands

register(cli)

from app.predictions.cli import import_predictions_command  # noqa: E402 - an API client

cli.command("import-predictions")(import_predictions_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
