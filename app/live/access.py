"""Access re-checked for live operations: a subscription ends when its caller loses access.

    revokeApiKey, removeCollaborator, updateCollaborator, deleteApp
        -> the MongoDB write, then ``pubsub.publish_access`` on ``labelstream:access``
        -> the hub of every API process -> ``AccessWatch.on_event``
        -> the guards the event names are re-checked against MongoDB

A ``Guard`` is what one WebSocket connection authenticated as (its user and API key), or one
subscription's over HTTP, with the live operations open on it (``Watch``: the app they read and
the roles that may). Invariants:

* MongoDB decides; an event only says whom to re-read. A batch of guards is re-checked in three
  reads (keys, their users, the users' memberships), whatever its size.
* A lost event never leaves access open for long: every guard is re-checked every
  ``recheck_s`` seconds, and all of them after the hub (re)subscribes to Redis.
* An operation registered while a re-check of its guard may have read too early is re-checked
  again (``Guard.generation``): a change cannot slip in between its first check and its watch.
* A key that no longer authenticates (revoked, deleted, its user gone) ends every operation of
  the guard with ``UNAUTHENTICATED`` and refuses new ones; then ``Guard.closer`` closes the
  connection once their errors are out. A lost membership or role ends only the operations on
  that app, with the error a new request would get (``NOT_FOUND``, ``PERMISSION_DENIED``), and
  the connection stays open.
* Ending an operation is ``Watch.end``: its subscriber stops being written to and its own task
  raises ``AccessLost``, which the transport sends as the protocol's error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from app import access
from app.apps.models import Membership, Role
from app.core import pubsub
from app.core.errors import DomainError, Unauthenticated

log = logging.getLogger("labelstream.live")

BATCH = 500  # guards per re-check (bounds the size of one ``$in``)


class AccessLost(GraphQLError):
    """Ends a live operation whose caller lost access: sent as the protocol's ``error`` message
    for that operation (not as a ``next`` with errors), with ``extensions.code``."""

    @classmethod
    def of(cls, exc: DomainError, path: list[str | int] | None = None) -> AccessLost:
        return cls(exc.message, path=path, extensions={"code": exc.code.value, "field": exc.field})


def access_lost(errors: Iterable[GraphQLError] | None) -> list[GraphQLError]:
    """The errors of a result that end its operation (empty for any other result)."""
    return [e for e in errors or () if isinstance(e, AccessLost)]


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may go on reading a live operation: members of ``app_id`` with one of ``roles`` (None:
    any member). ``what``, ``ident`` and ``field`` shape the ``NotFound`` of a lost membership,
    the same one the subscription would have been refused with."""

    app_id: str
    what: str
    ident: str
    field: str
    roles: frozenset[Role] | None = None

    def check(self, membership: Membership | None) -> None:
        access.check_membership(membership, self.roles, what=self.what, ident=self.ident, field=self.field)


@dataclass(eq=False, slots=True)
class Watch:
    rule: Rule
    end: Callable[[DomainError], None]  # ends the operation (must not block)


class Guard:
    """One connection's principal and the live operations open on it."""

    __slots__ = ("closer", "generation", "key_id", "revoked", "user_id", "watches")

    def __init__(
        self, user_id: str, key_id: str, closer: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.user_id = user_id
        self.key_id = key_id
        self.closer = closer  # closes the connection once its key no longer authenticates
        self.watches: set[Watch] = set()
        self.revoked: DomainError | None = None  # set once the key no longer authenticates
        self.generation = 0  # bumped whenever a re-check of this guard is asked for

    def watch(self, rule: Rule, end: Callable[[DomainError], None]) -> Watch:
        watch = Watch(rule, end)
        if self.revoked is not None:
            end(self.revoked)
        else:
            self.watches.add(watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        self.watches.discard(watch)

    def reads(self, app_id: str) -> bool:
        return any(w.rule.app_id == app_id for w in self.watches)


# the connection's guard, set by the transport in each operation's task (None over HTTP)
LIVE_GUARD: ContextVar[Guard | None] = ContextVar("labelstream_live_guard", default=None)


class AccessWatch:
    """Every guard of this process; owned by the hub (``Hub.access``), started and stopped with it."""

    def __init__(self, recheck_s: float = 10.0) -> None:
        self.recheck_s = recheck_s
        self.guards: set[Guard] = set()
        self.checks = 0  # batches re-checked (for tests)
        self._pending: set[Guard] = set()
        self._worker: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="live-access-sweep")

    async def stop(self) -> None:
        tasks = [t for t in (self._sweeper, self._worker, *self._closing) if t is not None]
        self._sweeper = self._worker = None
        self._pending.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def every(self, seconds: float) -> None:
        """Re-check every guard every ``seconds`` from now on."""
        self.recheck_s = seconds
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = asyncio.create_task(self._sweep(), name="live-access-sweep")

    async def _sweep(self) -> None:
        # A heartbeat, not a poll of anything: events are the fast way; this bounds how long
        # a lost one (a publisher that could not reach Redis) leaves access open.
        while True:
            await asyncio.sleep(self.recheck_s)
            self.recheck(self.guards)

    def stats(self) -> dict[str, int]:
        return {
            "guards": len(self.guards),
            "watches": sum(len(g.watches) for g in self.guards),
            "pending": len(self._pending),
            "checks": self.checks,
        }

    # -- guards --------------------------------------------------------------------------------

    def guard(self, user_id: str, key_id: str, closer: Callable[[], Awaitable[None]] | None = None) -> Guard:
        guard = Guard(user_id, key_id, closer)
        self.guards.add(guard)
        return guard

    def release(self, guard: Guard) -> None:
        self.guards.discard(guard)
        self._pending.discard(guard)

    # -- events --------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any] | None) -> None:
        """A ``labelstream:access`` event, or None when events may have been lost."""
        if not isinstance(event, dict):
            self.recheck(self.guards)
            return
        self.recheck(self.affected(pubsub.AccessChange.from_event(event)))

    def affected(self, change: pubsub.AccessChange) -> list[Guard]:
        """The guards whose access the change may have taken away (all of them when in doubt)."""
        if not change.known:
            return list(self.guards)
        if change.reason == pubsub.AccessReason.KEY_REVOKED:
            return [g for g in self.guards if g.key_id == change.key_id]
        if change.user_id is not None:
            app_id = change.app_id
            return [
                g
                for g in self.guards
                if g.user_id == change.user_id and g.watches and (app_id is None or g.reads(app_id))
            ]
        return [g for g in self.guards if change.app_id is not None and g.reads(change.app_id)]

    def recheck(self, guards: Iterable[Guard]) -> None:
        """Re-read these guards' access soon (batched with any other re-check asked meanwhile)."""
        for guard in guards:
            guard.generation += 1
            self._pending.add(guard)
        if self._pending and (self._worker is None or self._worker.done()):
            self._worker = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            batch: list[Guard] = []
            while self._pending and len(batch) < BATCH:
                batch.append(self._pending.pop())
            try:
                await self.check(batch)
            except Exception:  # MongoDB unreachable: the next sweep tries again
                log.warning("could not re-check live access", exc_info=True)

    async def check(self, guards: list[Guard]) -> None:
        """Re-read the keys and memberships of ``guards`` and end what they no longer allow."""
        self.checks += 1
        guards = [g for g in guards if g in self.guards and g.revoked is None]
        usable = await access.usable_keys({g.key_id for g in guards})
        members: list[Guard] = []
        for guard in guards:
            if guard.key_id not in usable:
                self.revoke(guard, Unauthenticated(access.UNUSABLE_KEY))
            elif guard.watches:
                members.append(guard)
        if not members:
            return
        memberships = await access.memberships_of({g.user_id for g in members})
        for guard in members:
            for watch in list(guard.watches):
                try:
                    watch.rule.check(memberships.get((guard.user_id, watch.rule.app_id)))
                except DomainError as exc:
                    guard.unwatch(watch)
                    watch.end(exc)

    def revoke(self, guard: Guard, error: DomainError) -> None:
        """End every operation of the guard, refuse new ones, close its connection."""
        guard.revoked = error
        watches, guard.watches = guard.watches, set()
        for watch in watches:
            watch.end(error)
        if guard.closer is not None:
            task = asyncio.ensure_future(guard.closer())
            self._closing.add(task)
            task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not close a connection whose key was revoked", exc_info=task.exception())
