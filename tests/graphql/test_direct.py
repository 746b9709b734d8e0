"""The schema's direct path (``Schema.execute`` for a cached, valid query or mutation) answers
exactly what Strawberry's way answers, and is counted in the metrics the same way."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from app.graphql.schema import Schema
from tests.factories import Api, Caller

ME = "{ me { user { email } } }"
TWO = """query Who { me { user { email } } }
query Apps($first: Int) { apps(first: $first) { nodes { name } } }"""
NEEDS_INT = "query($n: Int!) { apps(first: $n) { nodes { name } } }"
APP = "query($id: ID!) { app(id: $id) { __typename } }"
CREATE = """mutation($n: String!) { createApp(input: {name: $n}) { __typename
  ... on AppSuccess { app { name } } ... on Error { code field } } }"""
UNKNOWN_FIELD = "{ me { nope } }"


def _requests(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("post", {"query": ME}),
        ("post", {"query": TWO, "operationName": "Who"}),
        ("post", {"query": TWO, "operationName": "Apps", "variables": {"first": 2}}),
        ("post", {"query": TWO, "operationName": "Nobody"}),
        ("post", {"query": TWO}),  # two operations and no name
        ("post", {"query": NEEDS_INT, "variables": {"n": "x"}}),
        ("post", {"query": NEEDS_INT, "variables": {}}),
        ("post", {"query": APP, "variables": {"id": "0" * 32}}),
        ("post", {"query": CREATE, "variables": {"n": name}}),
        ("post", {"query": CREATE, "variables": {"n": name}}),  # twice
        ("post", {"query": CREATE, "variables": {"n": ""}}),
        ("post", {"query": UNKNOWN_FIELD}),
        ("get", {"query": ME}),
        ("get", {"query": CREATE, "variables": '{"n": "by get"}'}),  # a mutation over GET: refused
    ]


def _without_request_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_request_ids(v) for k, v in value.items() if k != "requestId"}
    if isinstance(value, list):
        return [_without_request_ids(v) for v in value]
    return value


async def _answers(http: httpx.AsyncClient, caller: Caller) -> list[tuple[int, Any]]:
    headers = {"Authorization": f"Key {caller.key}"}
    out = []
    for method, body in _requests("direct"):
        if method == "get":
            response = await http.get("/graphql", params=body, headers=headers)
        else:
            response = await http.post("/graphql", json=body, headers=headers)
        text = response.text.replace(caller.email, "<caller>")
        out.append((response.status_code, _without_request_ids(json.loads(text))))
    return out


def _schema(asgi_app: Starlette) -> Schema:
    schema = asgi_app.state.schema
    assert isinstance(schema, Schema)
    return schema


async def test_the_direct_path_answers_what_strawberrys_way_answers(
    api: Api, http: httpx.AsyncClient, asgi_app: Starlette
) -> None:
    schema = _schema(asgi_app)
    assert schema.direct
    direct = await _answers(http, await api.user())
    schema.direct = False
    try:
        strawberry_way = await _answers(http, await api.user())  # the same, from nothing
    finally:
        schema.direct = True
    assert direct == strawberry_way
    assert direct[0] == (200, {"data": {"me": {"user": {"email": "<caller>"}}}})
    assert direct[3][0] == 400 and direct[3][1]["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    # several operations and no name: refused (graphql-core 3.3 alone would run the first)
    assert direct[4][1] == {
        "data": None,
        "errors": [
            {
                "message": "Must provide operation name if query contains multiple operations.",
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ],
    }
    assert direct[5][1]["errors"] and direct[6][1]["errors"]  # variables that do not coerce
    assert direct[-1][0] != 200  # no mutation over GET
    # the valid documents went the direct way: their outcome is kept with the parsed document
    assert schema.documents is not None
    entry = schema.documents.lookup(TWO)
    assert entry is not None and set(entry.lanes) >= {"Who", "Apps", "Nobody"}
    assert entry.lanes["Nobody"] is None


def _count(text: str, operation: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "labelstream_graphql_requests_total"
                and sample.labels.get("operation") == operation
            ):
                return sample.value
    return 0.0


async def test_operations_on_the_direct_path_are_counted(api: Api, http: httpx.AsyncClient) -> None:
    caller = await api.user()
    query = "query DirectCounted { me { user { email } } }"
    before = _count((await http.get("/metrics")).text, "DirectCounted")
    for _ in range(3):
        await api.gql(caller, query)
    after = _count((await http.get("/metrics")).text, "DirectCounted")
    assert after - before == 3


def test_every_schema_extension_is_one_the_direct_path_stands_in_for(asgi_app: Starlette) -> None:
    """A new extension (one that resolves fields or adds to results) must be taught to the
    direct path, or turn it off: this lists the ones it knows."""
    names = {getattr(ext, "func", ext).__name__ for ext in _schema(asgi_app).extensions}
    assert names == {"CheckedParserCache", "ValidationCache", "Limits", "OperationMetrics"}
