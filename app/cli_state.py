"""What the command-line commands share: settings from their options, and the state file by
which a running ``labelstream up`` is found from another command (same data directory)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.embedded import pid_alive
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


@contextlib.contextmanager
def state_file(settings: Settings, mongodb_url: str, redis_url: str) -> Iterator[None]:
    """While ``up`` runs, other commands (``keys create``) find its servers here."""
    path = settings.data_dir / STATE_FILE
    path.write_text(json.dumps({"pid": os.getpid(), "mongodb_url": mongodb_url, "redis_url": redis_url}))
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
