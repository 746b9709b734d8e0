"""Imported COCO results route exactly like the same predictions made by a model.

A null model predicts boxes for 1,000 images of assorted sizes (a many-to-one mapping, a
per-concept range, values on the range bounds, two reviewers); its raw predictions are written
out as COCO results (pixel boxes) and imported into a second task with the same settings and no
model. Both tasks must end with the same annotations, statuses, metrics and review queues.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

from app.annotations.models import Annotation
from app.predictions.models import Prediction
from app.review.models import Assignment
from tests.factories import Api, world
from tests.predictions.helpers import coco_results, import_file, sizes_of
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    add_inputs,
    assert_metrics_match_recount,
    b64,
    create_dataset,
    create_task,
    get_task,
    null_model,
    png,
)

pytestmark = pytest.mark.slow

# 1,000 by default; a smaller even number runs it quicker (e.g. on FerretDB, which uses no index)
IMAGES = int(os.environ.get("LABELSTREAM_TEST_IMPORT_IMAGES", "1000"))
BOXES = [
    {
        "concept": "kitty",
        "confidence": 0.95,
        "region": {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6},
    },
    {"concept": "tabby", "confidence": 0.9, "region": {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6}},
    {"concept": "dog", "confidence": 0.5, "region": {"top": 0.0, "left": 0.0, "bottom": 1.0, "right": 1.0}},
    {
        "concept": "dog",
        "confidence": 0.49,
        "region": {"top": 0.25, "left": 0.25, "bottom": 0.75, "right": 0.75},
    },
    {"concept": "bird", "confidence": 0.3, "region": {"top": 0.6, "left": 0.1, "bottom": 0.9, "right": 0.3}},
    {
        "concept": "bird",
        "confidence": 0.15,
        "region": {"top": 0.0, "left": 0.7, "bottom": 0.2, "right": 0.95},
    },
]
SIZES = [(16, 12), (17, 13), (33, 21), (50, 50), (7, 31)]


def routed(anns: list[Annotation]) -> list[tuple[Any, ...]]:
    """What routing decided, without what names the source (task, model, ids, times)."""
    return sorted(
        (
            a.input_id,
            a.concept_id,
            tuple(round(v, 9) for v in a.box or []),
            a.confidence,
            a.status.value,
            a.audit,
        )
        for a in anns
    )


async def review_queue(task_id: str) -> tuple[list[str], Counter[str | None]]:
    docs = await Assignment.find({"task_id": task_id, "kind": "REVIEW"}).to_list()
    return sorted(d.input_id for d in docs), Counter(d.user_id for d in docs)


async def test_imported_coco_results_route_like_the_model(api: Api, drain: Drain) -> None:
    w = await world(api)
    c = {n: await api.concept(w.owner, w.app_id, n) for n in ("cat", "dog", "bird")}
    reviewers = [(await api.member(w.owner, w.app_id, ["REVIEWER"])).user_id for _ in range(2)]
    ds = await create_dataset(api, w.owner, w.app_id)
    items = [{"imageBase64": b64(png(k, SIZES[k % len(SIZES)])), "datasetIds": [ds]} for k in range(IMAGES)]
    inputs = await add_inputs(api, w.owner, w.app_id, items)
    model = await null_model(api, w.owner, w.app_id, BOXES, name="boxes")
    settings: dict[str, Any] = {
        "appId": w.app_id,
        "datasetId": ds,
        "taskType": "BOUNDING_BOX_DETECTION",
        "conceptIds": [c["cat"], c["dog"], c["bird"]],
        "conceptMapping": [
            {"modelConceptId": "kitty", "conceptId": c["cat"]},
            {"modelConceptId": "tabby", "conceptId": c["cat"]},
        ],
        "thresholds": {"lower": 0.5, "upper": 0.9, "upperInclusive": False},
        "conceptThresholds": [{"conceptId": c["bird"], "range": {"lower": 0.2, "upper": 0.3}}],
        "reviewerIds": reviewers,
    }
    by_model = await create_task(api, w.owner, name="model", modelId=model, **settings)
    await drain()
    assert (await get_task(api, w.owner, by_model["id"]))["status"] == "DONE"

    predictions = await Prediction.find({"task_id": by_model["id"]}).to_list()
    assert len(predictions) == IMAGES * len(BOXES)
    names = sorted({p["concept"] for p in BOXES})
    data = coco_results(predictions, await sizes_of(inputs), names)

    by_import = await create_task(api, w.owner, name="import", autoAnnotation=False, **settings)
    done = await import_file(api, w.owner, by_import["id"], "COCO_RESULTS", data, name="results.json")
    assert done["__typename"] == "ImportPredictionsSuccess", done
    assert (done["inputs"], done["predictions"]) == (IMAGES, IMAGES * len(BOXES))

    model_anns = await Annotation.find({"task_id": by_model["id"]}).to_list()
    import_anns = await Annotation.find({"task_id": by_import["id"]}).to_list()
    assert len(model_anns) == IMAGES * 3  # cat (best of two), dog at 0.5, bird at 0.3; the rest discarded
    assert routed(import_anns) == routed(model_anns)
    a, b = await get_task(api, w.owner, by_model["id"]), await get_task(api, w.owner, by_import["id"])
    assert b["status"] == a["status"] == "DONE"
    assert b["metrics"] == a["metrics"]
    queue_a, queue_b = await review_queue(by_model["id"]), await review_queue(by_import["id"])
    assert queue_b[0] == queue_a[0] and len(queue_a[0]) == IMAGES
    assert sorted(queue_b[1].values()) == sorted(queue_a[1].values()) == [IMAGES // 2, IMAGES // 2]
    await assert_metrics_match_recount(by_import["id"])

    # the same file again changes nothing
    again = await import_file(api, w.owner, by_import["id"], "COCO_RESULTS", data, name="results.json")
    assert again["sourceId"] == done["sourceId"]
    assert routed(await Annotation.find({"task_id": by_import["id"]}).to_list()) == routed(model_anns)
    assert (await get_task(api, w.owner, by_import["id"]))["metrics"] == a["metrics"]
