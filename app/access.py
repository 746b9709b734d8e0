"""API keys and role checks.

A key authenticates a user; what the user may do in an app comes from their membership there.
Not being a member answers exactly like an unknown id (``NotFound``), so another app's ids leak
nothing; being a member without the needed role is ``PermissionDenied``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.apps.models import App, Membership, Role
from app.core.errors import NotFound, PermissionDenied, Unauthenticated
from app.core.pubsub import AccessChange, AccessReason
from app.users.models import ApiKey, User

D = TypeVar("D", bound=Any)

KEY_PREFIX = "ls_"
MANAGERS = (Role.OWNER, Role.ADMIN)
CONTRIBUTORS = (Role.OWNER, Role.ADMIN, Role.LABELER)
REVIEWERS = (Role.OWNER, Role.ADMIN, Role.REVIEWER)
UNUSABLE_KEY = "unknown or revoked API key"


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_secret(secret: str) -> str:
    # Secrets carry 240 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_authorization(header: str | None) -> str:
    if not header:
        raise Unauthenticated("missing Authorization header; send 'Authorization: Key <secret>'")
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() not in ("key", "bearer") or not secret.strip():
        raise Unauthenticated("malformed Authorization header; expected 'Key <secret>'")
    return secret.strip()


@dataclass(frozen=True)
class Principal:
    user: User
    key_id: str
    # the process's cache of verified keys and memberships (None: read MongoDB every time)
    cache: AccessCache | None = field(default=None, compare=False, repr=False)

    @property
    def user_id(self) -> str:
        return self.user.id


@dataclass
class _Entry:
    value: Any
    expires: float


class AccessCache:
    """Verified keys (by the secret's SHA-256) and memberships, for a short while.

    Bounded (LRU) and short-lived (``ttl_s``); entries are dropped at once when an ``access``
    event (``app.core.pubsub.publish_access``: key revoked, member removed, roles changed, app
    deleted) reaches this process, and the whole cache when events may have been lost (Redis
    reconnected). While ``trusted()`` is false (this process is not receiving those events) the
    cache is bypassed, so a revocation never waits for the lifetime. Only positive answers are
    kept: an unknown key or a missing membership is read again next time.
    """

    def __init__(self, ttl_s: float, size: int, trusted: Callable[[], bool] = lambda: True) -> None:
        self.ttl = ttl_s
        self.size = size
        self.trusted = trusted
        self._keys: OrderedDict[str, _Entry] = OrderedDict()  # secret hash -> Principal
        self._members: OrderedDict[tuple[str, str], _Entry] = OrderedDict()  # (user, app) -> Membership
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.size > 0 and self.trusted()

    def _get(self, table: OrderedDict[Any, _Entry], key: Any) -> Any:
        if not self.enabled:
            return None
        entry = table.get(key)
        if entry is None or entry.expires <= time.monotonic():
            if entry is not None:
                del table[key]
            self.misses += 1
            return None
        table.move_to_end(key)
        self.hits += 1
        return entry.value

    def _put(self, table: OrderedDict[Any, _Entry], key: Any, value: Any) -> None:
        if not self.enabled:
            return
        table[key] = _Entry(value, time.monotonic() + self.ttl)
        table.move_to_end(key)
        while len(table) > self.size:
            table.popitem(last=False)

    def principal(self, secret_hash: str) -> Principal | None:
        found: Principal | None = self._get(self._keys, secret_hash)
        return found

    def keep_principal(self, secret_hash: str, principal: Principal) -> None:
        self._put(self._keys, secret_hash, principal)

    def membership(self, user_id: str, app_id: str) -> Membership | None:
        found: Membership | None = self._get(self._members, (user_id, app_id))
        return found

    def keep_membership(self, membership: Membership) -> None:
        self._put(self._members, (membership.user_id, membership.app_id), membership)

    def clear(self) -> None:
        self._keys.clear()
        self._members.clear()

    def forget(
        self, *, key_id: str | None = None, user_id: str | None = None, app_id: str | None = None
    ) -> None:
        """Drop what a change may have made wrong: a key, a user's memberships (in one app or
        all), an app's memberships."""
        if key_id is not None:
            for h in [h for h, e in self._keys.items() if e.value.key_id == key_id]:
                del self._keys[h]
        if user_id is not None or app_id is not None:
            for k in [
                k
                for k in self._members
                if (user_id is None or k[0] == user_id) and (app_id is None or k[1] == app_id)
            ]:
                del self._members[k]

    def on_access_event(self, event: dict[str, Any] | None) -> None:
        """A decoded ``labelstream:access`` event, or None when events may have been lost."""
        if not isinstance(event, dict):
            self.clear()
            return
        change = AccessChange.from_event(event)
        if not change.known:
            self.clear()
        elif change.reason == AccessReason.KEY_REVOKED:
            self.forget(key_id=change.key_id)
        elif change.reason == AccessReason.APP_DELETED:
            self.forget(app_id=change.app_id)
        else:
            self.forget(user_id=change.user_id, app_id=change.app_id)


class Authenticator:
    """Resolves a secret to its user; records ``last_used_at`` at most once per resolution.

    With a cache, a key verified in the last ``ttl`` seconds costs no read at all; a miss costs
    one indexed read of the key and one of its user (by ``_id``).
    """

    def __init__(self, last_used_resolution_s: float = 60.0, cache: AccessCache | None = None) -> None:
        self._resolution = last_used_resolution_s
        self._last_touch: dict[str, float] = {}
        self.cache = cache

    async def authenticate(self, header: str | None) -> Principal:
        secret = parse_authorization(header)
        secret_hash = hash_secret(secret)
        cache = self.cache
        principal = cache.principal(secret_hash) if cache is not None else None
        if principal is None:
            key = await ApiKey.find_one({"secret_hash": secret_hash})
            if key is None or key.revoked:
                raise Unauthenticated(UNUSABLE_KEY)
            user = await User.get(key.user_id)
            if user is None:
                raise Unauthenticated("the key's user no longer exists")
            principal = Principal(user=user, key_id=key.id, cache=cache)
            if cache is not None:
                cache.keep_principal(secret_hash, principal)
        now = time.monotonic()
        if now - self._last_touch.get(principal.key_id, -1e18) >= self._resolution:
            self._last_touch[principal.key_id] = now
            # $currentDate keeps a real date on every engine (MONGODB.md, contract 7).
            await ApiKey.get_pymongo_collection().update_one(
                {"_id": principal.key_id}, {"$currentDate": {"last_used_at": True}}
            )
        return principal


def access_changed(
    principal: Principal, *, key_id: str | None = None, user_id: str | None = None, app_id: str | None = None
) -> None:
    """Forget at once, in this process, what a change made by ``principal`` may have made wrong;
    other processes learn it from the ``access`` event the service then publishes."""
    if principal.cache is not None:
        principal.cache.forget(key_id=key_id, user_id=user_id, app_id=app_id)


async def membership_of(principal: Principal, app_id: str) -> Membership | None:
    cache = principal.cache
    if cache is not None:
        cached = cache.membership(principal.user_id, app_id)
        if cached is not None:
            return cached
    membership = await Membership.find_one({"app_id": app_id, "user_id": principal.user_id})
    if cache is not None and membership is not None:
        cache.keep_membership(membership)
    return membership


def check_membership(
    membership: Membership | None,
    roles: Iterable[Role] | None,
    *,
    what: str,
    ident: str,
    field: str | None,
) -> Membership:
    """The membership when it allows one of ``roles`` (None: any member).

    No membership is ``NotFound(what, ident)``, exactly like an unknown id; a member without
    the role gets ``PermissionDenied``. Also used to re-check live subscriptions, so an open
    subscription that loses access ends with the error a new request would get.
    """
    if membership is None:
        raise NotFound(what, ident, field=field)
    if roles is not None:
        allowed = set(roles)
        if not allowed.intersection(membership.roles):
            names = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDenied(f"this needs one of the roles {names} in the app", field=field)
    return membership


async def is_manager(principal: Principal, app_id: str) -> bool:
    """An owner or admin of the app."""
    membership = await membership_of(principal, app_id)
    return membership is not None and bool(set(MANAGERS).intersection(membership.roles))


async def require_app(
    principal: Principal, app_id: str, roles: Iterable[Role] | None = None, *, field: str = "appId"
) -> tuple[App, Membership]:
    """The app and the caller's membership, or NotFound / PermissionDenied."""
    membership = await membership_of(principal, app_id)
    app = await App.get(app_id) if membership is not None else None
    if app is None:
        raise NotFound("app", app_id, field=field)
    return app, check_membership(membership, roles, what="app", ident=app_id, field=field)


async def require_member(
    principal: Principal, app_id: str, roles: Iterable[Role] | None = None
) -> Membership:
    """Like ``require_app`` for an object already loaded: the app is not looked up again."""
    membership = await membership_of(principal, app_id)
    return check_membership(membership, roles, what="app", ident=app_id, field=None)


async def get_for(
    principal: Principal,
    model: type[D],
    ident: str,
    *,
    what: str,
    roles: Iterable[Role] | None = None,
    field: str = "id",
) -> D:
    """Load an app-scoped document for the caller.

    Unknown id and "exists in an app you are not in" give the same ``NotFound``; a member
    without one of ``roles`` gets ``PermissionDenied``.
    """
    doc = await model.get(ident) if isinstance(ident, str) and ident else None
    if doc is None:
        raise NotFound(what, ident, field=field)
    membership = await membership_of(principal, doc.app_id)
    check_membership(membership, roles, what=what, ident=ident, field=field)
    return doc


# -- re-checks of many callers at once (live subscriptions) ---------------------------------------


async def usable_keys(key_ids: Collection[str]) -> set[str]:
    """The ids among ``key_ids`` that still authenticate: stored, not revoked, user still there.

    Two reads whatever the number of keys (by ``_id``), so open connections can be re-checked
    in bulk.
    """
    if not key_ids:
        return set()
    keys = await ApiKey.find({"_id": {"$in": list(key_ids)}}).to_list()
    live = [k for k in keys if not k.revoked]
    user_ids = list({k.user_id for k in live})
    users = await User.find({"_id": {"$in": user_ids}}).to_list() if user_ids else []
    present = {u.id for u in users}
    return {k.id for k in live if k.user_id in present}


async def memberships_of(user_ids: Collection[str]) -> dict[tuple[str, str], Membership]:
    """Every membership of these users, by (user id, app id): one read (indexed on user_id)."""
    if not user_ids:
        return {}
    docs = await Membership.find({"user_id": {"$in": list(user_ids)}}).to_list()
    return {(m.user_id, m.app_id): m for m in docs}
