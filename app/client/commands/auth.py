"""``labelstream login`` / ``logout`` / ``whoami``: which server and key the client uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from app.client import config
from app.client.api import Api
from app.client.commands.common import AppOpt, DataDirOpt, KeyOpt, UrlOpt, console, guarded, target
from app.client.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:8080"
ME = "{ me { user { id email name } apps(first: 100) { nodes { id name myRoles } } } }"


def _me(target: config.Target) -> dict[str, Any]:
    with Api(target, timeout=30) as client:
        me: dict[str, Any] = client.query(ME)["me"]
        return me


def _running_up(data_dir: Path | None) -> str | None:
    from app.cli_state import running_api_url  # loads the server's settings: only when asked

    return running_api_url(data_dir)


@guarded
def login(url: UrlOpt = None, key: KeyOpt = None, app: AppOpt = None, data_dir: DataDirOpt = None) -> None:
    """Save a server URL and API key in your config file, after checking them with the server.

    The URL defaults to LABELSTREAM_URL, then the `labelstream up` running on --data-dir, then
    http://127.0.0.1:8080; the key to LABELSTREAM_API_KEY, else it is asked for."""
    chosen = url or os.environ.get(config.URL_ENV) or _running_up(data_dir) or DEFAULT_URL
    chosen = config.normalize_url(chosen)
    secret = key or os.environ.get(config.KEY_ENV)
    if not secret:
        secret = typer.prompt(f"API key for {chosen}", hide_input=True).strip()
    me = _me(config.Target(chosen, secret))
    apps = me["apps"]["nodes"]
    if app and app not in {a["id"] for a in apps}:
        raise UsageError(f"you are not a member of an app {app!r}")
    saved: dict[str, Any] = {"url": chosen, "key": secret}
    if app:
        saved["app"] = app
    path = config.save(saved)
    console.print(f"Logged in to {chosen} as {me['user']['email']}; saved in {path}", soft_wrap=True)
    for a in apps:
        console.print(f"  app {a['id']}  {a['name']}  ({', '.join(a['myRoles'])})")


@guarded
def logout() -> None:
    """Forget the saved server and API key (the key itself stays valid; `keys revoke` ends it)."""
    if config.remove():
        console.print(f"Removed {config.config_path()}")
    else:
        console.print("Not logged in")


@guarded
def whoami(url: UrlOpt = None, key: KeyOpt = None, data_dir: DataDirOpt = None) -> None:
    """Show the server, the user the key belongs to, and their apps."""
    found = target(url, key, data_dir)
    me = _me(found)
    console.print(f"{me['user']['email']} on {found.url}", soft_wrap=True)
    for a in me["apps"]["nodes"]:
        default = "  (default)" if a["id"] == found.app else ""
        console.print(f"  app {a['id']}  {a['name']}  ({', '.join(a['myRoles'])}){default}")
