"""API keys and role checks.

A key authenticates a user; what the user may do in an app comes from their membership there.
Not being a member answers exactly like an unknown id (``NotFound``), so another app's ids leak
nothing; being a member without the needed role is ``PermissionDenied``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from app.apps.models import App, Membership, Role
from app.core.errors import NotFound, PermissionDenied, Unauthenticated
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

    @property
    def user_id(self) -> str:
        return self.user.id


class Authenticator:
    """Resolves a secret to its user; records ``last_used_at`` at most once per resolution."""

    def __init__(self, last_used_resolution_s: float = 60.0) -> None:
        self._resolution = last_used_resolution_s
        self._last_touch: dict[str, float] = {}

    async def authenticate(self, header: str | None) -> Principal:
        secret = parse_authorization(header)
        key = await ApiKey.find_one({"secret_hash": hash_secret(secret)})
        if key is None or key.revoked:
            raise Unauthenticated(UNUSABLE_KEY)
        user = await User.get(key.user_id)
        if user is None:
            raise Unauthenticated("the key's user no longer exists")
        now = time.monotonic()
        if now - self._last_touch.get(key.id, -1e18) >= self._resolution:
            self._last_touch[key.id] = now
            # $currentDate keeps a real date on every engine (MONGODB.md, contract 7).
            await ApiKey.get_pymongo_collection().update_one(
                {"_id": key.id}, {"$currentDate": {"last_used_at": True}}
            )
        return Principal(user=user, key_id=key.id)


async def membership_of(principal: Principal, app_id: str) -> Membership | None:
    return await Membership.find_one({"app_id": app_id, "user_id": principal.user_id})


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
