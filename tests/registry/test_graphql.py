"""Model registry and workflows over HTTP."""

from __future__ import annotations

from typing import Any

from tests.factories import Api, world
from tests.registry.factories import (
    MODEL_FIELDS,
    WORKFLOW_FIELDS,
    concepts,
    create_model,
    create_workflow,
    dataset,
    model,
    task,
    workflow,
)

UPDATE_MODEL = "mutation($i: UpdateModelInput!) { updateModel(input: $i) { " + MODEL_FIELDS + " } }"
DELETE_MODEL = "mutation($id: ID!) { deleteModel(id: $id) { __typename ... on Error { code field } } }"
UPDATE_WORKFLOW = (
    "mutation($i: UpdateWorkflowInput!) { updateWorkflow(input: $i) { " + WORKFLOW_FIELDS + " } }"
)
DELETE_WORKFLOW = "mutation($id: ID!) { deleteWorkflow(id: $id) { __typename ... on Error { code field } } }"
MODELS = """query($a: ID!, $f: Int, $after: String, $b: Boolean = false) { models(appId: $a, first: $f, after: $after, builtin: $b) {
  nodes { id name } pageInfo { hasNextPage endCursor } } }"""
MODEL = """query($id: ID!, $f: Int, $after: String) { model(id: $id) { id name
  concepts(first: $f, after: $after) { nodes { id name } pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
WORKFLOWS = "query($a: ID!) { workflows(appId: $a) { nodes { id name modelIds models { id name } } } }"
WORKFLOW = "query($id: ID!) { workflow(id: $id) { id models { id } } }"


def code(result: dict[str, Any]) -> tuple[str, str | None]:
    return result["code"], result["field"]


async def test_create_model_stores_it_with_its_concepts(api: Api) -> None:
    w = await world(api)
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    made = await create_model(
        api,
        admin,
        w.app_id,
        name=" Topics ",
        kind="TEXT_CLASSIFIER",
        adapter="text-topic-classifier",
        config={"temperature": 0.2, "concepts": ["a"]},
        concepts=concepts("Sports", "Finance"),
        zeroShot=True,
    )
    assert made["__typename"] == "ModelSuccess", made
    m = made["model"]
    assert (m["name"], m["kind"], m["adapter"], m["zeroShot"]) == (
        "Topics",
        "TEXT_CLASSIFIER",
        "text-topic-classifier",
        True,
    )
    assert m["config"] == {"temperature": 0.2, "concepts": ["a"]}
    assert m["conceptsCount"] == 2
    assert m["concepts"]["nodes"] == [
        {"id": "m-sports", "name": "Sports"},
        {"id": "m-finance", "name": "Finance"},
    ]
    # defaults: no config, no concepts, not zero-shot
    bare = await create_model(api, w.owner, w.app_id)
    assert bare["model"]["config"] == {} and bare["model"]["zeroShot"] is False


async def test_create_model_errors(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    assert code(await create_model(api, w.owner, w.app_id, name=" ")) == ("EMPTY", "name")
    assert code(await create_model(api, w.owner, w.app_id, name="x" * 201)) == (
        "TOO_LONG",
        "name",
    )
    assert code(await create_model(api, w.owner, w.app_id, adapter="")) == ("EMPTY", "adapter")
    dup = [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]
    assert code(await create_model(api, w.owner, w.app_id, concepts=dup)) == (
        "DUPLICATE",
        "concepts.1.id",
    )
    unnamed = [{"id": "a", "name": "A"}, {"id": "b", "name": " "}]
    assert code(await create_model(api, w.owner, w.app_id, concepts=unnamed)) == (
        "EMPTY",
        "concepts.1.name",
    )
    assert code(await create_model(api, w.owner, w.app_id, config=[1, 2])) == ("INVALID", "config")
    assert code(await create_model(api, w.owner, w.app_id, config={"$where": 1})) == (
        "INVALID",
        "config",
    )
    for member in (labeler, reviewer):
        assert code(await create_model(api, member, w.app_id)) == ("PERMISSION_DENIED", "appId")
    assert code(await create_model(api, w.owner, w.other_app_id)) == ("NOT_FOUND", "appId")
    assert code(await create_model(api, w.owner, "0" * 32)) == ("NOT_FOUND", "appId")
    errors = await api.gql_errors(
        w.owner,
        'mutation { createModel(input: {appId: "x", name: "m", kind: ROBOT, adapter: "a"}) { __typename } }',
    )
    assert "ROBOT" in errors[0]["message"]


async def test_update_model_changes_given_fields_only(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    model_id = await model(api, w.owner, w.app_id, ("Cat",), config={"delay_ms": 1})
    done = (await api.gql(w.owner, UPDATE_MODEL, i={"id": model_id, "name": "Renamed"}))["updateModel"]
    assert done["model"]["name"] == "Renamed"
    assert done["model"]["config"] == {"delay_ms": 1} and done["model"]["conceptsCount"] == 1
    changed = await api.gql(
        w.owner,
        UPDATE_MODEL,
        i={
            "id": model_id,
            "concepts": concepts("Dog", "Bird"),
            "adapter": "general-image-classifier",
            "config": {"top_k": 2},
        },
    )
    m = changed["updateModel"]["model"]
    assert [c["name"] for c in m["concepts"]["nodes"]] == ["Dog", "Bird"]
    assert m["adapter"] == "general-image-classifier" and m["config"] == {"top_k": 2}
    assert m["zeroShot"] is False and m["name"] == "Renamed"

    def upd(**fields: Any) -> dict[str, Any]:
        return {"id": model_id} | fields

    assert code((await api.gql(w.owner, UPDATE_MODEL, i=upd(name="")))["updateModel"]) == (
        "EMPTY",
        "name",
    )
    dup = [{"id": "a", "name": "A"}, {"id": "a", "name": "A"}]
    assert code((await api.gql(w.owner, UPDATE_MODEL, i=upd(concepts=dup)))["updateModel"]) == (
        "DUPLICATE",
        "concepts.1.id",
    )
    assert code((await api.gql(labeler, UPDATE_MODEL, i=upd(name="x")))["updateModel"]) == (
        "PERMISSION_DENIED",
        "id",
    )
    assert code((await api.gql(w.stranger, UPDATE_MODEL, i=upd(name="x")))["updateModel"]) == (
        "NOT_FOUND",
        "id",
    )
    unknown = {"id": "f" * 32, "name": "x"}
    assert code((await api.gql(w.owner, UPDATE_MODEL, i=unknown))["updateModel"]) == (
        "NOT_FOUND",
        "id",
    )


async def test_update_model_refuses_to_break_a_task_that_uses_it(api: Api) -> None:
    w = await world(api)
    cat = await api.concept(w.owner, w.app_id, "cat")
    ds = await dataset(w.app_id)
    model_id = await model(api, w.owner, w.app_id, ("Cat", "Dog"))
    flow_only = await model(api, w.owner, w.app_id, ("cat",))
    flow = await workflow(api, w.owner, w.app_id, [flow_only])
    await task(api, w.owner, appId=w.app_id, datasetId=ds, modelId=model_id, conceptIds=[cat])
    await task(api, w.owner, appId=w.app_id, datasetId=ds, workflowId=flow, conceptIds=[cat])
    # dropping Dog is fine: the task only needs cat
    ok = await api.gql(w.owner, UPDATE_MODEL, i={"id": model_id, "concepts": concepts("Cat")})
    assert ok["updateModel"]["__typename"] == "ModelSuccess"
    broken = await api.gql(w.owner, UPDATE_MODEL, i={"id": model_id, "concepts": concepts("Dog")})
    assert code(broken["updateModel"]) == ("IN_USE", "concepts")
    # the same through a workflow
    broken = await api.gql(w.owner, UPDATE_MODEL, i={"id": flow_only, "concepts": []})
    assert code(broken["updateModel"]) == ("IN_USE", "concepts")
    # becoming zero-shot keeps every concept produced
    ok = await api.gql(w.owner, UPDATE_MODEL, i={"id": flow_only, "concepts": [], "zeroShot": True})
    assert ok["updateModel"]["__typename"] == "ModelSuccess"
    assert code(
        (await api.gql(w.owner, UPDATE_MODEL, i={"id": flow_only, "zeroShot": False}))["updateModel"]
    ) == ("IN_USE", "concepts")
    still = await api.gql(w.owner, MODEL, id=model_id)
    assert [c["name"] for c in still["model"]["concepts"]["nodes"]] == ["Cat"]


async def test_delete_model_unless_in_use(api: Api) -> None:
    w = await world(api)
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    cat = await api.concept(w.owner, w.app_id, "cat")
    in_flow = await model(api, w.owner, w.app_id, ("cat",))
    in_task = await model(api, w.owner, w.app_id, ("cat",))
    free = await model(api, w.owner, w.app_id)
    await workflow(api, w.owner, w.app_id, [in_flow])
    ds = await dataset(w.app_id)
    await task(api, w.owner, appId=w.app_id, datasetId=ds, modelId=in_task, conceptIds=[cat])

    async def delete(caller: Any, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = (await api.gql(caller, DELETE_MODEL, id=ident))["deleteModel"]
        return result

    assert code(await delete(w.owner, in_flow)) == ("IN_USE", "id")
    assert code(await delete(w.owner, in_task)) == ("IN_USE", "id")
    assert code(await delete(labeler, free)) == ("PERMISSION_DENIED", "id")
    assert code(await delete(w.stranger, free)) == ("NOT_FOUND", "id")
    assert code(await delete(w.owner, "nope")) == ("NOT_FOUND", "id")
    assert (await delete(admin, free))["__typename"] == "DeleteSuccess"
    assert code(await delete(admin, free)) == ("NOT_FOUND", "id")
    assert (await api.gql(w.owner, MODEL, id=free))["model"] is None


async def test_model_concepts_are_a_capped_paginated_list(api: Api) -> None:
    w = await world(api)
    names = tuple(f"c{i}" for i in range(5))
    model_id = await model(api, w.owner, w.app_id, names)
    first = (await api.gql(w.owner, MODEL, id=model_id, f=2))["model"]["concepts"]
    assert [c["name"] for c in first["nodes"]] == ["c0", "c1"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    rest = (await api.gql(w.owner, MODEL, id=model_id, f=10, after=first["pageInfo"]["endCursor"]))["model"][
        "concepts"
    ]
    assert [c["name"] for c in rest["nodes"]] == ["c2", "c3", "c4"]
    assert rest["pageInfo"]["hasNextPage"] is False and rest["pageInfo"]["hasPreviousPage"] is True
    errors = await api.gql_errors(w.owner, MODEL, id=model_id, f=51)
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["field"]) == (
        "OUT_OF_RANGE",
        "first",
    )
    from app.core.pagination import encode_cursor

    errors = await api.gql_errors(w.owner, MODEL, id=model_id, after=encode_cursor("m-nope"))
    assert errors[0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_models_query_pages_and_hides_other_apps(api: Api) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    ids = [await model(api, w.owner, w.app_id, name=f"m{i}") for i in range(3)]
    await model(api, w.stranger, w.other_app_id)
    page = (await api.gql(reviewer, MODELS, a=w.app_id, f=2))["models"]
    assert [n["id"] for n in page["nodes"]] == ids[:2] and page["pageInfo"]["hasNextPage"]
    page = (await api.gql(reviewer, MODELS, a=w.app_id, f=2, after=page["pageInfo"]["endCursor"]))["models"]
    assert [n["id"] for n in page["nodes"]] == ids[2:]
    errors = await api.gql_errors(w.stranger, MODELS, a=w.app_id)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    errors = await api.gql_errors(w.owner, MODELS, a=w.app_id, f=51)
    assert errors[0]["extensions"]["code"] == "OUT_OF_RANGE"
    assert (await api.gql(w.stranger, MODEL, id=ids[0]))["model"] is None


async def test_create_workflow_keeps_model_order(api: Api) -> None:
    w = await world(api)
    a = await model(api, w.owner, w.app_id, name="a")
    b = await model(api, w.owner, w.app_id, name="b")
    made = await create_workflow(api, w.owner, w.app_id, [b, a], name=" Detect then classify ")
    assert made["__typename"] == "WorkflowSuccess", made
    assert made["workflow"]["name"] == "Detect then classify"
    assert made["workflow"]["modelIds"] == [b, a]
    assert [m["id"] for m in made["workflow"]["models"]] == [b, a]
    listed = (await api.gql(w.owner, WORKFLOWS, a=w.app_id))["workflows"]["nodes"]
    assert [n["modelIds"] for n in listed] == [[b, a]]
    assert [m["name"] for m in listed[0]["models"]] == ["b", "a"]


async def test_create_workflow_errors(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    mine = await model(api, w.owner, w.app_id)
    theirs = await model(api, w.stranger, w.other_app_id)
    assert code(await create_workflow(api, w.owner, w.app_id, [])) == ("EMPTY", "modelIds")
    assert code(await create_workflow(api, w.owner, w.app_id, [mine, "f" * 32])) == (
        "NOT_FOUND",
        "modelIds.1",
    )
    assert code(await create_workflow(api, w.owner, w.app_id, [theirs])) == (
        "NOT_FOUND",
        "modelIds.0",
    )
    assert code(await create_workflow(api, w.owner, w.app_id, [mine, mine])) == (
        "DUPLICATE",
        "modelIds.1",
    )
    assert code(await create_workflow(api, w.owner, w.app_id, [mine] * 21)) == (
        "TOO_MANY",
        "modelIds",
    )
    assert code(await create_workflow(api, w.owner, w.app_id, [mine], name="")) == (
        "EMPTY",
        "name",
    )
    assert code(await create_workflow(api, labeler, w.app_id, [mine])) == (
        "PERMISSION_DENIED",
        "appId",
    )
    assert code(await create_workflow(api, w.owner, w.other_app_id, [theirs])) == (
        "NOT_FOUND",
        "appId",
    )


async def test_update_workflow(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    cat = await api.concept(w.owner, w.app_id, "cat")
    with_cat = await model(api, w.owner, w.app_id, ("Cat",))
    without = await model(api, w.owner, w.app_id, ("Dog",))
    theirs = await model(api, w.stranger, w.other_app_id)
    flow = await workflow(api, w.owner, w.app_id, [with_cat])

    async def update(caller: Any, **fields: Any) -> dict[str, Any]:
        i = {"id": flow} | fields
        result: dict[str, Any] = (await api.gql(caller, UPDATE_WORKFLOW, i=i))["updateWorkflow"]
        return result

    done = await update(w.owner, name="New", modelIds=[without, with_cat])
    assert done["workflow"]["name"] == "New" and done["workflow"]["modelIds"] == [without, with_cat]
    assert code(await update(w.owner, modelIds=[theirs])) == ("NOT_FOUND", "modelIds.0")
    assert code(await update(w.owner, modelIds=[])) == ("EMPTY", "modelIds")
    assert code(await update(labeler, name="x")) == ("PERMISSION_DENIED", "id")
    assert code(await update(w.stranger, name="x")) == ("NOT_FOUND", "id")
    ds = await dataset(w.app_id)
    await task(api, w.owner, appId=w.app_id, datasetId=ds, workflowId=flow, conceptIds=[cat])
    assert code(await update(w.owner, modelIds=[without])) == ("IN_USE", "modelIds")
    assert (await update(w.owner, modelIds=[with_cat]))["__typename"] == "WorkflowSuccess"
    wf = (await api.gql(w.owner, WORKFLOW, id=flow))["workflow"]
    assert [m["id"] for m in wf["models"]] == [with_cat]


async def test_delete_workflow_unless_a_task_uses_it(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    cat = await api.concept(w.owner, w.app_id, "cat")
    m = await model(api, w.owner, w.app_id, ("cat",))
    used = await workflow(api, w.owner, w.app_id, [m])
    free = await workflow(api, w.owner, w.app_id, [m])
    ds = await dataset(w.app_id)
    await task(api, w.owner, appId=w.app_id, datasetId=ds, workflowId=used, conceptIds=[cat])

    async def delete(caller: Any, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = (await api.gql(caller, DELETE_WORKFLOW, id=ident))["deleteWorkflow"]
        return result

    assert code(await delete(w.owner, used)) == ("IN_USE", "id")
    assert code(await delete(labeler, free)) == ("PERMISSION_DENIED", "id")
    assert code(await delete(w.stranger, free)) == ("NOT_FOUND", "id")
    assert code(await delete(w.owner, "x" * 32)) == ("NOT_FOUND", "id")
    assert (await delete(w.owner, free))["__typename"] == "DeleteSuccess"
    assert (await api.gql(w.owner, WORKFLOW, id=free))["workflow"] is None
    assert (await api.gql(w.stranger, WORKFLOW, id=used))["workflow"] is None
    errors = await api.gql_errors(w.stranger, WORKFLOWS, a=w.app_id)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_every_new_app_has_the_builtin_models(api: Api) -> None:
    w = await world(api)
    data = await api.gql(w.owner, MODELS, a=w.app_id, f=50, b=True)
    names = sorted(n["name"] for n in data["models"]["nodes"])
    assert names == [
        "general-image-classifier",
        "general-object-detector",
        "text-region-detector",
        "text-sentiment",
        "text-topic-classifier",
    ]
    assert (await api.gql(w.owner, MODELS, a=w.app_id, f=50))["models"]["nodes"] == []
