"""Uploaded models through the whole pipeline (API -> arq worker -> annotations): the bundled
weights uploaded as a user's own label like the built-in models; tasks record the version."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from skimage import data as samples

from app.annotations.models import Annotation
from app.models.adapters import model_files
from app.models.adapters.base import WEIGHTS_DIR
from app.models.adapters.image_classifier import load_imagenet_concepts
from app.models.adapters.object_detector import CLASSES_FILE, concept_id
from app.predictions.models import Prediction
from tests.factories import Api, Caller, world
from tests.models.onnx_files import constant_model, yolov8_output
from tests.models.upload_helpers import upload_model, upload_version
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    add_inputs,
    annotations_of,
    b64,
    builtin,
    create_dataset,
    create_task,
    get_task,
    jpeg,
)

pytestmark = pytest.mark.slow


async def photos(api: Api, caller: Caller, app_id: str) -> str:
    ds = await create_dataset(api, caller, app_id)
    images = [samples.chelsea(), samples.coffee(), samples.astronaut(), samples.stereo_motorcycle()[0]]
    await add_inputs(api, caller, app_id, [{"imageBase64": b64(jpeg(i)), "datasetIds": [ds]} for i in images])
    return ds


def summary(annotations: list[Annotation]) -> list[tuple[Any, ...]]:
    return sorted(
        (a.input_id, a.concept_id, a.status.value, a.confidence, tuple(a.box or ())) for a in annotations
    )


def assert_same(mine: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> None:
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs, strict=True):
        assert a[:3] == b[:3]
        assert a[3] == pytest.approx(b[3], abs=1e-5)
        assert a[4] == pytest.approx(b[4], abs=1e-4)


async def run_task(api: Api, caller: Caller, drain: Drain, **fields: Any) -> str:
    task = await create_task(api, caller, **fields)
    await drain()
    assert (await get_task(api, caller, task["id"]))["status"] == "DONE"
    return str(task["id"])


async def test_bundled_classifier_uploaded_as_a_user_model_labels_like_the_builtin(
    api: Api, http: httpx.AsyncClient, drain: Drain
) -> None:
    model_files.clear()
    w = await world(api)
    ds = await photos(api, w.owner, w.app_id)
    concepts = [{"id": c.id, "name": c.name} for c in load_imagenet_concepts()]
    config = {"resize": "stretch", "scale": 1.0, "mean": [127, 127, 127], "std": [128, 128, 128], "top_k": 5}
    mine = await upload_model(
        http, w.owner, w.app_id, (WEIGHTS_DIR / "efficientnet_lite0.onnx").read_bytes(),
        kind="CLASSIFIER", concepts=concepts, config=config,
    )  # fmt: skip
    assert mine["__typename"] == "ModelSuccess", mine
    assert mine["model"]["activeVersion"]["layout"] == "classification"
    cat = await api.concept(w.owner, w.app_id, "cat")
    coffee = await api.concept(w.owner, w.app_id, "coffee")
    mapping = [{"modelConceptId": m, "conceptId": cat} for m in ("n02124075", "n02123045", "n02123159")] + [
        {"modelConceptId": m, "conceptId": coffee} for m in ("n07920052", "n07930864", "n03063599")
    ]
    task: dict[str, Any] = {
        "appId": w.app_id, "datasetId": ds, "conceptIds": [cat, coffee], "conceptMapping": mapping,
        "thresholds": {"lower": 0.05, "upper": 0.6},
    }  # fmt: skip
    models = await builtin(api, w.owner, w.app_id)
    theirs_id = await run_task(api, w.owner, drain, modelId=models["general-image-classifier"], **task)
    mine_id = await run_task(api, w.owner, drain, modelId=mine["model"]["id"], **task)
    assert_same(summary(await annotations_of(mine_id)), summary(await annotations_of(theirs_id)))
    version = mine["model"]["activeVersion"]["id"]
    assert {a.model_version_id for a in await annotations_of(mine_id)} == {version}
    assert {a.model_version_id for a in await annotations_of(theirs_id)} == {None}


async def test_bundled_detector_uploaded_as_a_user_model_labels_like_the_builtin(
    api: Api, http: httpx.AsyncClient, drain: Drain
) -> None:
    model_files.clear()
    w = await world(api)
    ds = await photos(api, w.owner, w.app_id)
    names = [n.strip() for n in CLASSES_FILE.read_text().splitlines() if n.strip()]
    concepts = [{"id": concept_id(n), "name": n} for n in names]
    config = {
        "channel_order": "BGR", "scale": 1.0, "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395],
        "pad_value": 0, "min_confidence": 0.25, "iou_threshold": 0.6,
    }  # fmt: skip
    mine = await upload_model(
        http, w.owner, w.app_id, (WEIGHTS_DIR / "nanodet_m_416.onnx").read_bytes(),
        kind="DETECTOR", concepts=concepts, config=config,
    )  # fmt: skip
    assert mine["__typename"] == "ModelSuccess", mine
    assert mine["model"]["activeVersion"]["layout"] == "nanodet"
    wanted = [await api.concept(w.owner, w.app_id, n) for n in ("cat", "cup", "person", "motorcycle")]
    task: dict[str, Any] = {
        "appId": w.app_id, "datasetId": ds, "conceptIds": wanted, "taskType": "BOUNDING_BOX_DETECTION",
        "thresholds": {"lower": 0.25, "upper": 0.5},
    }  # fmt: skip
    models = await builtin(api, w.owner, w.app_id)
    theirs_id = await run_task(api, w.owner, drain, modelId=models["general-object-detector"], **task)
    mine_id = await run_task(api, w.owner, drain, modelId=mine["model"]["id"], **task)
    theirs = summary(await annotations_of(theirs_id))
    assert_same(summary(await annotations_of(mine_id)), theirs)
    assert {a[1] for a in theirs} == set(wanted)  # the cat, the cup, the astronaut, the motorcycle


async def test_a_task_records_the_version_each_run_used(
    api: Api, http: httpx.AsyncClient, drain: Drain
) -> None:
    model_files.clear()
    w = await world(api)
    ds = await photos(api, w.owner, w.app_id)
    v1 = constant_model(
        {"output0": yolov8_output([(32, 32, 16, 8)], [0], [0.9], 2)}, names="{0: 'cat', 1: 'dog'}"
    )
    first = (await upload_model(http, w.owner, w.app_id, v1))["model"]
    cat = await api.concept(w.owner, w.app_id, "cat")
    dog = await api.concept(w.owner, w.app_id, "dog")
    task_id = await run_task(
        api, w.owner, drain, appId=w.app_id, datasetId=ds, modelId=first["id"], conceptIds=[cat, dog],
        taskType="BOUNDING_BOX_DETECTION", thresholds={"lower": 0.5, "upper": 0.8},
    )  # fmt: skip
    labels = await annotations_of(task_id)
    assert len(labels) == 4 and {(a.concept_id, a.model_version_id) for a in labels} == {
        (cat, first["activeVersion"]["id"])
    }
    v2 = constant_model({"output0": yolov8_output([(32, 32, 16, 8)], [1], [0.9], 2)})
    second = await upload_version(http, w.owner, first["id"], v2)
    assert second["version"]["number"] == 2
    data = await api.gql(
        w.owner,
        """mutation($id: ID!) { startLabelingTask(id: $id) { __typename ... on Error { code message } } }""",
        id=task_id,
    )
    assert data["startLabelingTask"]["__typename"] == "TaskRunSuccess", data
    await drain()
    labels = await annotations_of(task_id)
    assert {(a.concept_id, a.model_version_id) for a in labels} == {(dog, second["version"]["id"])}
    # the stored predictions are the second version's only (re-applied thresholds see no mix)
    stored = await Prediction.find({"task_id": task_id}).to_list()
    assert len(stored) == 4
    assert {(p.model_concept_id, p.model_version_id) for p in stored} == {("dog", second["version"]["id"])}
    runs = await api.gql(
        w.owner,
        """query($t: ID!) { taskModelVersions(taskId: $t, first: 10) {
             nodes { run modelId versionNumber } } }""",
        t=task_id,
    )
    assert [(n["run"], n["versionNumber"]) for n in runs["taskModelVersions"]["nodes"]] == [(1, 1), (2, 2)]


async def test_an_uploaded_instance_segmenter_makes_polygon_annotations(
    api: Api, http: httpx.AsyncClient, drain: Drain
) -> None:
    from tests.models.test_onnx_layouts import seg_outputs

    model_files.clear()
    w = await world(api)
    ds = await create_dataset(api, w.owner, w.app_id)
    square = np.zeros((64, 64, 3), np.uint8)
    await add_inputs(api, w.owner, w.app_id, [{"imageBase64": b64(jpeg(square)), "datasetIds": [ds]}])
    result = await upload_model(
        http, w.owner, w.app_id, constant_model(seg_outputs()), kind="SEGMENTER",
        concepts=[{"id": n, "name": n} for n in ("a", "cat", "c")],
    )  # fmt: skip
    assert result["__typename"] == "ModelSuccess", result
    cat = await api.concept(w.owner, w.app_id, "cat")
    task_id = await run_task(
        api, w.owner, drain, appId=w.app_id, datasetId=ds, modelId=result["model"]["id"], conceptIds=[cat],
        taskType="POLYGON_DETECTION", thresholds={"lower": 0.5, "upper": 0.8},
    )  # fmt: skip
    (label,) = await annotations_of(task_id)
    assert label.concept_id == cat and label.status.value == "SUCCESS" and label.box is None
    assert label.polygon is not None and len(label.polygon) >= 8
    rows, cols = label.polygon[0::2], label.polygon[1::2]
    assert min(rows) == pytest.approx(0.25, abs=1 / 16) and max(cols) == pytest.approx(0.75, abs=1 / 16)
