"""Small factories that build data through the real API (and a few straight through services
where the API has no way to do it, e.g. a brand-new user's first key)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from app.users.service import create_api_key, get_or_create_user


@dataclass
class Caller:
    user_id: str
    email: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.key}"}


class Api:
    """GraphQL over the ASGI app, as a script or frontend would send it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def raw(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Key {key}"
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=h
        )

    async def gql(self, caller: Caller, query: str, **variables: Any) -> dict[str, Any]:
        """Run an operation; fail the test on any top-level error; return ``data``."""
        response = await self.raw(query, variables, key=caller.key)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def gql_errors(self, caller: Caller, query: str, **variables: Any) -> list[dict[str, Any]]:
        """Run an operation expected to fail at the top level; return its ``errors``."""
        response = await self.raw(query, variables, key=caller.key)
        body = response.json()
        assert body.get("errors"), body
        errors: list[dict[str, Any]] = body["errors"]
        return errors

    async def user(self, email: str | None = None) -> Caller:
        address = email or f"user-{secrets.token_hex(4)}@example.com"
        user = await get_or_create_user(address)
        _, secret = await create_api_key(user.id, "test")
        return Caller(user_id=user.id, email=address, key=secret)

    async def app(self, owner: Caller, name: str = "Test app") -> str:
        data = await self.gql(
            owner,
            "mutation($n: String!) { createApp(input: {name: $n}) { ... on AppSuccess { app { id } } } }",
            n=name,
        )
        app_id: str = data["createApp"]["app"]["id"]
        return app_id

    async def member(self, owner: Caller, app_id: str, roles: list[str]) -> Caller:
        caller = await self.user()
        data = await self.gql(
            owner,
            """mutation($a: ID!, $e: String!, $r: [Role!]!) {
                 addCollaborator(input: {appId: $a, email: $e, roles: $r}) { __typename } }""",
            a=app_id,
            e=caller.email,
            r=roles,
        )
        assert data["addCollaborator"]["__typename"] == "CollaboratorSuccess", data
        return caller

    async def concept(self, caller: Caller, app_id: str, name: str) -> str:
        data = await self.gql(
            caller,
            """mutation($a: ID!, $n: String!) { createConcept(input: {appId: $a, name: $n}) {
                 __typename ... on ConceptSuccess { concept { id } } ... on Error { code message } } }""",
            a=app_id,
            n=name,
        )
        assert data["createConcept"]["__typename"] == "ConceptSuccess", data
        concept_id: str = data["createConcept"]["concept"]["id"]
        return concept_id


@dataclass
class World:
    """An owner with an app, and a stranger with an app of their own."""

    owner: Caller
    app_id: str
    stranger: Caller
    other_app_id: str


async def world(api: Api) -> World:
    owner = await api.user()
    stranger = await api.user()
    return World(
        owner=owner,
        app_id=await api.app(owner),
        stranger=stranger,
        other_app_id=await api.app(stranger, "Other app"),
    )
