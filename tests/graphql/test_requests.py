"""A request that is not a GraphQL request gets HTTP 400 with a GraphQL-shaped error, never a 500
or plain text; variable values JSON cannot carry get the typed error of any variable that cannot
be coerced, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.factories import Api, Caller, world

JSON = "application/json"
CREATE_APP = """mutation($n: String!) { createApp(input: {name: $n}) {
  __typename ... on AppSuccess { app { name } } } }"""
CREATE_APP_INPUT = """mutation($i: CreateAppInput!) { createApp(input: $i) { __typename } }"""
CREATE_MODEL = """mutation($i: CreateModelInput!) { createModel(input: $i) { __typename } }"""
FILTERED = """query($a: ID!, $min: Float) { annotations(appId: $a, filter: {minConfidence: $min}) {
  nodes { id } } }"""


def _nested(depth: int) -> bytes:
    return b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * depth + b"]" * depth + b"}}"


BAD_BODIES = [
    pytest.param(b'"hello"', JSON, id="a JSON string"),
    pytest.param(b"42", JSON, id="a JSON number"),
    pytest.param(b'{"query": "{ __typename }"}\xff', JSON, id="a byte 0xff"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, JSON, id="JSON nested 10k deep"),
    pytest.param(_nested(10_000), JSON, id="variables nested 10k deep"),
    pytest.param(b"query { __typename }", JSON, id="not JSON"),
    pytest.param(b"", JSON, id="empty"),
    pytest.param(b"null", JSON, id="JSON null"),
    pytest.param(b'{"query": "{ __typename }"}', "text/plain", id="wrong content type"),
    pytest.param(b'{"query": "{ __typename }"}', None, id="no content type"),
    pytest.param(
        b'{"query": "{ __typename }", "operationName": "\\ud800"}', JSON, id="a surrogate operation name"
    ),
    pytest.param(b"--x\r\ngarbage", "multipart/form-data; boundary=x", id="broken multipart"),
]


def _assert_bad_request(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert set(body) == {"errors"}  # nothing was executed: no `data` entry
    (error,) = body["errors"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}


@pytest.mark.parametrize(("body", "content_type"), BAD_BODIES)
async def test_a_body_that_is_no_graphql_request_gets_400_with_a_graphql_shaped_error(
    api: Api, body: bytes, content_type: str | None
) -> None:
    caller = await api.user()
    headers = dict(caller.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    _assert_bad_request(await api.http.post("/graphql", content=body, headers=headers))


async def test_get_with_variables_that_are_not_json_gets_400(api: Api) -> None:
    caller = await api.user()
    params = {"query": "{ __typename }", "variables": "[[["}
    _assert_bad_request(await api.http.get("/graphql", params=params, headers=caller.headers))


async def _post(api: Api, caller: Caller, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    # json.dumps writes what httpx refuses to: NaN, Infinity and escaped lone surrogates
    content = json.dumps({"query": query, "variables": variables}).encode()
    response = await api.http.post(
        "/graphql", content=content, headers={**caller.headers, "Content-Type": JSON}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _variable_error(body: dict[str, Any], variable: str) -> str:
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert f"'${variable}'" in error["message"]
    message: str = error["message"]
    return message


async def test_a_lone_surrogate_in_a_string_variable_is_a_validation_error_and_nothing_is_written(
    api: Api,
) -> None:
    caller = await api.user()
    message = _variable_error(await _post(api, caller, CREATE_APP, {"n": "app \ud800"}), "n")
    assert "surrogate" in message
    message = _variable_error(await _post(api, caller, CREATE_APP_INPUT, {"i": {"name": "x\udfff"}}), "i")
    assert "'name'" in message
    assert (await api.gql(caller, "{ apps { nodes { id } } }"))["apps"]["nodes"] == []


async def test_a_surrogate_pair_is_one_character_and_is_accepted(api: Api) -> None:
    caller = await api.user()
    body = await _post(api, caller, CREATE_APP, {"n": "app \ud83d\ude00"})
    assert body["data"]["createApp"] == {"__typename": "AppSuccess", "app": {"name": "app \N{GRINNING FACE}"}}


@pytest.mark.parametrize(
    "number", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "Infinity", "-Infinity"]
)
async def test_a_non_finite_number_is_a_validation_error_wherever_a_number_goes(
    api: Api, number: float
) -> None:
    w = await world(api)
    models = "query($a: ID!) { models(appId: $a) { nodes { id } } }"
    before = await api.gql(w.owner, models, a=w.app_id)
    _variable_error(await _post(api, w.owner, FILTERED, {"a": w.app_id, "min": number}), "min")
    model = {
        "appId": w.app_id,
        "name": "null model",
        "kind": "CLASSIFIER",
        "adapter": "null",
        "config": {"delay_ms": number},
    }
    message = _variable_error(await _post(api, w.owner, CREATE_MODEL, {"i": model}), "i")
    assert "'config.delay_ms'" in message
    assert await api.gql(w.owner, models, a=w.app_id) == before


async def test_a_surrogate_in_a_json_object_key_is_a_validation_error(api: Api) -> None:
    w = await world(api)
    model = {"appId": w.app_id, "name": "m", "kind": "CLASSIFIER", "adapter": "null", "config": {"\udc00": 1}}
    message = _variable_error(await _post(api, w.owner, CREATE_MODEL, {"i": model}), "i")
    assert "'config'" in message and "surrogate" in message


@pytest.mark.parametrize("accept", [JSON, "multipart/mixed", "text/event-stream"])
async def test_a_subscription_over_http_gets_a_typed_error_naming_the_websocket(
    api: Api, accept: str
) -> None:
    caller = await api.user()
    query = 'subscription { labelingTaskProgress(taskId: "nope") { status } }'
    response = await api.http.post(
        "/graphql",
        json={"query": query},
        headers={**caller.headers, "Accept": accept},
    )
    _assert_bad_request(response)
    assert "WebSocket" in response.json()["errors"][0]["message"]


async def test_a_query_document_that_also_holds_a_subscription_still_runs_its_query(api: Api) -> None:
    caller = await api.user()
    query = 'subscription S { labelingTaskProgress(taskId: "x") { status } } query Q { __typename }'
    response = await api.http.post(
        "/graphql", json={"query": query, "operationName": "Q"}, headers=caller.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


async def _chunks(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for at in range(0, len(body), size):
        yield body[at : at + size]


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
async def test_a_body_over_the_request_limit_gets_413_however_it_is_sent(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    caller = await api.user()
    monkeypatch.setattr(settings, "max_request_bytes", 5_000)
    body = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * 10_000}}).encode()
    headers = {**caller.headers, "Content-Type": JSON}
    content: bytes | AsyncIterator[bytes] = _chunks(body) if chunked else body
    response = await api.http.post("/graphql", content=content, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json() == {
        "errors": [
            {"message": "request body larger than 5000 bytes", "extensions": {"code": "PAYLOAD_TOO_LARGE"}}
        ]
    }
    small = json.dumps({"query": "{ __typename }"}).encode()
    response = await api.http.post("/graphql", content=_chunks(small, 5), headers=headers)
    assert response.json() == {"data": {"__typename": "Query"}}
