"""Building blocks for engine tests: inputs through the real API, models, tasks, polling."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.annotations.models import Annotation
from app.tasks.models import LabelingTask
from app.tasks.progress import recount
from tests.factories import Api, Caller, World, world

TASK_FIELDS = """__typename
  ... on LabelingTaskSuccess { labelingTask { id status run metrics {
      inputsTotal processed failed approved awaitingReview discarded labelingPercent } } }
  ... on Error { code field message }"""


def png(seed: int = 0, size: tuple[int, int] = (16, 12)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Setup:
    owner: Caller
    app_id: str
    dataset_id: str
    input_ids: list[str]


async def create_dataset(api: Api, owner: Caller, app_id: str, name: str = "Images") -> str:
    data = await api.gql(
        owner,
        """mutation($a: ID!, $n: String!) { createDataset(input: {appId: $a, name: $n}) {
             ... on DatasetSuccess { dataset { id } } } }""",
        a=app_id,
        n=name,
    )
    dataset_id: str = data["createDataset"]["dataset"]["id"]
    return dataset_id


async def add_inputs(api: Api, owner: Caller, app_id: str, items: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for k in range(0, len(items), 20):
        data = await api.gql(
            owner,
            """mutation($a: ID!, $i: [AddInputItem!]!) { addInputs(appId: $a, inputs: $i) {
                 __typename ... on AddInputsSuccess { inputs { id } errors { index code message } } } }""",
            a=app_id,
            i=items[k : k + 20],
        )
        result = data["addInputs"]
        assert result["errors"] == [], result
        ids.extend(i["id"] for i in result["inputs"])
    return ids


async def image_inputs(
    api: Api, owner: Caller, app_id: str, dataset_id: str, n: int, seed: int = 0
) -> list[str]:
    items = [{"imageBase64": b64(png(seed + i)), "datasetIds": [dataset_id]} for i in range(n)]
    return await add_inputs(api, owner, app_id, items)


async def null_model(
    api: Api,
    owner: Caller,
    app_id: str,
    predictions: list[dict[str, Any]],
    *,
    delay_ms: float = 0,
    name: str = "null model",
) -> str:
    concepts = sorted({p["concept"] for p in predictions})
    data = await api.gql(
        owner,
        """mutation($i: CreateModelInput!) { createModel(input: $i) {
             __typename ... on ModelSuccess { model { id } } ... on Error { code field message } } }""",
        i={
            "appId": app_id,
            "name": name,
            "kind": "CLASSIFIER",
            "adapter": "null",
            "config": {"predictions": predictions, "delay_ms": delay_ms},
            "concepts": [{"id": c, "name": c} for c in concepts],
        },
    )
    assert data["createModel"]["__typename"] == "ModelSuccess", data
    model_id: str = data["createModel"]["model"]["id"]
    return model_id


THREE = [
    {"concept": "cat", "confidence": 0.95},
    {"concept": "dog", "confidence": 0.6},
    {"concept": "bird", "confidence": 0.2},
]


@dataclass
class Scenario:
    """An app with concepts cat/dog/bird, a dataset of images and a null model predicting
    cat 0.95, dog 0.6 and bird 0.2 for every input."""

    w: World
    c: dict[str, str]
    ds: str
    inputs: list[str]
    model: str


async def scenario(api: Api, images: int) -> Scenario:
    w = await world(api)
    c = {n: await api.concept(w.owner, w.app_id, n) for n in ("cat", "dog", "bird")}
    ds = await create_dataset(api, w.owner, w.app_id)
    inputs = await image_inputs(api, w.owner, w.app_id, ds, images)
    model = await null_model(api, w.owner, w.app_id, THREE)
    return Scenario(w=w, c=c, ds=ds, inputs=inputs, model=model)


async def create_task(api: Api, owner: Caller, **fields: Any) -> dict[str, Any]:
    data = await api.gql(
        owner,
        "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { " + TASK_FIELDS + " } }",
        i={"name": "Task"} | fields,
    )
    result: dict[str, Any] = data["createLabelingTask"]
    assert result["__typename"] == "LabelingTaskSuccess", result
    task: dict[str, Any] = result["labelingTask"]
    return task


async def get_task(api: Api, caller: Caller, task_id: str) -> dict[str, Any]:
    data = await api.gql(
        caller,
        """query($id: ID!) { labelingTask(id: $id) { id status run metrics {
             inputsTotal processed failed approved awaitingReview discarded labelingPercent } } }""",
        id=task_id,
    )
    task: dict[str, Any] = data["labelingTask"]
    return task


async def annotations_of(task_id: str) -> list[Annotation]:
    return await Annotation.find({"task_id": task_id}).sort("key").to_list()


async def assert_metrics_match_recount(task_id: str) -> None:
    task = await LabelingTask.get(task_id)
    assert task is not None
    counted = await recount(task_id)
    stored = {f"metrics.{k}": v for k, v in task.metrics.model_dump().items() if f"metrics.{k}" in counted}
    assert stored == counted


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


async def builtin(api: Api, caller: Caller, app_id: str) -> dict[str, str]:
    data = await api.gql(
        caller, "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
    )
    return {n["name"]: n["id"] for n in data["models"]["nodes"]}
