"""The arq job queue: one place that knows queue names and Redis settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from arq import create_pool as arq_create_pool
from arq.connections import RedisSettings

QUEUE_NAME = "labelstream:queue"


def redis_settings(url: str) -> RedisSettings:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must start with redis:// or rediss://, got {url!r}")
    return RedisSettings(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        database=int((parsed.path or "/0").lstrip("/") or 0),
        password=parsed.password,
        username=parsed.username,
        ssl=parsed.scheme == "rediss",
    )


async def create_pool(url: str) -> Any:
    return await arq_create_pool(redis_settings(url), default_queue_name=QUEUE_NAME)
