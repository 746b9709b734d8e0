"""GraphQL over HTTP media types: ``application/graphql-response+json`` when the client asks
for it, with the spec's status codes; ``application/json`` keeps HTTP 200."""

from __future__ import annotations

import pytest

from app.graphql.http_spec import GRAPHQL_RESPONSE, JSON, preferred
from tests.factories import Api

GQL = "application/graphql-response+json"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        (GQL, GRAPHQL_RESPONSE),
        (f"{GQL}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GQL};q=0.5", JSON),
        (f"{GQL};q=0", JSON),
        (f"{GQL}, application/json", GRAPHQL_RESPONSE),
        ("text/html", JSON),
    ],
)
def test_the_preferred_media_type_follows_the_accept_header(accept: str | None, expected: str) -> None:
    assert preferred(accept) == expected


async def test_a_document_that_does_not_parse_is_400_without_data_under_graphql_response_json(
    api: Api,
) -> None:
    caller = await api.user()
    response = await api.raw("{", key=caller.key, headers={"Accept": GQL})
    assert response.status_code == 400
    assert response.headers["content-type"] == f"{GQL}; charset=utf-8"
    body = response.json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_validation_and_coercion_failures_are_400_under_graphql_response_json(api: Api) -> None:
    caller = await api.user()
    invalid = await api.raw("{ noSuchField }", key=caller.key, headers={"Accept": GQL})
    coercion = await api.raw(
        "query($id: ID!) { app(id: $id) { id } }", {"id": None}, key=caller.key, headers={"Accept": GQL}
    )
    for response in (invalid, coercion):
        assert response.status_code == 400, response.text
        assert "data" not in response.json()


async def test_the_same_failures_keep_200_with_data_null_under_application_json(api: Api) -> None:
    caller = await api.user()
    response = await api.raw("{ noSuchField }", key=caller.key, headers={"Accept": JSON})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.json()["data"] is None


async def test_an_executed_operation_is_200_under_graphql_response_json_even_with_field_errors(
    api: Api,
) -> None:
    caller = await api.user()
    ok = await api.raw("{ __typename }", key=caller.key, headers={"Accept": GQL})
    assert ok.status_code == 200 and ok.json() == {"data": {"__typename": "Query"}}
    assert ok.headers["content-type"].startswith(GQL)
    missing = await api.raw(
        '{ concepts(appId: "nope") { nodes { id } } }', key=caller.key, headers={"Accept": GQL}
    )
    assert missing.status_code == 200, missing.text
    body = missing.json()
    assert body["data"] is None  # a field error: executed, so 200 with data
    assert body["errors"][0]["path"] == ["concepts"]


async def test_a_request_refused_before_graphql_keeps_its_status_in_the_asked_media_type(api: Api) -> None:
    response = await api.raw("{ __typename }", headers={"Accept": GQL})  # no key
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(GQL)
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
