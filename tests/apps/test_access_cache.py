"""The cache of verified keys and memberships: no reads on a hit, and every change of access
takes effect at once in the process that made it and within a second in every other one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.access import AccessCache
from tests.factories import Api, Caller, world
from tests.graphql.conftest import api_server
from tests.live.helpers import ApiProcess

__all__ = ["api_server"]  # the session's second API process (tests/graphql/conftest.py)

ME = "{ me { user { email } } }"
APP = "query($id: ID!) { app(id: $id) { id } }"
KEYS = "{ me { apiKeys { nodes { id } } } }"
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { __typename } }"
REMOVE = (
    """mutation($a: ID!, $u: ID!) { removeCollaborator(input: {appId: $a, userId: $u}) { __typename } }"""
)
ROLES = """mutation($a: ID!, $u: ID!, $r: [Role!]!) {
  updateCollaborator(input: {appId: $a, userId: $u, roles: $r}) { __typename } }"""


def _cache(app: Starlette) -> AccessCache:
    cache = app.state.runtime.auth.cache
    assert isinstance(cache, AccessCache)
    return cache


@pytest.fixture
def other_process(api_server: ApiProcess) -> ApiProcess:
    """A second API process (uvicorn) on the same MongoDB and Redis: its own cache and hub."""
    return api_server


@contextlib.asynccontextmanager
async def other_api_process(server: ApiProcess) -> AsyncIterator[tuple[Api, None]]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        yield Api(client), None


async def _body(api: Api, caller: Caller, query: str, **variables: Any) -> dict[str, Any]:
    body: dict[str, Any] = (await api.raw(query, variables, key=caller.key)).json()
    return body


async def _within_a_second(api: Api, caller: Caller, query: str, done: Any, **variables: Any) -> None:
    """``done(body)`` holds for the query's answer within a second (polled every 20 ms)."""
    body: Any = None
    for _ in range(50):
        body = await _body(api, caller, query, **variables)
        if done(body):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"still answered {body} after a second")


def _code(code: str) -> Any:
    return lambda body: any(e["extensions"]["code"] == code for e in body.get("errors") or [])


async def test_a_verified_key_is_served_from_the_cache(api: Api, asgi_app: Starlette) -> None:
    owner = await api.user()
    await asyncio.wait_for(asgi_app.state.runtime.live.connected.wait(), 10)
    cache = _cache(asgi_app)
    await api.gql(owner, ME)
    hits = cache.hits
    for _ in range(5):
        assert (await api.gql(owner, ME))["me"]["user"]["email"] == owner.email
    assert cache.hits >= hits + 5


async def test_an_unknown_key_is_never_cached(api: Api, asgi_app: Starlette) -> None:
    stranger = Caller(user_id="nobody", email="nobody@example.com", key="ls_not-a-key")
    for _ in range(2):
        errors = await api.gql_errors(stranger, ME)
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_revoked_key_stops_working_at_once_here_and_within_a_second_elsewhere(
    api: Api, asgi_app: Starlette, other_process: ApiProcess
) -> None:
    owner = await api.user()
    [key_id] = [k["id"] for k in (await api.gql(owner, KEYS))["me"]["apiKeys"]["nodes"]]
    async with other_api_process(other_process) as (other, _):
        # both processes have verified (and cached) the key
        await api.gql(owner, ME)
        await other.gql(owner, ME)
        await other.gql(owner, ME)
        # revoked through this process
        assert (await api.gql(owner, REVOKE, id=key_id))["revokeApiKey"][
            "__typename"
        ] == "RevokeApiKeySuccess"
        # here at once
        errors = await api.gql_errors(owner, ME)
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
        # and in the other process within a second (the access event over Redis)
        await _within_a_second(other, owner, ME, _code("UNAUTHENTICATED"))


async def test_a_removed_member_loses_the_app_within_a_second_in_every_process(
    api: Api, asgi_app: Starlette, other_process: ApiProcess
) -> None:
    w = await world(api)
    member = await api.member(w.owner, w.app_id, ["LABELER"])
    async with other_api_process(other_process) as (other, _):
        assert (await other.gql(member, APP, id=w.app_id))["app"]["id"] == w.app_id
        assert (await api.gql(member, APP, id=w.app_id))["app"]["id"] == w.app_id
        removed = await api.gql(w.owner, REMOVE, a=w.app_id, u=member.user_id)
        assert removed["removeCollaborator"]["__typename"] == "CollaboratorSuccess", removed
        assert (await _body(api, member, APP, id=w.app_id))["data"]["app"] is None
        await _within_a_second(other, member, APP, lambda body: body["data"]["app"] is None, id=w.app_id)


async def test_changed_roles_apply_within_a_second_in_every_process(
    api: Api, asgi_app: Starlette, other_process: ApiProcess
) -> None:
    w = await world(api)
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    # re-stating the owner's roles needs a manager and changes nothing
    restate = {"a": w.app_id, "u": w.owner.user_id, "r": ["OWNER"]}
    async with other_api_process(other_process) as (other, _):
        done = await other.gql(admin, ROLES, **restate)
        assert done["updateCollaborator"]["__typename"] == "CollaboratorSuccess", done
        changed = await api.gql(w.owner, ROLES, a=w.app_id, u=admin.user_id, r=["REVIEWER"])
        assert changed["updateCollaborator"]["__typename"] == "CollaboratorSuccess", changed
        denied = await api.gql(admin, ROLES, **restate)
        assert denied["updateCollaborator"]["__typename"] == "PermissionDeniedError", denied
        await _within_a_second(
            other,
            admin,
            ROLES,
            lambda body: body["data"]["updateCollaborator"]["__typename"] == "PermissionDeniedError",
            **restate,
        )


def test_the_cache_is_bypassed_while_access_events_cannot_arrive() -> None:
    heard = {"connected": False}
    cache = AccessCache(30, 10, trusted=lambda: heard["connected"])
    assert not cache.enabled
    heard["connected"] = True
    assert cache.enabled
    # a lost-events notice (None) drops everything
    cache._keys["h"] = cache._keys.get("h") or _entry()
    cache.on_access_event(None)
    assert not cache._keys


def _entry() -> Any:
    from app.access import _Entry

    return _Entry(value=object(), expires=1e18)
