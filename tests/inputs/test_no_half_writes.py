"""Hostile inputs get typed errors, and a refused item leaves nothing behind: no document, no
blob, no count.

Values a JSON or GraphQL parser accepts but a database or a response cannot hold reach the
inputs service in two ways: in variables (64-bit overflow, NUL in keys, deep nesting; NaN and
Infinity too, which the variables check of app/graphql/variables.py refuses first) and as
literals in the document (``1e999`` is a GraphQL float that parses to Infinity)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.inputs.models import Input as InputDoc
from app.settings import Settings
from tests.factories import Api, Caller, world
from tests.inputs.helpers import (
    ADD,
    INPUT_FIELDS,
    b64,
    blob_files,
    image_bytes,
    loose_multipart,
    post_loose_json,
)

DATASET = """mutation($a: ID!) { createDataset(input: {appId: $a, name: "d"}) {
  ... on DatasetSuccess { dataset { id } } } }"""
COUNT = "query($id: ID!) { dataset(id: $id) { inputsCount } }"
IN_DATASET = "query($a: ID!, $d: ID!) { inputs(appId: $a, datasetId: $d, first: 50) { nodes { id } } }"
RESULT = "__typename ... on Error { code field message } ... on InputSuccess { input { id } }"


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


# Each passes the JSON parser and the variables check, and none could be stored as it is.
UNSTORABLE: dict[str, Any] = {
    "integer beyond 64 bits": {"big": 2**64 - 1},
    "NUL in a key": {"a\0b": 1},
    "nested 40 deep": nested(40),
}
# Document literals that parse to non-finite floats.
NON_FINITE = {"infinity": "{score: 1e999}", "minus infinity in a list": "{scores: [1.5, -1e999]}"}


class Var(str):
    """A variable reference inside a GraphQL literal (``$name``)."""


def literal(value: Any) -> str:
    """``value`` written as a GraphQL input literal; floats out of range stay out of range."""
    if isinstance(value, Var):
        return f"${value}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) and abs(value) == float("inf"):
        return "1e999" if value > 0 else "-1e999"
    return json.dumps(value) if isinstance(value, str) else str(value)


async def dataset_of(api: Api, caller: Caller, app_id: str) -> str:
    dataset_id: str = (await api.gql(caller, DATASET, a=app_id))["createDataset"]["dataset"]["id"]
    return dataset_id


async def counted_and_held(api: Api, caller: Caller, app_id: str, dataset_id: str) -> tuple[int, int]:
    count = (await api.gql(caller, COUNT, id=dataset_id))["dataset"]["inputsCount"]
    held = len((await api.gql(caller, IN_DATASET, a=app_id, d=dataset_id))["inputs"]["nodes"])
    return count, held


def add_image_query(transport: str, metadata: str, data: bytes) -> str:
    """``addInput`` of the image ``data`` whose metadata is the literal ``metadata`` (``$m``: a
    variable); a multipart upload is the variable ``$f``."""
    declared = ["$a: ID!"] + (["$f: Upload"] if transport == "multipart" else [])
    declared += ["$m: JSON"] if metadata == "$m" else []
    source = "image: $f" if transport == "multipart" else f"imageBase64: {json.dumps(b64(data))}"
    return (
        f"mutation({', '.join(declared)}) {{ addInput(input: "
        f"{{appId: $a, {source}, metadata: {metadata}}}) {{ {RESULT} }} }}"
    )


@pytest.mark.parametrize("transport", ["multipart", "base64"])
@pytest.mark.parametrize(
    "case", [*(f"variable: {c}" for c in sorted(UNSTORABLE)), *(f"literal: {c}" for c in sorted(NON_FINITE))]
)
async def test_unstorable_metadata_is_a_typed_error_and_no_file_is_kept(
    api: Api, settings: Settings, case: str, transport: str
) -> None:
    # given an image with metadata no database can hold, in a variable or in the document
    w = await world(api)
    blobs_before = blob_files(settings.resolved_blob_dir)
    kind, name = case.split(": ", 1)
    png = image_bytes("PNG", (9, 4), "teal")
    query = add_image_query(transport, "$m" if kind == "variable" else NON_FINITE[name], png)
    variables = {"a": w.app_id} | ({"m": UNSTORABLE[name]} if kind == "variable" else {})
    # when it is added
    if transport == "multipart":
        files = {"f": ("a.png", png, "image/png")}
        data = await loose_multipart(api.http, w.owner, query, variables | {"f": None}, files)
    else:
        data = await post_loose_json(api.http, w.owner, query, variables)
    # then a typed validation error on the field, and neither a record nor a file
    result = data["addInput"]
    assert (result["__typename"], result["code"], result["field"]) == (
        "ValidationError",
        "INVALID",
        "metadata",
    )
    assert await InputDoc.count() == 0
    assert blob_files(settings.resolved_blob_dir) == blobs_before


@pytest.mark.parametrize("transport", ["multipart", "base64"])
async def test_nan_in_metadata_is_refused_without_an_internal_error_or_a_stored_file(
    api: Api, settings: Settings, transport: str
) -> None:
    w = await world(api)
    blobs_before = blob_files(settings.resolved_blob_dir)
    data = image_bytes("PNG", (9, 4), "teal")
    query = add_image_query(transport, "$m", data)
    variables: dict[str, Any] = {"a": w.app_id, "m": {"x": float("nan")}}
    if transport == "multipart":
        response = await api.http.post(
            "/graphql",
            data={
                "operations": json.dumps({"query": query, "variables": variables | {"f": None}}),
                "map": json.dumps({"0": ["variables.f"]}),
            },
            files={"0": ("a.png", data, "image/png")},
            headers=w.owner.headers,
        )
    else:
        body = json.dumps({"query": query, "variables": variables})
        headers = {**w.owner.headers, "Content-Type": "application/json"}
        response = await api.http.post("/graphql", content=body, headers=headers)
    answer = response.json()
    # refused before execution by the variables check, or by the service: typed either way
    codes = [e.get("extensions", {}).get("code") for e in answer.get("errors") or []]
    if codes:
        assert codes == ["GRAPHQL_VALIDATION_FAILED"], answer
    else:
        result = answer["data"]["addInput"]
        assert (result["code"], result["field"]) == ("INVALID", "metadata"), result
    assert await InputDoc.count() == 0
    assert blob_files(settings.resolved_blob_dir) == blobs_before


async def test_add_inputs_stores_each_valid_item_with_its_file_and_nothing_of_a_bad_one(
    api: Api, settings: Settings
) -> None:
    # given a bulk add into a dataset where three of six items cannot be stored
    w = await world(api)
    d = await dataset_of(api, w.owner, w.app_id)
    good_png, good_jpeg = image_bytes("PNG", (6, 5), "navy"), image_bytes("JPEG", (8, 8), "olive")
    inf_png, big_png = image_bytes("PNG", (7, 3), "gold"), image_bytes("PNG", (3, 7), "plum")
    items: list[dict[str, Any]] = [
        {"image": Var("f0"), "datasetIds": [d], "metadata": {"ok": 1.5}},  # 0: stored
        {"imageBase64": b64(inf_png), "datasetIds": [d], "metadata": {"score": float("inf")}},  # 1
        {"text": "infinite", "datasetIds": [d], "metadata": {"x": [float("-inf")]}},  # 2
        {"imageBase64": b64(good_jpeg), "datasetIds": [d]},  # 3: stored
        {"image": Var("f4"), "datasetIds": [d], "metadata": {"n": 2**64 - 1}},  # 4
        {"text": "fine", "datasetIds": [d]},  # 5: stored
    ]
    query = f"""mutation($a: ID!, $f0: Upload, $f4: Upload) {{ addInputs(appId: $a, inputs: {literal(items)}) {{
      __typename ... on AddInputsSuccess {{ inputs {{ {INPUT_FIELDS} }} errors {{ index field code message }} }}
      ... on Error {{ code field message }} }} }}"""
    blobs_before = blob_files(settings.resolved_blob_dir)
    # when it is sent
    data = await loose_multipart(
        api.http,
        w.owner,
        query,
        {"a": w.app_id, "f0": None, "f4": None},
        {"f0": ("a.png", good_png, "image/png"), "f4": ("b.png", big_png, "image/png")},
    )
    result = data["addInputs"]
    # then every valid item is stored with its file, and each bad one reported with nothing kept
    assert result["__typename"] == "AddInputsSuccess", result
    assert [(e["index"], e["field"], e["code"]) for e in result["errors"]] == [
        (1, "inputs.1.metadata", "INVALID"),
        (2, "inputs.2.metadata", "INVALID"),
        (4, "inputs.4.metadata", "INVALID"),
    ]
    assert [m["kind"] for m in result["inputs"]] == ["IMAGE", "IMAGE", "TEXT"]
    assert await InputDoc.count() == 3
    assert blob_files(settings.resolved_blob_dir) - blobs_before == 2
    for made, expected in zip(result["inputs"][:2], (good_png, good_jpeg), strict=True):
        served = await api.http.get(made["imageUrl"], headers=w.owner.headers)
        assert served.content == expected
    # and the dataset counts exactly what it holds
    assert await counted_and_held(api, w.owner, w.app_id, d) == (3, 3)


async def test_add_inputs_of_unstorable_items_only_stores_and_counts_nothing(
    api: Api, settings: Settings
) -> None:
    w = await world(api)
    d = await dataset_of(api, w.owner, w.app_id)
    blobs_before = blob_files(settings.resolved_blob_dir)
    values = [*UNSTORABLE.values(), {"x": float("inf")}]
    items = [
        {
            "imageBase64": b64(image_bytes("PNG", (5, 5 + i), "red")),
            "datasetIds": [d],
            "metadata": Var(f"m{i}"),
        }
        for i in range(len(values))
    ]
    items[-1]["metadata"] = values[-1]  # Infinity can only come as a literal
    names = ", ".join(f"$m{i}: JSON" for i in range(len(values) - 1))
    query = f"""mutation($a: ID!, {names}) {{ addInputs(appId: $a, inputs: {literal(items)}) {{
      ... on AddInputsSuccess {{ inputs {{ id }} errors {{ field code }} }} }} }}"""
    variables = {"a": w.app_id, **{f"m{i}": v for i, v in enumerate(values[:-1])}}
    result = (await post_loose_json(api.http, w.owner, query, variables))["addInputs"]
    assert result["inputs"] == []
    assert [(e["field"], e["code"]) for e in result["errors"]] == [
        (f"inputs.{i}.metadata", "INVALID") for i in range(len(values))
    ]
    assert await InputDoc.count() == 0
    assert blob_files(settings.resolved_blob_dir) == blobs_before
    assert await counted_and_held(api, w.owner, w.app_id, d) == (0, 0)


@pytest.mark.parametrize(
    "case", [*(f"variable: {c}" for c in sorted(UNSTORABLE)), *(f"literal: {c}" for c in sorted(NON_FINITE))]
)
async def test_update_input_refuses_unstorable_metadata_and_keeps_the_old(api: Api, case: str) -> None:
    w = await world(api)
    added = await api.gql(w.owner, ADD, input={"appId": w.app_id, "text": "t", "metadata": {"k": 1}})
    input_id = added["addInput"]["input"]["id"]
    kind, name = case.split(": ", 1)
    metadata, declared = ("$m", ", $m: JSON!") if kind == "variable" else (NON_FINITE[name], "")
    query = f"""mutation($id: ID!{declared}) {{ updateInput(input: {{id: $id, metadata: {metadata}}}) {{
      __typename ... on Error {{ code field message }} }} }}"""
    variables = {"id": input_id} | ({"m": UNSTORABLE[name]} if kind == "variable" else {})
    data = await post_loose_json(api.http, w.owner, query, variables)
    result = data["updateInput"]
    assert (result["__typename"], result["code"], result["field"]) == (
        "ValidationError",
        "INVALID",
        "metadata",
    )
    doc = await InputDoc.get(input_id)
    assert doc is not None and doc.metadata == {"k": 1}
