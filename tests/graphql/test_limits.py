"""Documents that cost far more than their size are refused before validation, with a typed
error naming the limit, while the server keeps answering everyone else; legal documents, big
ones included, still work, and every limit comes from Settings."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from strawberry.extensions import ValidationCache

from app.graphql.limits import introspection_depth
from app.graphql.schema import Schema, build_schema
from app.settings import Settings
from tests.factories import Api, Caller
from tests.graphql import documents
from tests.live.helpers import LEGACY, TRANSPORT, ApiProcess, client

DEFAULTS = Settings()
BYSTANDER_BOUND_S = 1.0  # a generous bound on event-loop blocking, not a throughput claim

ABUSES = [
    pytest.param(
        lambda: documents.doubling(20),
        "TOO_MANY_FRAGMENT_SPREADS",
        DEFAULTS.max_fragment_spreads,
        id="2^20 spreads",
    ),
    pytest.param(
        lambda: documents.doubling(30),
        "TOO_MANY_FRAGMENT_SPREADS",
        DEFAULTS.max_fragment_spreads,
        id="2^30 spreads",
    ),
    pytest.param(
        lambda: documents.repeated_fields(6000),
        "TOO_MANY_TOKENS",
        DEFAULTS.max_query_tokens,
        id="6000 repeated fields",
    ),
    pytest.param(
        lambda: documents.repeated_fields(1000),
        "QUERY_TOO_COMPLEX",
        DEFAULTS.max_query_complexity,
        id="1000 repeated fields",
    ),
    pytest.param(
        lambda: documents.comment(30_000_000), "QUERY_TOO_LARGE", DEFAULTS.max_query_bytes, id="30 MB comment"
    ),
    pytest.param(
        lambda: documents.chain(5000),
        "QUERY_TOO_LARGE",
        DEFAULTS.max_query_bytes,
        id="5000 chained fragments",
    ),
    pytest.param(
        lambda: documents.deep_introspection(40),
        "QUERY_TOO_DEEP",
        introspection_depth(),
        id="deep introspection",
    ),
    pytest.param(
        lambda: documents.wide_introspection(60),
        "QUERY_TOO_COMPLEX",
        DEFAULTS.max_query_complexity,
        id="wide introspection",
    ),
]


async def _bystander(http: httpx.AsyncClient, caller: Caller) -> float:
    started = time.monotonic()
    try:
        response = await http.post("/graphql", json={"query": documents.BYSTANDER}, timeout=BYSTANDER_BOUND_S)
    except httpx.TimeoutException:
        pytest.fail(f"a trivial query took more than {BYSTANDER_BOUND_S} s to answer")
    assert response.json() == {"data": {"me": {"user": {"email": caller.email}}}}
    return time.monotonic() - started


@pytest.mark.parametrize(("document", "code", "limit"), ABUSES)
async def test_an_abusive_document_gets_its_typed_error_while_a_trivial_query_still_answers(
    api: Api, api_server: ApiProcess, document: Callable[[], str], code: str, limit: int
) -> None:
    caller = await api.user()
    body = {"query": document()}
    async with (
        httpx.AsyncClient(base_url=api_server.http_url, headers=caller.headers, timeout=60) as abuser,
        httpx.AsyncClient(base_url=api_server.http_url, headers=caller.headers) as bystander,
    ):
        await _bystander(bystander, caller)  # connected and warm
        abuse = asyncio.create_task(abuser.post("/graphql", json=body))
        latencies = [await _bystander(bystander, caller)]
        while not abuse.done() or len(latencies) < 3:
            latencies.append(await _bystander(bystander, caller))
        response = await abuse
    assert response.status_code == 200  # a GraphQL error, as validation errors are
    errors = response.json()["errors"]
    assert errors[0]["extensions"] == {"code": code, "limit": limit}
    assert str(limit) in errors[0]["message"]
    assert max(latencies) < BYSTANDER_BOUND_S


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
@pytest.mark.parametrize(
    ("document", "code"),
    [
        (documents.doubling(30), "TOO_MANY_FRAGMENT_SPREADS"),
        (documents.repeated_fields(6000), "TOO_MANY_TOKENS"),
        (documents.deep_introspection(40), "QUERY_TOO_DEEP"),
    ],
    ids=["2^30 spreads", "6000 repeated fields", "deep introspection"],
)
async def test_a_subscribe_message_over_a_limit_gets_the_typed_error_and_the_connection_stays(
    api: Api, api_server: ApiProcess, protocol: str, document: str, code: str
) -> None:
    caller = await api.user()
    async with client(api_server.ws_url, protocol, key=caller.key) as ws:
        await ws.subscribe("1", document)
        message = await ws.next("1", wait=5)
        assert message["type"] == "error", message
        errors = message["payload"] if protocol == TRANSPORT else [message["payload"]]
        assert errors[0]["extensions"]["code"] == code
        if protocol == TRANSPORT:  # queries may go over graphql-transport-ws too
            await ws.subscribe("2", documents.BYSTANDER)
            answer = await ws.next("2", wait=5)
            assert answer["payload"] == {"data": {"me": {"user": {"email": caller.email}}}}


async def test_big_legal_documents_work_and_are_parsed_and_validated_once(api: Api) -> None:
    caller = await api.user()
    validations = ValidationCache().cached_validate_document
    for query in (documents.full_introspection(), documents.app_page()):
        query += f"\n# {secrets.token_hex(8)}"  # a text this process has not seen yet
        before = validations.cache_info()
        first = await api.gql(caller, query, first=5)
        after = validations.cache_info()
        # validated once (off the event loop, being big), then found in the validation cache
        # by the schema's direct path, which remembers the outcome with the parsed document
        assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
        assert await api.gql(caller, query, first=5) == first
        again = validations.cache_info()
        assert (again.misses, again.hits) == (after.misses, after.hits)
    page = await api.gql(caller, documents.app_page(), first=5)
    assert page["me"]["user"]["email"] == caller.email
    introspection = await api.gql(caller, documents.full_introspection())
    assert any(t["name"] == "Query" for t in introspection["__schema"]["types"])


def _errors(result: Any) -> list[dict[str, Any]]:
    assert result.errors, result
    return [e.formatted for e in result.errors]


async def _refusal(schema: Schema, query: str) -> dict[str, Any]:
    errors = _errors(await schema.execute(query))
    extensions: dict[str, Any] = errors[0]["extensions"]
    return extensions


async def test_every_limit_comes_from_settings() -> None:
    tight = build_schema(
        Settings(
            max_query_bytes=300,
            max_query_tokens=40,
            max_fragment_spreads=2,
            max_query_depth=1,
            max_query_complexity=5,
        )
    )
    assert await _refusal(tight, "{ __typename }" + " " * 300) == {"code": "QUERY_TOO_LARGE", "limit": 300}
    assert await _refusal(tight, "{ " + "a " * 40 + "}") == {"code": "TOO_MANY_TOKENS", "limit": 40}
    spreads = "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { __typename }"
    assert await _refusal(tight, spreads) == {"code": "TOO_MANY_FRAGMENT_SPREADS", "limit": 2}
    assert await _refusal(tight, documents.BYSTANDER) == {"code": "QUERY_TOO_DEEP", "limit": 1}
    # three fields that merge cost 3^2; two cost 2^2
    complex_ = {"code": "QUERY_TOO_COMPLEX", "limit": 5}
    assert await _refusal(tight, "{ __typename __typename __typename }") == complex_
    assert (await tight.execute("{ __typename __typename }")).data == {"__typename": "Query"}


async def test_fragment_chains_and_cycles_of_any_length_are_measured_without_recursion() -> None:
    roomy = build_schema(Settings(max_query_bytes=10_000_000, max_query_tokens=10_000_000))
    for query in (documents.chain(5000), documents.chain(5000, cycle=True), documents.doubling(5000)):
        assert (await _refusal(roomy, query))["code"] == "TOO_MANY_FRAGMENT_SPREADS"
    # a short cycle passes the limits and gets graphql-core's own validation error
    errors = _errors(await roomy.execute(documents.chain(3, cycle=True)))
    assert "within itself" in errors[0]["message"]


async def test_the_depth_limit_now_covers_introspection_with_the_room_the_standard_query_needs(
    api: Api,
) -> None:
    caller = await api.user()
    room = introspection_depth()
    assert room == 14 > DEFAULTS.max_query_depth  # __schema types fields args type, nine ofType, name
    await api.gql(caller, documents.full_introspection())
    # deep_introspection(n) puts its deepest field n + 4 levels below __schema
    await api.gql(caller, documents.deep_introspection(room - 4))
    errors = await api.gql_errors(caller, documents.deep_introspection(room - 3))
    assert errors[0]["extensions"] == {"code": "QUERY_TOO_DEEP", "limit": room}
    # outside introspection the limit is max_query_depth, measured before fields are looked up
    for levels, code in (
        (DEFAULTS.max_query_depth, "GRAPHQL_VALIDATION_FAILED"),
        (DEFAULTS.max_query_depth + 1, "QUERY_TOO_DEEP"),
    ):
        errors = await api.gql_errors(caller, "{ " + "a { " * levels + "b" + " }" * levels + " }")
        assert errors[0]["extensions"]["code"] == code  # the first: no field `a`
