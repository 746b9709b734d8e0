"""Uploading prediction files through the real API (GraphQL multipart), and a small scenario."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.inputs.models import Input
from app.predictions.models import Prediction
from tests.factories import Api, Caller, World, world
from tests.tasks_engine.helpers import add_inputs, b64, create_dataset, create_task, png

IMPORT = """mutation($i: ImportPredictionsInput!) { importPredictions(input: $i) { __typename
  ... on ImportPredictionsSuccess { sourceId inputs predictions skipped approved awaitingReview discarded
        labelingTask { id status conceptMapping { modelConceptId conceptId }
          metrics { inputsTotal processed failed approved awaitingReview discarded } } }
  ... on ImportPredictionsError { code field message problemsCount problems { line file code message } }
  ... on Error { code field message } } }"""


async def import_file(
    api: Api, caller: Caller, task_id: str, fmt: str, data: bytes, name: str = "predictions", **extra: Any
) -> dict[str, Any]:
    """``importPredictions`` with ``data`` as the multipart file part; the result union member."""
    variables = {"i": {"taskId": task_id, "format": fmt, "file": None, **extra}}
    response = await api.http.post(
        "/graphql",
        data={
            "operations": orjson.dumps({"query": IMPORT, "variables": variables}).decode(),
            "map": orjson.dumps({"0": ["variables.i.file"]}).decode(),
        },
        files={"0": (name, data, "application/octet-stream")},
        headers=caller.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["importPredictions"]
    return result


def coco_results(preds: list[Prediction], sizes: dict[str, tuple[int, int]], names: list[str]) -> bytes:
    """Raw predictions as a COCO object: ``images`` named ``<input id>.png``, ``categories``
    by model concept, ``annotations`` the results (pixel ``bbox``, ``score``)."""
    ids = {input_id: k + 1 for k, input_id in enumerate(sorted(sizes))}
    cats = {n: k + 1 for k, n in enumerate(names)}
    results = []
    for p in preds:
        assert p.box is not None
        w, h = sizes[p.input_id]
        top, left, bottom, right = p.box
        results.append(
            {
                "image_id": ids[p.input_id],
                "category_id": cats[p.model_concept_id],
                "bbox": [left * w, top * h, (right - left) * w, (bottom - top) * h],
                "score": p.confidence,
            }
        )
    doc = {
        "images": [
            {"id": k, "file_name": f"{i}.png", "width": sizes[i][0], "height": sizes[i][1]}
            for i, k in ids.items()
        ],
        "categories": [{"id": k, "name": n} for n, k in cats.items()],
        "annotations": results,
    }
    return orjson.dumps(doc)


async def sizes_of(input_ids: list[str]) -> dict[str, tuple[int, int]]:
    docs = await Input.find({"_id": {"$in": input_ids}}).to_list()
    return {d.id: (int(d.width or 0), int(d.height or 0)) for d in docs}


@dataclass
class Small:
    """Three images (40x30, 64x48, 20x50) in a dataset, concepts cat and dog, and a task labeled
    by people (no model) with thresholds 0.5 / 0.9."""

    w: World
    c: dict[str, str]
    ds: str
    inputs: list[str]
    task_id: str


SIZES = [(40, 30), (64, 48), (20, 50)]


async def small(api: Api, **task: Any) -> Small:
    w = await world(api)
    c = {n: await api.concept(w.owner, w.app_id, n) for n in ("cat", "dog")}
    ds = await create_dataset(api, w.owner, w.app_id)
    items = [{"imageBase64": b64(png(k, size)), "datasetIds": [ds]} for k, size in enumerate(SIZES)]
    inputs = await add_inputs(api, w.owner, w.app_id, items)
    made = await create_task(
        api,
        w.owner,
        **{
            "appId": w.app_id,
            "datasetId": ds,
            "autoAnnotation": False,
            "conceptIds": [c["cat"], c["dog"]],
            "taskType": "BOUNDING_BOX_DETECTION",
            "thresholds": {"lower": 0.5, "upper": 0.9},
        }
        | task,
    )
    return Small(w=w, c=c, ds=ds, inputs=inputs, task_id=made["id"])
