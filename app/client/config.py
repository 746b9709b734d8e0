"""The user's client configuration: which server, which API key (``labelstream login``).

Stored in ``$XDG_CONFIG_HOME/labelstream/config.json`` (``~/.config/labelstream`` by default),
created with mode 0600 in a 0700 folder because it holds a secret. Flags beat environment
variables (``LABELSTREAM_URL``, ``LABELSTREAM_API_KEY``, ``LABELSTREAM_APP``), which beat the
file. A key is only sent to the server it was saved for: a ``--url`` or ``LABELSTREAM_URL`` that
names another server needs its own key.

Import state files (``labelstream import``) live in ``$XDG_STATE_HOME/labelstream/imports``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.client.errors import UsageError

URL_ENV = "LABELSTREAM_URL"
KEY_ENV = "LABELSTREAM_API_KEY"
APP_ENV = "LABELSTREAM_APP"


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    base = Path(value) if value and Path(value).is_absolute() else Path.home() / default
    return base / "labelstream"


def config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "config.json"


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def normalize_url(url: str) -> str:
    """``http://host:8080`` from ``host:8080``, ``http://host:8080/`` or ``.../graphql``."""
    url = url.strip().rstrip("/")
    if not url:
        raise UsageError("the server URL is empty")
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"the server URL must start with http:// or https:// (got {url!r})")
    return url.removesuffix("/graphql")


def load() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; fix it or run `labelstream logout`") from None
    return data if isinstance(data, dict) else {}


def save(data: dict[str, Any]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # an older file kept its mode through O_TRUNC
    tmp.replace(path)
    return path


def remove() -> bool:
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Target:
    """A server and the key to send it; ``app`` is the default app, when one was chosen."""

    url: str
    key: str
    app: str | None = None


def resolve(url: str | None, key: str | None, fallback_url: Callable[[], str | None] | None = None) -> Target:
    """The server and key for a command, from flags, environment, the config file, in order.

    ``fallback_url()`` (a running ``labelstream up`` found through its data folder) is asked
    when nothing names a server."""
    saved = load()
    saved_url = normalize_url(saved["url"]) if saved.get("url") else None
    chosen = url or os.environ.get(URL_ENV) or saved_url or (fallback_url() if fallback_url else None)
    if not chosen:
        raise UsageError(
            "no server: run `labelstream login --url URL --key KEY` once, "
            f"or pass --url and --key (or set {URL_ENV} and {KEY_ENV})"
        )
    chosen = normalize_url(chosen)
    secret = key or os.environ.get(KEY_ENV)
    if not secret and saved.get("key") and chosen == saved_url:
        secret = str(saved["key"])
    if not secret:
        raise UsageError(
            f"no API key for {chosen}: pass --key (or set {KEY_ENV}), "
            f"or run `labelstream login --url {chosen} --key KEY`"
        )
    app = os.environ.get(APP_ENV) or (saved.get("app") if chosen == saved_url else None)
    return Target(chosen, secret, app or None)
