"""What every client command shares: the --url/--key/--app options, resolving the server,
and turning a :class:`ClientError` into one red line and an exit code (never a traceback)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from app.client import config
from app.client.api import Api
from app.client.errors import ClientError, UsageError

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="Server URL, e.g. http://127.0.0.1:8080 (default: LABELSTREAM_URL, then login)."
    ),
]
KeyOpt = Annotated[
    str | None, typer.Option("--key", help="API key (default: LABELSTREAM_API_KEY, then login).")
]
AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app", help="App id (default: LABELSTREAM_APP, the one chosen at login, or your only app)."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder of a local `labelstream up` to use when no server is set."),
]

P = ParamSpec("P")
R = TypeVar("R")


def guarded(command: Callable[P, R]) -> Callable[P, R]:
    """Report client errors as a message and an exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ClientError as exc:
            err.print(Text.assemble(("error: ", "red"), str(exc)), soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return run


def target(url: str | None, key: str | None, data_dir: Path | None = None) -> config.Target:
    def running_up() -> str | None:
        from app.cli_state import running_api_url  # loads the server's settings: only when asked

        return running_api_url(data_dir)

    return config.resolve(url, key, running_up)


def api(url: str | None, key: str | None, data_dir: Path | None = None) -> Api:
    return Api(target(url, key, data_dir))


APPS = (
    "query($first: Int, $after: String) { apps(first: $first, after: $after) {"
    " nodes { id name } pageInfo { hasNextPage endCursor } } }"
)


def app_id(client: Api, chosen: str | None) -> str:
    """The app a command works in: --app, else the default, else the caller's only app."""
    chosen = chosen or client.target.app
    if chosen:
        return chosen
    apps = list(client.pages(APPS, ["apps"]))
    if len(apps) == 1:
        return str(apps[0]["id"])
    if not apps:
        raise UsageError("you are a member of no app; create one first (mutation createApp)")
    listed = ", ".join(f"{a['id']} ({a['name']})" for a in apps[:10])
    raise UsageError(f"you are a member of {len(apps)} apps; pass --app with one of: {listed}")


def table(*columns: str) -> Any:
    from rich.table import Table

    t = Table(*columns, box=None, pad_edge=False, header_style="bold")
    return t
