"""The one place live events are named, encoded and published (Redis pub/sub).

MongoDB is the system of record; an event only says "this changed, here is the new state".
A subscriber that misses one (Redis restart, slow consumer) re-reads MongoDB, so events are
fire-and-forget and publishing never fails the write that caused it.

Channels (all under ``labelstream:``):
    task:<task_id>            progress of one labeling task (status + metrics)
    app:<app_id>:tasks        any change to any task of the app (for task lists)
    review:<task_id>          review-queue changes of one task
    access                    someone's access changed: a key revoked, a membership removed or
                              its roles changed, an app deleted (``publish_access``)

The ``access`` event, published after the change is written to MongoDB::

    {"type": "access", "reason": "keyRevoked" | "memberRemoved" | "rolesChanged" | "appDeleted",
     "userId": str | null, "appId": str | null, "keyId": str | null}

    keyRevoked     keyId and the key's userId
    memberRemoved  userId and appId
    rolesChanged   userId and appId
    appDeleted     appId (every member lost it)

It says whose access to re-read, not what it now is: a reader (the live hub re-checking open
subscriptions, a cache of verified keys) re-reads MongoDB for what the event names, and treats
an unknown reason, or a reason without the ids it needs, as "re-read everything". Like every
event it can be lost, so readers also re-check on their own now and then, and after their Redis
subscription was interrupted.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger("labelstream.pubsub")

PREFIX = "labelstream:"
PATTERN = PREFIX + "*"
ACCESS_CHANNEL = PREFIX + "access"


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


class AccessReason(enum.StrEnum):
    KEY_REVOKED = "keyRevoked"
    MEMBER_REMOVED = "memberRemoved"
    ROLES_CHANGED = "rolesChanged"
    APP_DELETED = "appDeleted"


@dataclass(frozen=True, slots=True)
class AccessChange:
    """A decoded ``access`` event. Ids that are missing or not strings are None."""

    reason: str
    user_id: str | None = None
    app_id: str | None = None
    key_id: str | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> AccessChange:
        def text(name: str) -> str | None:
            value = event.get(name)
            return value if isinstance(value, str) and value else None

        return cls(
            reason=text("reason") or "", user_id=text("userId"), app_id=text("appId"), key_id=text("keyId")
        )

    @property
    def known(self) -> bool:
        """A reason this version understands, with the ids it needs (else: re-read everything)."""
        if self.reason == AccessReason.KEY_REVOKED:
            return self.key_id is not None
        if self.reason in (AccessReason.MEMBER_REMOVED, AccessReason.ROLES_CHANGED):
            return self.user_id is not None
        if self.reason == AccessReason.APP_DELETED:
            return self.app_id is not None
        return False


async def publish_access(
    redis: Any,
    reason: AccessReason,
    *,
    user_id: str | None = None,
    app_id: str | None = None,
    key_id: str | None = None,
) -> None:
    """Someone's access changed; call it after the change is written to MongoDB."""
    event = {"type": "access", "reason": reason.value, "userId": user_id, "appId": app_id, "keyId": key_id}
    await publish(redis, ACCESS_CHANNEL, event)
