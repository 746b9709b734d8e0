"""A throw-away database on the suite's MongoDB server, for the compat tests."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from pymongo import AsyncMongoClient

from tests.servers import Servers

Db = Any


@contextlib.asynccontextmanager
async def fresh_database(servers: Servers) -> AsyncIterator[Db]:
    """A database of its own (a random name), dropped afterwards."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(servers.mongodb_url, tz_aware=True)
    name = f"compat_{secrets.token_hex(4)}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()
