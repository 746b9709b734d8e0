"""Apps, collaborators, API keys and the authentication gate, over HTTP."""

from __future__ import annotations

import pytest

from tests.factories import Api, world

ME = "{ me { user { id email } apps { nodes { id name myRoles } } apiKeys { nodes { id revoked } } } }"
ADD = """mutation($a: ID!, $e: String!, $r: [Role!]!) {
  addCollaborator(input: {appId: $a, email: $e, roles: $r}) {
    __typename ... on CollaboratorSuccess { collaborator { userId roles user { email } } }
    ... on Error { code field message } } }"""
UPDATE = """mutation($a: ID!, $u: ID!, $r: [Role!]!) {
  updateCollaborator(input: {appId: $a, userId: $u, roles: $r}) {
    __typename ... on CollaboratorSuccess { collaborator { roles } } ... on Error { code field } } }"""
REMOVE = """mutation($a: ID!, $u: ID!) { removeCollaborator(input: {appId: $a, userId: $u}) {
    __typename ... on Error { code field } } }"""
UPDATE_APP = """mutation($id: ID!, $n: String) { updateApp(input: {id: $id, name: $n}) {
    __typename ... on AppSuccess { app { name } } ... on Error { code field } } }"""
DELETE_APP = "mutation($id: ID!) { deleteApp(id: $id) { __typename ... on Error { code } } }"


async def test_me_answers_with_the_key_owner(api: Api) -> None:
    w = await world(api)
    data = await api.gql(w.owner, ME)
    assert data["me"]["user"]["email"] == w.owner.email
    assert [a["id"] for a in data["me"]["apps"]["nodes"]] == [w.app_id]
    assert data["me"]["apps"]["nodes"][0]["myRoles"] == ["OWNER"]


@pytest.mark.parametrize(
    "header",
    [None, "", "Key", "Basic abc", "Key ls_not-a-real-key", "Bearer nope"],
)
async def test_requests_without_a_valid_key_are_refused_with_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await api.raw("{ me { user { id } } }", headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_bearer_scheme_is_accepted(api: Api) -> None:
    w = await world(api)
    response = await api.raw("{ me { user { email } } }", headers={"Authorization": f"Bearer {w.owner.key}"})
    assert response.json()["data"]["me"]["user"]["email"] == w.owner.email


async def test_revoked_key_stops_working_and_last_used_is_recorded(api: Api) -> None:
    w = await world(api)
    created = await api.gql(
        w.owner,
        'mutation { createApiKey(input: {description: "ci"}) { ... on CreateApiKeySuccess { secret apiKey { id prefix } } } }',
    )
    secret = created["createApiKey"]["secret"]
    key_id = created["createApiKey"]["apiKey"]["id"]
    assert secret.startswith(created["createApiKey"]["apiKey"]["prefix"])
    assert (await api.raw("{ me { user { id } } }", key=secret)).status_code == 200
    keys = await api.gql(w.owner, "{ me { apiKeys { nodes { id lastUsedAt } } } }")
    used = {k["id"]: k["lastUsedAt"] for k in keys["me"]["apiKeys"]["nodes"]}
    assert used[key_id] is not None

    revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { __typename ... on Error { code } } }"
    assert (await api.gql(w.owner, revoke, id=key_id))["revokeApiKey"]["__typename"] == "RevokeApiKeySuccess"
    assert (await api.raw("{ me { user { id } } }", key=secret)).status_code == 401
    again = await api.gql(w.owner, revoke, id=key_id)
    assert again["revokeApiKey"]["code"] == "ALREADY_REVOKED"
    # someone else's key answers like an unknown one
    other = await api.gql(w.stranger, revoke, id=key_id)
    assert other["revokeApiKey"]["code"] == "NOT_FOUND"


async def test_create_app_validates_its_name(api: Api) -> None:
    w = await world(api)
    q = "mutation($n: String!) { createApp(input: {name: $n}) { __typename ... on Error { code field } } }"
    assert (await api.gql(w.owner, q, n="  "))["createApp"] == {
        "__typename": "ValidationError",
        "code": "EMPTY",
        "field": "name",
    }
    assert (await api.gql(w.owner, q, n="x" * 201))["createApp"]["code"] == "TOO_LONG"


async def test_update_app_roles_and_other_apps(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    assert (await api.gql(w.owner, UPDATE_APP, id=w.app_id, n="Renamed"))["updateApp"]["app"][
        "name"
    ] == "Renamed"
    assert (await api.gql(labeler, UPDATE_APP, id=w.app_id, n="x"))["updateApp"][
        "code"
    ] == "PERMISSION_DENIED"
    assert (await api.gql(w.owner, UPDATE_APP, id=w.other_app_id, n="x"))["updateApp"]["code"] == "NOT_FOUND"
    assert (await api.gql(w.owner, UPDATE_APP, id="nope", n="x"))["updateApp"]["code"] == "NOT_FOUND"


async def test_delete_app_needs_owner_and_removes_its_content(api: Api) -> None:
    w = await world(api)
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    await api.concept(w.owner, w.app_id, "cat")
    assert (await api.gql(admin, DELETE_APP, id=w.app_id))["deleteApp"]["code"] == "PERMISSION_DENIED"
    assert (await api.gql(w.owner, DELETE_APP, id=w.other_app_id))["deleteApp"]["code"] == "NOT_FOUND"
    assert (await api.gql(w.owner, DELETE_APP, id=w.app_id))["deleteApp"]["__typename"] == "DeleteSuccess"
    assert (await api.gql(w.owner, "query($id: ID!) { app(id: $id) { id } }", id=w.app_id))["app"] is None
    errors = await api.gql_errors(
        w.owner, "query($a: ID!) { concepts(appId: $a) { nodes { id } } }", a=w.app_id
    )
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_collaborators_lifecycle_and_rules(api: Api) -> None:
    w = await world(api)
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    added = await api.gql(
        w.owner, ADD, a=w.app_id, e="New.Person@Example.com", r=["LABELER", "REVIEWER", "LABELER"]
    )
    collab = added["addCollaborator"]["collaborator"]
    assert collab["roles"] == ["LABELER", "REVIEWER"]
    assert collab["user"]["email"] == "new.person@example.com"
    dup = await api.gql(w.owner, ADD, a=w.app_id, e="new.person@example.com", r=["LABELER"])
    assert dup["addCollaborator"]["__typename"] == "ConflictError", dup
    assert (dup["addCollaborator"]["code"], dup["addCollaborator"]["field"]) == (
        "DUPLICATE",
        "email",
    )
    assert (await api.gql(w.owner, ADD, a=w.app_id, e="not-an-email", r=["LABELER"]))["addCollaborator"][
        "code"
    ] == "INVALID"
    assert (await api.gql(w.owner, ADD, a=w.app_id, e="a@b.co", r=[]))["addCollaborator"]["code"] == "EMPTY"
    assert (await api.gql(admin, ADD, a=w.app_id, e="o@b.co", r=["OWNER"]))["addCollaborator"][
        "code"
    ] == "PERMISSION_DENIED"
    assert (await api.gql(w.owner, ADD, a=w.other_app_id, e="o@b.co", r=["LABELER"]))["addCollaborator"][
        "code"
    ] == "NOT_FOUND"
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    assert (await api.gql(labeler, ADD, a=w.app_id, e="z@b.co", r=["LABELER"]))["addCollaborator"][
        "code"
    ] == "PERMISSION_DENIED"

    # roles change; the last owner cannot be demoted or removed
    assert (await api.gql(w.owner, UPDATE, a=w.app_id, u=labeler.user_id, r=["REVIEWER"]))[
        "updateCollaborator"
    ]["collaborator"]["roles"] == ["REVIEWER"]
    assert (await api.gql(w.owner, UPDATE, a=w.app_id, u=w.owner.user_id, r=["ADMIN"]))["updateCollaborator"][
        "code"
    ] == "LAST_OWNER"
    assert (await api.gql(admin, UPDATE, a=w.app_id, u=w.owner.user_id, r=["ADMIN"]))["updateCollaborator"][
        "code"
    ] == "PERMISSION_DENIED"
    assert (await api.gql(w.owner, UPDATE, a=w.app_id, u=w.stranger.user_id, r=["ADMIN"]))[
        "updateCollaborator"
    ]["code"] == "NOT_FOUND"
    assert (await api.gql(w.owner, REMOVE, a=w.app_id, u=w.owner.user_id))["removeCollaborator"][
        "code"
    ] == "LAST_OWNER"
    # a member may leave; then the app is gone for them
    assert (await api.gql(labeler, REMOVE, a=w.app_id, u=labeler.user_id))["removeCollaborator"][
        "__typename"
    ] == "CollaboratorSuccess"
    assert (await api.gql(labeler, "query($id: ID!) { app(id: $id) { id } }", id=w.app_id))["app"] is None
    listed = await api.gql(
        admin, "query($a: ID!) { collaborators(appId: $a) { nodes { userId roles } } }", a=w.app_id
    )
    assert len(listed["collaborators"]["nodes"]) == 3


async def test_pagination_is_capped_and_cursors_are_checked(api: Api) -> None:
    w = await world(api)
    for i in range(5):
        await api.concept(w.owner, w.app_id, f"c{i}")
    q = """query($a: ID!, $f: Int, $c: String) { concepts(appId: $a, first: $f, after: $c) {
             nodes { name } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
    page1 = (await api.gql(w.owner, q, a=w.app_id, f=2))["concepts"]
    assert [n["name"] for n in page1["nodes"]] == ["c0", "c1"]
    assert page1["pageInfo"]["hasNextPage"] is True
    page3 = (await api.gql(w.owner, q, a=w.app_id, f=2, c=page1["pageInfo"]["endCursor"]))["concepts"]
    assert [n["name"] for n in page3["nodes"]] == ["c2", "c3"]
    assert page3["pageInfo"]["hasPreviousPage"] is True
    for first, code in ((51, "OUT_OF_RANGE"), (-1, "OUT_OF_RANGE")):
        errors = await api.gql_errors(w.owner, q, a=w.app_id, f=first)
        assert errors[0]["extensions"] == {"code": code, "field": "first"}
    errors = await api.gql_errors(w.owner, q, a=w.app_id, f=2, c="%%%garbage")
    assert errors[0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_wrong_argument_types_and_deep_queries_are_graphql_errors(api: Api) -> None:
    w = await world(api)
    errors = await api.gql_errors(w.owner, 'query { concepts(appId: 5, first: "x") { nodes { id } } }')
    assert errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    response = await api.raw("{ me { user { id } }", key=w.owner.key)
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    aliases = " ".join(f"a{i}: me {{ user {{ id }} }}" for i in range(40))
    errors = await api.gql_errors(w.owner, "{ " + aliases + " }")
    assert errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_graphiql_page_is_served_to_browsers_without_a_key(api: Api) -> None:
    response = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    assert "Authorization" in response.text and "Key <paste the key" in response.text
    assert (await api.http.get("/health")).json() == {"status": "ok"}


def _mutation_names() -> list[str]:
    from app.graphql.schema import build_schema

    mutation = build_schema()._schema.mutation_type
    assert mutation is not None
    return sorted(mutation.fields)


@pytest.mark.parametrize("name", _mutation_names())
async def test_every_mutation_refuses_a_caller_without_a_valid_key(api: Api, name: str) -> None:
    query = f"mutation {{ {name} {{ __typename }} }}"
    for headers in ({}, {"Authorization": "Key ls_revoked-or-unknown"}):
        response = await api.raw(query, headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
