from __future__ import annotations

from tests.factories import Api, world

CREATE = """mutation($a: ID!, $n: String!) { createConcept(input: {appId: $a, name: $n}) {
  __typename ... on ConceptSuccess { concept { id name appId } } ... on Error { code field } } }"""
UPDATE = """mutation($id: ID!, $n: String!) { updateConcept(input: {id: $id, name: $n}) {
  __typename ... on ConceptSuccess { concept { name } } ... on Error { code field } } }"""
DELETE = "mutation($id: ID!) { deleteConcept(id: $id) { __typename ... on Error { code field } } }"


async def test_create_concept_and_its_errors(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    made = (await api.gql(labeler, CREATE, a=w.app_id, n=" Cat "))["createConcept"]
    assert made["concept"]["name"] == "Cat" and made["concept"]["appId"] == w.app_id
    assert (await api.gql(w.owner, CREATE, a=w.app_id, n="cAT"))["createConcept"] == {
        "__typename": "ConflictError",
        "code": "DUPLICATE",
        "field": "name",
    }
    assert (await api.gql(w.owner, CREATE, a=w.app_id, n=""))["createConcept"]["code"] == "EMPTY"
    assert (await api.gql(w.owner, CREATE, a=w.app_id, n="x" * 500))["createConcept"]["code"] == "TOO_LONG"
    assert (await api.gql(reviewer, CREATE, a=w.app_id, n="dog"))["createConcept"][
        "code"
    ] == "PERMISSION_DENIED"
    assert (await api.gql(w.owner, CREATE, a=w.other_app_id, n="dog"))["createConcept"]["code"] == "NOT_FOUND"
    # the same name in another app is fine
    assert (await api.gql(w.stranger, CREATE, a=w.other_app_id, n="cat"))["createConcept"][
        "__typename"
    ] == "ConceptSuccess"


async def test_update_and_delete_concept(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    cat = await api.concept(w.owner, w.app_id, "cat")
    await api.concept(w.owner, w.app_id, "dog")
    assert (await api.gql(w.owner, UPDATE, id=cat, n="kitten"))["updateConcept"]["concept"][
        "name"
    ] == "kitten"
    assert (await api.gql(w.owner, UPDATE, id=cat, n="DOG"))["updateConcept"]["code"] == "DUPLICATE"
    assert (await api.gql(labeler, UPDATE, id=cat, n="x"))["updateConcept"]["code"] == "PERMISSION_DENIED"
    assert (await api.gql(w.stranger, UPDATE, id=cat, n="x"))["updateConcept"] == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "field": "id",
    }
    assert (await api.gql(labeler, DELETE, id=cat))["deleteConcept"]["code"] == "PERMISSION_DENIED"
    assert (await api.gql(w.stranger, DELETE, id=cat))["deleteConcept"]["code"] == "NOT_FOUND"
    assert (await api.gql(w.owner, DELETE, id=cat))["deleteConcept"]["__typename"] == "DeleteSuccess"
    assert (await api.gql(w.owner, DELETE, id=cat))["deleteConcept"]["code"] == "NOT_FOUND"
    assert (await api.gql(w.owner, "query($id: ID!) { concept(id: $id) { id } }", id=cat))["concept"] is None


async def test_list_concepts_by_prefix_and_other_app(api: Api) -> None:
    w = await world(api)
    for name in ("Cat", "car", "dog"):
        await api.concept(w.owner, w.app_id, name)
    q = "query($a: ID!, $p: String) { concepts(appId: $a, namePrefix: $p) { nodes { name } } }"
    assert [n["name"] for n in (await api.gql(w.owner, q, a=w.app_id, p="CA"))["concepts"]["nodes"]] == [
        "Cat",
        "car",
    ]
    errors = await api.gql_errors(w.stranger, q, a=w.app_id)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
