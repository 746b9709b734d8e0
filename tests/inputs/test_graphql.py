"""Inputs over HTTP: uploads (multipart and base64), URLs, texts, bulk adds, updates, deletes,
the image route, and the guarantee that a refused image stores nothing."""

from __future__ import annotations

import os
from typing import Any

import pytest

from app.annotations.models import Annotation
from app.inputs.models import Input as InputDoc
from app.settings import Settings
from tests.factories import Api, Caller, world
from tests.inputs.helpers import (
    ADD,
    ADD_MANY,
    add,
    b64,
    blob_files,
    claims_size,
    image_bytes,
    multipart,
    text_input,
    upload,
)

UPDATE = """mutation($id: ID!, $m: JSON!) { updateInput(input: {id: $id, metadata: $m}) {
  __typename ... on InputSuccess { input { metadata } } ... on Error { code field } } }"""
DELETE = "mutation($id: ID!) { deleteInput(id: $id) { __typename ... on Error { code field } } }"
DELETE_MANY = """mutation($ids: [ID!]!) { deleteInputs(ids: $ids) {
  __typename ... on DeleteInputsSuccess { ids } ... on Error { code field } } }"""
LIST = """query($a: ID!, $d: ID, $first: Int, $after: String) {
  inputs(appId: $a, datasetId: $d, first: $first, after: $after) {
    nodes { id } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
ONE = "query($id: ID!) { input(id: $id) { id kind } }"
DATASET = """mutation($a: ID!) { createDataset(input: {appId: $a, name: "d"}) {
  ... on DatasetSuccess { dataset { id } } } }"""
COUNT = "query($id: ID!) { dataset(id: $id) { inputsCount } }"


async def dataset(api: Api, caller: Caller, app_id: str) -> str:
    dataset_id: str = (await api.gql(caller, DATASET, a=app_id))["createDataset"]["dataset"]["id"]
    return dataset_id


async def inputs_count(api: Api, caller: Caller, dataset_id: str) -> int:
    count: int = (await api.gql(caller, COUNT, id=dataset_id))["dataset"]["inputsCount"]
    return count


# --- uploads and the image route ----------------------------------------------------------


async def test_multipart_upload_is_stored_and_served_byte_identical(api: Api) -> None:
    w = await world(api)
    data = image_bytes("PNG", (7, 5))
    result = await upload(api.http, w.owner, w.app_id, data, metadata={"source": "camera"})
    assert result["__typename"] == "InputSuccess", result
    made = result["input"]
    assert (made["kind"], made["status"], made["width"], made["height"]) == ("IMAGE", "READY", 7, 5)
    assert made["contentType"] == "image/png" and made["sizeBytes"] == len(data)
    assert made["metadata"] == {"source": "camera"} and made["url"] is None
    assert made["imageUrl"] == f"/inputs/{made['id']}/image"

    got = await api.http.get(made["imageUrl"], headers=w.owner.headers)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/png"
    stranger = await api.http.get(made["imageUrl"], headers=w.stranger.headers)
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "NOT_FOUND"
    assert (await api.http.get(made["imageUrl"])).status_code == 401
    unknown = await api.http.get("/inputs/nope/image", headers=w.owner.headers)
    assert unknown.status_code == 404


async def test_content_type_comes_from_the_decoded_image_not_the_client(api: Api) -> None:
    w = await world(api)
    data = image_bytes("JPEG", (8, 8))
    result = await upload(api.http, w.owner, w.app_id, data, "x.png", "image/png")
    assert result["input"]["contentType"] == "image/jpeg"


@pytest.mark.parametrize("prefix", ["", "data:image/gif;base64,"])
async def test_base64_image_is_stored_and_served_byte_identical(api: Api, prefix: str) -> None:
    w = await world(api)
    data = image_bytes("GIF", (3, 9))
    made = (await add(api, w.owner, w.app_id, imageBase64=prefix + b64(data)))["input"]
    assert (made["width"], made["height"], made["contentType"]) == (3, 9, "image/gif")
    got = await api.http.get(made["imageUrl"], headers=w.owner.headers)
    assert got.content == data


async def test_image_url_waits_for_fetch_and_text_is_stored(api: Api) -> None:
    w = await world(api)
    url = "https://example.com/cat.jpg?size=large"
    made = (await add(api, w.owner, w.app_id, imageUrl=url))["input"]
    assert (made["kind"], made["status"], made["url"], made["imageUrl"]) == (
        "IMAGE",
        "PENDING_FETCH",
        url,
        None,
    )
    text = (await add(api, w.owner, w.app_id, text=" a cat ", metadata={"a": [1, {"b": 2}]}))["input"]
    assert (text["kind"], text["status"], text["text"], text["imageUrl"]) == (
        "TEXT",
        "READY",
        " a cat ",
        None,
    )
    assert text["metadata"] == {"a": [1, {"b": 2}]}
    route = await api.http.get(f"/inputs/{text['id']}/image", headers=w.owner.headers)
    assert route.status_code == 404


def _huge_text(settings: Settings) -> str:
    return "x" * (settings.max_text_chars + 1)


MALFORMED: dict[str, tuple[bytes, str, str]] = {
    "truncated png": (image_bytes("PNG", (64, 64), "blue")[:-30], "image/png", "INVALID_IMAGE"),
    "truncated jpeg": (image_bytes("JPEG", (64, 64))[:200], "image/jpeg", "INVALID_IMAGE"),
    "random bytes": (os.urandom(4096), "application/octet-stream", "INVALID_IMAGE"),
    "text file": (b"name,label\ncat,1\n", "text/plain", "INVALID_IMAGE"),
    "empty file": (b"", "image/png", "INVALID_IMAGE"),
    "over our pixel limit": (claims_size(image_bytes(), 9_000, 9_000), "image/png", "TOO_LARGE"),
    "pillow bomb": (claims_size(image_bytes(), 60_000, 60_000), "image/png", "TOO_LARGE"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("transport", ["multipart", "base64"])
async def test_malformed_image_is_a_typed_error_and_stores_nothing(
    api: Api, settings: Settings, case: str, transport: str
) -> None:
    w = await world(api)
    data, content_type, code = MALFORMED[case]
    blobs_before = blob_files(settings.resolved_blob_dir)
    if transport == "multipart":
        result = await upload(api.http, w.owner, w.app_id, data, "f.bin", content_type)
        field = "image"
    else:
        result = await add(api, w.owner, w.app_id, imageBase64=b64(data))
        field = "imageBase64"
    assert result["__typename"] == "ValidationError", result
    assert (result["code"], result["field"]) == (code, field)
    assert await InputDoc.count() == 0
    assert blob_files(settings.resolved_blob_dir) == blobs_before


@pytest.mark.parametrize("transport", ["multipart", "base64"])
async def test_oversized_file_is_refused_before_decoding(
    api: Api, settings: Settings, transport: str
) -> None:
    w = await world(api)
    # a valid PNG padded past the limit: only the size can make it fail
    data = image_bytes() + b"\0" * settings.max_upload_bytes
    blobs_before = blob_files(settings.resolved_blob_dir)
    if transport == "multipart":
        result = await upload(api.http, w.owner, w.app_id, data)
    else:
        result = await add(api, w.owner, w.app_id, imageBase64=b64(data))
    assert result["__typename"] == "ValidationError" and result["code"] == "TOO_LARGE", result
    assert await InputDoc.count() == 0
    assert blob_files(settings.resolved_blob_dir) == blobs_before


async def test_an_image_of_exactly_the_size_limit_is_accepted(api: Api, settings: Settings) -> None:
    w = await world(api)
    png = image_bytes()
    data = png + b"\0" * (settings.max_upload_bytes - len(png))  # trailing bytes after IEND
    result = await upload(api.http, w.owner, w.app_id, data)
    assert result["__typename"] == "InputSuccess", result
    assert result["input"]["sizeBytes"] == settings.max_upload_bytes


# --- addInput validation, roles and ids ---------------------------------------------------


async def test_add_input_validation_errors(api: Api, settings: Settings) -> None:
    w = await world(api)
    other_dataset = await dataset(api, w.stranger, w.other_app_id)
    png = b64(image_bytes())
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({}, "INVALID", "image"),
        ({"text": "a", "imageBase64": png}, "INVALID", "text"),  # the second given
        ({"imageUrl": "https://x.org/a.png", "text": "a"}, "INVALID", "text"),
        ({"imageBase64": "not base64!"}, "INVALID", "imageBase64"),
        ({"image": "just a string"}, "INVALID", "image"),
        ({"imageUrl": "ftp://example.com/a.png"}, "INVALID_URL", "imageUrl"),
        ({"imageUrl": "/relative/a.png"}, "INVALID_URL", "imageUrl"),
        ({"imageUrl": "https://user:pw@example.com/a.png"}, "INVALID_URL", "imageUrl"),
        ({"imageUrl": "https://example.com:99999/a.png"}, "INVALID_URL", "imageUrl"),
        ({"imageUrl": "https://example.com/a b.png"}, "INVALID_URL", "imageUrl"),
        ({"imageUrl": "https://example.com/" + "a" * 2048}, "TOO_LONG", "imageUrl"),
        ({"text": "   "}, "EMPTY", "text"),
        ({"text": _huge_text(settings)}, "TOO_LONG", "text"),
        ({"text": "a", "metadata": [1, 2]}, "INVALID", "metadata"),
        ({"text": "a", "metadata": {"$where": 1}}, "INVALID", "metadata"),
        ({"text": "a", "metadata": {"a.b": 1}}, "INVALID", "metadata"),
        (
            {"text": "a", "metadata": {"k": "v" * settings.max_metadata_bytes}},
            "TOO_LONG",
            "metadata",
        ),
        ({"text": "a", "datasetIds": ["nope"]}, "NOT_FOUND", "datasetIds.0"),
        ({"text": "a", "datasetIds": [other_dataset]}, "NOT_FOUND", "datasetIds.0"),
        (
            {"text": "a", "datasetIds": ["d"] * (settings.max_bulk_items + 1)},
            "TOO_MANY",
            "datasetIds",
        ),
    ]
    for fields, code, field in cases:
        result = await add(api, w.owner, w.app_id, **fields)
        assert (result["code"], result["field"]) == (code, field), (fields, result)
    assert await InputDoc.count() == 0


async def test_add_input_roles_and_other_apps(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    admin = await api.member(w.owner, w.app_id, ["ADMIN"])
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    for caller in (labeler, admin):
        assert (await add(api, caller, w.app_id, text="ok"))["__typename"] == "InputSuccess"
    denied = await upload(api.http, reviewer, w.app_id, image_bytes())
    assert (denied["code"], denied["field"]) == ("PERMISSION_DENIED", "appId")
    for app_id in (w.other_app_id, "unknown"):
        missing = await add(api, w.owner, app_id, text="x")
        assert (missing["__typename"], missing["code"], missing["field"]) == (
            "NotFoundError",
            "NOT_FOUND",
            "appId",
        )
    assert await InputDoc.count() == 2


async def test_add_input_into_datasets_counts_each_dataset_once(api: Api) -> None:
    w = await world(api)
    d1, d2 = await dataset(api, w.owner, w.app_id), await dataset(api, w.owner, w.app_id)
    made = (await add(api, w.owner, w.app_id, text="t", datasetIds=[d1, d2, d1]))["input"]
    assert made["datasetIds"] == [d1, d2]
    await upload(api.http, w.owner, w.app_id, image_bytes(), datasetIds=[d2])
    assert (await inputs_count(api, w.owner, d1), await inputs_count(api, w.owner, d2)) == (1, 2)


# --- addInputs (bulk) ---------------------------------------------------------------------


async def test_bulk_add_keeps_good_items_and_reports_bad_ones(api: Api, settings: Settings) -> None:
    w = await world(api)
    d = await dataset(api, w.owner, w.app_id)
    png, jpeg = image_bytes("PNG", (2, 2)), image_bytes("JPEG", (5, 6))
    items: list[dict[str, Any]] = [
        {"image": None, "datasetIds": [d]},  # 0: multipart upload, good
        {"text": ""},  # 1: empty text
        {"imageBase64": b64(jpeg), "metadata": {"n": 2}},  # 2: good
        {"image": None},  # 3: multipart upload of a truncated image
        {"imageUrl": "file:///etc/passwd"},  # 4: bad URL
        {"text": "fine", "datasetIds": [d, "nope"]},  # 5: unknown dataset
        {"imageUrl": "http://example.com/a.jpg", "datasetIds": [d]},  # 6: good
        {},  # 7: no source
    ]
    blobs_before = blob_files(settings.resolved_blob_dir)
    body = await multipart(
        api.http,
        w.owner,
        ADD_MANY,
        {"a": w.app_id, "items": items},
        {
            "items.0.image": ("a.png", png, "image/png"),
            "items.3.image": ("b.png", png[:-20], "image/png"),
        },
    )
    result = body["data"]["addInputs"]
    assert result["__typename"] == "AddInputsSuccess", result
    made = result["inputs"]
    assert [(m["kind"], m["status"], m["width"]) for m in made] == [
        ("IMAGE", "READY", 2),
        ("IMAGE", "READY", 5),
        ("IMAGE", "PENDING_FETCH", None),
    ]
    assert made[1]["metadata"] == {"n": 2}
    assert [(e["index"], e["field"], e["code"]) for e in result["errors"]] == [
        (1, "inputs.1.text", "EMPTY"),
        (3, "inputs.3.image", "INVALID_IMAGE"),
        (4, "inputs.4.imageUrl", "INVALID_URL"),
        (5, "inputs.5.datasetIds.1", "NOT_FOUND"),
        (7, "inputs.7.image", "INVALID"),
    ]
    assert await InputDoc.count() == 3
    assert blob_files(settings.resolved_blob_dir) - blobs_before <= 2  # png, jpeg (maybe seen)
    assert await inputs_count(api, w.owner, d) == 2
    for m in made[:2]:
        got = await api.http.get(m["imageUrl"], headers=w.owner.headers)
        assert got.content == (png if m["width"] == 2 else jpeg)


async def test_bulk_add_whole_call_errors(api: Api, settings: Settings) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    too_many = [{"text": str(i)} for i in range(settings.max_bulk_items + 1)]
    cases = [
        (w.owner, w.app_id, too_many, "ValidationError", "TOO_MANY", "inputs"),
        (w.owner, w.app_id, [], "ValidationError", "EMPTY", "inputs"),
        (
            reviewer,
            w.app_id,
            [{"text": "a"}],
            "PermissionDeniedError",
            "PERMISSION_DENIED",
            "appId",
        ),
        (w.owner, w.other_app_id, [{"text": "a"}], "NotFoundError", "NOT_FOUND", "appId"),
    ]
    for caller, app_id, items, typename, code, field in cases:
        result = (await api.gql(caller, ADD_MANY, a=app_id, items=items))["addInputs"]
        assert (result["__typename"], result["code"], result["field"]) == (typename, code, field)
    assert await InputDoc.count() == 0
    ok = (await api.gql(w.owner, ADD_MANY, a=w.app_id, items=too_many[:-1]))["addInputs"]
    assert len(ok["inputs"]) == settings.max_bulk_items and ok["errors"] == []


# --- updateInput ----------------------------------------------------------------------------


async def test_update_input_metadata(api: Api, settings: Settings) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    d = await dataset(api, w.owner, w.app_id)
    input_id = await text_input(api, w.owner, w.app_id, metadata={"old": 1}, datasetIds=[d])
    done = (await api.gql(labeler, UPDATE, id=input_id, m={"new": [1, "x"]}))["updateInput"]
    assert done == {"__typename": "InputSuccess", "input": {"metadata": {"new": [1, "x"]}}}
    errors: list[tuple[Caller, Any, str, str]] = [
        (w.owner, "x", "INVALID", "metadata"),
        (w.owner, {"a": "b" * settings.max_metadata_bytes}, "TOO_LONG", "metadata"),
        (reviewer, {}, "PERMISSION_DENIED", "id"),
    ]
    for caller, metadata, code, field in errors:
        result = (await api.gql(caller, UPDATE, id=input_id, m=metadata))["updateInput"]
        assert (result["code"], result["field"]) == (code, field)
    for missing in (input_id, "unknown"):
        caller = w.stranger if missing == input_id else w.owner
        result = (await api.gql(caller, UPDATE, id=missing, m={}))["updateInput"]
        assert (result["__typename"], result["field"]) == ("NotFoundError", "id")
    stored = await InputDoc.get(input_id)
    assert stored is not None and stored.metadata == {"new": [1, "x"]} and stored.dataset_ids == [d]


# --- deleteInput / deleteInputs -----------------------------------------------------------


async def _annotate(app_id: str, input_id: str, dataset_ids: list[str]) -> None:
    await Annotation(app_id=app_id, input_id=input_id, concept_id="c", dataset_ids=dataset_ids).insert()


async def test_delete_input_removes_annotations_blob_and_dataset_count(api: Api, settings: Settings) -> None:
    w = await world(api)
    d = await dataset(api, w.owner, w.app_id)
    data = image_bytes("PNG", (13, 17), "green")
    made = (await upload(api.http, w.owner, w.app_id, data, datasetIds=[d]))["input"]
    keep = await text_input(api, w.owner, w.app_id, datasetIds=[d])
    await _annotate(w.app_id, made["id"], [d])
    await _annotate(w.app_id, made["id"], [d])
    await _annotate(w.app_id, keep, [d])
    blobs_before = blob_files(settings.resolved_blob_dir)

    assert (await api.gql(w.owner, DELETE, id=made["id"]))["deleteInput"] == {"__typename": "DeleteSuccess"}
    assert await Annotation.find({"input_id": made["id"]}).count() == 0
    assert await Annotation.find({"input_id": keep}).count() == 1
    assert await inputs_count(api, w.owner, d) == 1
    assert blob_files(settings.resolved_blob_dir) == blobs_before - 1
    assert (await api.http.get(made["imageUrl"], headers=w.owner.headers)).status_code == 404
    assert (await api.gql(w.owner, ONE, id=made["id"]))["input"] is None
    again = (await api.gql(w.owner, DELETE, id=made["id"]))["deleteInput"]
    assert (again["code"], again["field"]) == ("NOT_FOUND", "id")
    assert await inputs_count(api, w.owner, d) == 1


async def test_a_blob_shared_by_two_inputs_survives_deleting_one(api: Api) -> None:
    w = await world(api)
    data = image_bytes("PNG", (3, 3), "purple")
    first = (await upload(api.http, w.owner, w.app_id, data))["input"]
    second = (await add(api, w.owner, w.app_id, imageBase64=b64(data)))["input"]
    await api.gql(w.owner, DELETE, id=first["id"])
    got = await api.http.get(second["imageUrl"], headers=w.owner.headers)
    assert got.status_code == 200 and got.content == data


async def test_delete_input_roles_and_other_apps(api: Api) -> None:
    w = await world(api)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    input_id = await text_input(api, w.owner, w.app_id)
    denied = (await api.gql(reviewer, DELETE, id=input_id))["deleteInput"]
    assert (denied["code"], denied["field"]) == ("PERMISSION_DENIED", "id")
    for caller, ident in ((w.stranger, input_id), (w.owner, "unknown")):
        missing = (await api.gql(caller, DELETE, id=ident))["deleteInput"]
        assert (missing["code"], missing["field"]) == ("NOT_FOUND", "id")
    assert await InputDoc.count() == 1
    done = (await api.gql(labeler, DELETE, id=input_id))["deleteInput"]
    assert done["__typename"] == "DeleteSuccess"
    assert await InputDoc.count() == 0


async def test_delete_inputs_is_all_or_nothing(api: Api, settings: Settings) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    d = await dataset(api, w.owner, w.app_id)
    mine = [await text_input(api, w.owner, w.app_id, str(i), datasetIds=[d]) for i in range(3)]
    theirs = await text_input(api, w.stranger, w.other_app_id)
    for ident in mine:
        await _annotate(w.app_id, ident, [d])
    cases = [
        (w.owner, [mine[0], theirs], "NOT_FOUND", "ids.1"),
        (w.owner, [mine[0], "unknown"], "NOT_FOUND", "ids.1"),
        (reviewer, mine[:1], "PERMISSION_DENIED", "ids.0"),
        (w.owner, [], "EMPTY", "ids"),
        (w.owner, ["x"] * (settings.max_bulk_items + 1), "TOO_MANY", "ids"),
    ]
    for caller, ids, code, field in cases:
        result = (await api.gql(caller, DELETE_MANY, ids=ids))["deleteInputs"]
        assert (result["code"], result["field"]) == (code, field), result
    assert await InputDoc.count() == 4
    done = (await api.gql(w.owner, DELETE_MANY, ids=[mine[0], mine[1], mine[0]]))["deleteInputs"]
    assert done == {"__typename": "DeleteInputsSuccess", "ids": mine[:2]}
    assert await InputDoc.count() == 2
    assert [a.input_id for a in await Annotation.find_all().to_list()] == [mine[2]]
    assert await inputs_count(api, w.owner, d) == 1


# --- queries ----------------------------------------------------------------------------------


async def test_inputs_are_paginated_and_filtered_by_dataset(api: Api) -> None:
    w = await world(api)
    d = await dataset(api, w.owner, w.app_id)
    ids = [
        await text_input(api, w.owner, w.app_id, str(i), datasetIds=[d] if i % 2 else []) for i in range(5)
    ]
    await text_input(api, w.stranger, w.other_app_id)
    seen: list[str] = []
    after = None
    while True:
        page = (await api.gql(w.owner, LIST, a=w.app_id, first=2, after=after))["inputs"]
        seen += [n["id"] for n in page["nodes"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids
    in_d = (await api.gql(w.owner, LIST, a=w.app_id, d=d))["inputs"]["nodes"]
    assert [n["id"] for n in in_d] == [ids[1], ids[3]]


async def test_input_queries_hide_other_apps(api: Api) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    input_id = await text_input(api, w.owner, w.app_id)
    other_dataset = await dataset(api, w.stranger, w.other_app_id)
    assert (await api.gql(reviewer, ONE, id=input_id))["input"] == {"id": input_id, "kind": "TEXT"}
    assert (await api.gql(w.stranger, ONE, id=input_id))["input"] is None
    assert (await api.gql(w.owner, ONE, id="unknown"))["input"] is None
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"a": w.other_app_id}, "NOT_FOUND", "appId"),
        ({"a": w.app_id, "d": other_dataset}, "NOT_FOUND", "datasetId"),
        ({"a": w.app_id, "d": "unknown"}, "NOT_FOUND", "datasetId"),
        ({"a": w.app_id, "first": 51}, "OUT_OF_RANGE", "first"),
        ({"a": w.app_id, "after": "!!"}, "INVALID_CURSOR", "after"),
    ]
    for variables, code, field in cases:
        errors = await api.gql_errors(w.owner, LIST, **variables)
        assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["field"]) == (code, field)


async def test_add_input_query_text_is_exported(api: Api) -> None:
    """The operation used by clients parses and needs no other variables than ``input``."""
    w = await world(api)
    response = await api.raw(ADD, {"input": {"appId": w.app_id, "text": "x"}}, key=w.owner.key)
    assert response.json()["data"]["addInput"]["__typename"] == "InputSuccess"
