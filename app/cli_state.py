"""What the server-side commands share: settings from their options, and the state file by
which a running ``labelstream up`` is found from another command (same data directory).

Finding a running ``up`` only reads ``<data dir>/servers.json``: no command but ``up`` (and
``demo``) creates a data folder or starts a database, so a command run from the wrong folder says
what to pass instead of quietly opening an empty database there.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.embedded import EmbeddedMongo, pid_alive
from app.settings import Settings

STATE_FILE = "servers.json"


def settings_for(host: str | None = None, port: int | None = None, data_dir: Path | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)


def api_url(settings: Settings) -> str:
    """Where a local client reaches the API ``up`` serves (a wildcard host means loopback)."""
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


@contextlib.contextmanager
def state_file(settings: Settings, mongodb_url: str, redis_url: str) -> Iterator[None]:
    """While ``up`` runs, other commands (``keys create``, the API client) find it here."""
    path = settings.data_dir / STATE_FILE
    state = {
        "pid": os.getpid(),
        "mongodb_url": mongodb_url,
        "redis_url": redis_url,
        "mongodb_db": settings.mongodb_db,
        "api_url": api_url(settings),
    }
    path.write_text(json.dumps(state))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running_state(settings: Settings) -> dict[str, Any] | None:
    path = settings.data_dir / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(int(state.get("pid", 0))) else None


def running_api_url(data_dir: Path | None) -> str | None:
    """The API URL of the ``up`` running on ``data_dir`` (default: LABELSTREAM_DATA_DIR or
    ./.labelstream), if any."""
    state = running_state(settings_for(data_dir=data_dir))
    return str(state["api_url"]) if state and state.get("api_url") else None


class NoDatabase(Exception):
    """No MONGODB_URL, no running ``up`` on the data folder, and no database in it."""


@contextlib.contextmanager
def database_settings(settings: Settings) -> Iterator[Settings]:
    """Settings naming a reachable database for a command that needs one directly.

    In order: ``MONGODB_URL``; the servers of the ``up`` running on the data folder; the
    embedded database an ``up`` left in that folder (started for the command, then stopped).
    A folder that holds no database raises :class:`NoDatabase`: nothing is created."""
    if settings.mongodb_url:
        yield settings
        return
    state = running_state(settings)
    if state:
        yield settings.model_copy(
            update={
                "mongodb_url": state["mongodb_url"],
                "mongodb_db": state.get("mongodb_db", settings.mongodb_db),
            }
        )
        return
    folder = settings.data_dir / "mongodb"
    if not folder.is_dir():
        raise NoDatabase(
            f"no database: MONGODB_URL is not set, no `labelstream up` is running on "
            f"{settings.data_dir.resolve()} and it holds no data. Pass --data-dir with the folder "
            "`labelstream up` uses (or set LABELSTREAM_DATA_DIR), or set MONGODB_URL"
        )
    mongo = EmbeddedMongo(folder)
    mongo.start()
    try:
        yield settings.model_copy(update={"mongodb_url": mongo.url})
    finally:
        mongo.stop()


async def create_key_in_database(settings: Settings, email: str, description: str) -> str:
    """A key for an existing user, written straight to the database (bootstrap, no API key)."""
    from app.documents import open_database
    from app.users.service import create_api_key, find_user_by_email

    assert settings.mongodb_url
    client = await open_database(settings.mongodb_url, settings.mongodb_db)
    try:
        user = await find_user_by_email(email)
        if user is None:
            raise LookupError(email)
        _, secret = await create_api_key(user.id, description)
        return secret
    finally:
        await client.close()
