"""A text region's recognised text is part of the annotation: queryable, editable in review,
exported in JSON Lines (``text``) and COCO (``attributes.text``)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import orjson
import pytest
from PIL import Image
from skimage import data as samples

from app.annotations.models import Annotation
from tests.exports.helpers import create_version, zip_bytes
from tests.factories import Api, world
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import add_inputs, b64, create_dataset, create_task, null_model, png

BOX = {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6}
LOW_BOX = {"top": 0.6, "left": 0.1, "bottom": 0.9, "right": 0.4}
# a stand-in OCR model: the null adapter's extra is what the text-region model writes
OCR = [
    {"concept": "text", "confidence": 0.95, "region": BOX, "extra": {"text": "STOP"}},
    {"concept": "text", "confidence": 0.6, "region": LOW_BOX, "extra": {"text": "0NE WAY"}},
]
ANNOTATIONS = """query($a: ID!, $t: ID!) { annotations(appId: $a, filter: {taskIds: [$t]}) {
  nodes { id text status confidence box { top } } } }"""
EDIT = """mutation($i: EditAnnotationInput!) { editAnnotation(input: $i) { __typename
  ... on AnnotationSuccess { annotation { id text status confidence editedBy reviewAction } }
  ... on Error { code field message } } }"""
ADD = """mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { __typename
  ... on AddAnnotationsSuccess { annotations { id text } errors { index code field message } }
  ... on Error { code field message } } }"""


async def _ocr_task(api: Api, drain: Drain) -> tuple[Any, str, str, str, str]:
    w = await world(api)
    text = await api.concept(w.owner, w.app_id, "text")
    ds = await create_dataset(api, w.owner, w.app_id)
    (input_id,) = await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(png(1, (40, 30))), "datasetIds": [ds]}]
    )
    model = await null_model(api, w.owner, w.app_id, OCR, name="ocr")
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=model,
        conceptIds=[text],
        taskType="BOUNDING_BOX_DETECTION",
        thresholds={"lower": 0.5, "upper": 0.9},
    )
    await drain()
    return w, ds, task["id"], text, input_id


async def _by_text(api: Api, w: Any, task_id: str) -> dict[str, dict[str, Any]]:
    data = await api.gql(w.owner, ANNOTATIONS, a=w.app_id, t=task_id)
    return {n["text"]: n for n in data["annotations"]["nodes"]}


async def test_the_recognised_text_is_on_the_routed_annotation(api: Api, drain: Drain) -> None:
    w, _, task_id, _, _ = await _ocr_task(api, drain)
    by_text = await _by_text(api, w, task_id)
    assert set(by_text) == {"STOP", "0NE WAY"}
    assert by_text["STOP"]["status"] == "SUCCESS"
    assert by_text["0NE WAY"]["status"] == "AWAITING_REVIEW"


async def test_a_reviewer_corrects_the_text_through_edit_annotation(api: Api, drain: Drain) -> None:
    w, _, task_id, _, _ = await _ocr_task(api, drain)
    wrong = (await _by_text(api, w, task_id))["0NE WAY"]
    edited = (await api.gql(w.owner, EDIT, i={"annotationId": wrong["id"], "text": "ONE WAY"}))[
        "editAnnotation"
    ]
    assert edited["__typename"] == "AnnotationSuccess", edited
    ann = edited["annotation"]
    assert (ann["text"], ann["status"], ann["confidence"]) == ("ONE WAY", "SUCCESS", 1.0)
    assert (ann["editedBy"], ann["reviewAction"]) == (w.owner.user_id, "EDIT")
    stored = await Annotation.get(wrong["id"])
    assert stored is not None and stored.text == "ONE WAY"
    # a later re-application of thresholds leaves the person's text alone
    reapply = """mutation($t: ID!) { reapplyThresholds(input: {taskId: $t, dryRun: false}) { __typename } }"""
    await api.gql(w.owner, reapply, t=task_id)
    assert set(await _by_text(api, w, task_id)) == {"STOP", "ONE WAY"}


async def test_text_edits_are_refused_without_a_region_or_when_too_long(api: Api, drain: Drain) -> None:
    w, _, task_id, text, input_id = await _ocr_task(api, drain)
    stop = (await _by_text(api, w, task_id))["STOP"]
    long = (await api.gql(w.owner, EDIT, i={"annotationId": stop["id"], "text": "x" * 10_001}))[
        "editAnnotation"
    ]
    assert (long["__typename"], long["code"], long["field"]) == ("ValidationError", "TOO_LONG", "text")
    # a whole-image label has no region, so no text
    whole = {"inputId": input_id, "conceptId": text, "taskId": task_id}
    added = (await api.gql(w.owner, ADD, i={"appId": w.app_id, "annotations": [whole]}))["addAnnotations"]
    label_id = added["annotations"][0]["id"]
    refused = (await api.gql(w.owner, EDIT, i={"annotationId": label_id, "text": "hi"}))["editAnnotation"]
    assert (refused["code"], refused["field"]) == ("NO_REGION", "text")
    bad = {**whole, "text": "hi"}
    added = (await api.gql(w.owner, ADD, i={"appId": w.app_id, "annotations": [bad]}))["addAnnotations"]
    assert [(e["code"], e["field"]) for e in added["errors"]] == [("NO_REGION", "annotations.0.text")]
    boxed = {**bad, "box": BOX}
    added = (await api.gql(w.owner, ADD, i={"appId": w.app_id, "annotations": [boxed]}))["addAnnotations"]
    assert added["errors"] == [] and added["annotations"][0]["text"] == "hi"


def _entry(data: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read(name)


async def test_jsonl_and_coco_exports_carry_the_text(api: Api, drain: Drain) -> None:
    w, ds, task_id, _, _ = await _ocr_task(api, drain)
    wrong = (await _by_text(api, w, task_id))["0NE WAY"]
    await api.gql(w.owner, EDIT, i={"annotationId": wrong["id"], "text": "ONE WAY"})
    version = await create_version(api, w.owner, datasetId=ds)
    jsonl = _entry(await zip_bytes(api, w.owner, version["id"], "JSONL", images=False), "data.jsonl")
    (row,) = [orjson.loads(line) for line in jsonl.splitlines()]
    assert sorted(a["text"] for a in row["annotations"]) == ["ONE WAY", "STOP"]
    coco = orjson.loads(
        _entry(await zip_bytes(api, w.owner, version["id"], "COCO", images=False), "annotations.json")
    )
    assert sorted(a["attributes"]["text"] for a in coco["annotations"]) == ["ONE WAY", "STOP"]


@pytest.mark.slow
async def test_the_text_region_model_text_is_queryable(api: Api, drain: Drain) -> None:
    """The real PP-OCR model on scikit-image's page of text."""
    w = await world(api)
    data = await api.gql(
        w.owner, "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=w.app_id
    )
    ocr = {n["name"]: n["id"] for n in data["models"]["nodes"]}["text-region-detector"]
    text = await api.concept(w.owner, w.app_id, "text")
    ds = await create_dataset(api, w.owner, w.app_id)
    buf = io.BytesIO()
    Image.fromarray(np.stack([samples.page()] * 3, axis=-1)).save(buf, format="PNG")
    await add_inputs(api, w.owner, w.app_id, [{"imageBase64": b64(buf.getvalue()), "datasetIds": [ds]}])
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=ocr,
        conceptIds=[text],
        taskType="POLYGON_DETECTION",
        thresholds={"lower": 0.3, "upper": 0.6},
    )
    await drain()
    texts = " ".join(t for t in await _by_text(api, w, task["id"]) if t).lower()
    assert "segmentation" in texts
