"""The one place live events are named, encoded and published (Redis pub/sub).

MongoDB is the system of record; an event only says "this changed, here is the new state".
A subscriber that misses one (Redis restart, slow consumer) re-reads MongoDB, so events are
fire-and-forget and publishing never fails the write that caused it.

Channels (all under ``labelstream:``):
    task:<task_id>            progress of one labeling task (status + metrics)
    app:<app_id>:tasks        any change to any task of the app (for task lists)
    review:<task_id>          review-queue changes of one task
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

log = logging.getLogger("labelstream.pubsub")

PREFIX = "labelstream:"
PATTERN = PREFIX + "*"


def task_channel(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def app_tasks_channel(app_id: str) -> str:
    return f"{PREFIX}app:{app_id}:tasks"


def review_channel(task_id: str) -> str:
    return f"{PREFIX}review:{task_id}"


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def decode(data: bytes | str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(data)
    return value


async def publish(redis: Any, channel: str, event: dict[str, Any]) -> None:
    if redis is None:
        return
    try:
        await redis.publish(channel, encode(event))
    except Exception:  # state is in MongoDB; a lost event is re-synced by subscribers
        log.warning("could not publish to %s", channel, exc_info=True)


async def publish_task(redis: Any, app_id: str, task_id: str, payload: dict[str, Any]) -> None:
    """A task's new status/metrics, to its own channel and to its app's task list."""
    event = {"type": "task", "taskId": task_id, "appId": app_id, **payload}
    await publish(redis, task_channel(task_id), event)
    await publish(redis, app_tasks_channel(app_id), event)


async def publish_review(redis: Any, app_id: str, task_id: str, payload: dict[str, Any]) -> None:
    event = {"type": "review", "taskId": task_id, "appId": app_id, **payload}
    await publish(redis, review_channel(task_id), event)
