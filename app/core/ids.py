"""Identifiers: 32 lowercase hex characters, Clarifai style, sortable by creation time.

The first 12 hex digits are milliseconds since the epoch and the remaining 20 are random, so
ids sort in creation order (cursor pagination relies on that) and never collide in practice.
Every ``_id`` is a string the service generates (MONGODB.md, contract 1).
"""

from __future__ import annotations

import re
import secrets
import time

_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def is_id(value: str) -> bool:
    return bool(_ID_RE.match(value))
