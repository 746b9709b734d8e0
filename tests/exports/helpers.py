"""A labeled dataset and its version, built through the real API, and downloads of its exports."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.factories import Api, Caller, world
from tests.registry.factories import text_input
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import add_inputs, b64, create_dataset, null_model, png

BOX = {"top": 0.1, "left": 0.2, "bottom": 0.5, "right": 0.6}
TRIANGLE = [[0.2, 0.2], [0.2, 0.8], [0.8, 0.5]]
PREDICTIONS = [
    {"concept": "cat", "confidence": 0.95, "region": BOX},
    {"concept": "bird", "confidence": 0.6, "region": {"top": 0.0, "left": 0.0, "bottom": 0.3, "right": 0.3}},
]
SIZES = [(40, 30), (64, 48), (20, 50)]
FORMATS = ["COCO", "YOLO", "YOLO_SEGMENT", "VOC", "JSONL"]
CREATE = """mutation($i: CreateDatasetVersionInput!) { createDatasetVersion(input: $i) { __typename
  ... on DatasetVersionSuccess { datasetVersion { id status inputsCount annotationsCount statuses
        concepts { id name } exportUrl(format: YOLO) } }
  ... on Error { code field message } } }"""
TASK = """mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) {
  __typename ... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code field message } } }"""
ADD = """mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) {
  __typename ... on AddAnnotationsSuccess { annotations { id } errors { code field message } }
  ... on Error { code field message } } }"""


@dataclass
class Exported:
    owner: Caller
    app_id: str
    dataset_id: str
    task_id: str
    model_id: str
    version_id: str
    concepts: dict[str, str]
    images: dict[str, tuple[int, int]]  # input id -> (width, height)
    pngs: dict[str, bytes]  # input id -> the image's bytes
    text_id: str
    stranger: Caller
    other_app_id: str

    @property
    def w_stranger_headers(self) -> dict[str, str]:
        return self.stranger.headers


async def detection_task(
    api: Api, e: Exported, drain: Drain, name: str = "detect", model_id: str | None = None
) -> str:
    """A detection task of cats and birds over the dataset, run to the end; by default with the
    null model of ``PREDICTIONS`` (cat 0.95 approved, bird 0.6 waits for review)."""
    made = await api.gql(
        e.owner,
        TASK,
        i={
            "appId": e.app_id,
            "name": name,
            "datasetId": e.dataset_id,
            "modelId": model_id or e.model_id,
            "conceptIds": [e.concepts["cat"], e.concepts["bird"]],
            "taskType": "BOUNDING_BOX_DETECTION",
            "thresholds": {"lower": 0.5, "upper": 0.9},
        },
    )
    assert made["createLabelingTask"]["__typename"] == "LabelingTaskSuccess", made
    await drain()
    task_id: str = made["createLabelingTask"]["labelingTask"]["id"]
    return task_id


async def exported(api: Api, drain: Drain, *, whole_image: bool = False) -> Exported:
    """Three images, each with a cat box (a model, in a task) and a dog polygon (a person, outside
    any task, so it is final at once), a text input, and a version of them. ``whole_image``: each image and the text also
    carry an ``indoor`` label with no region (a person's, outside any task)."""
    w = await world(api)
    names = ("cat", "dog", "bird", "indoor") if whole_image else ("cat", "dog", "bird")
    concepts = {n: await api.concept(w.owner, w.app_id, n) for n in names}
    ds = await create_dataset(api, w.owner, w.app_id)
    pngs = [png(k, size) for k, size in enumerate(SIZES)]
    ids = await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(p), "datasetIds": [ds]} for p in pngs]
    )
    model = await null_model(api, w.owner, w.app_id, PREDICTIONS)
    e = Exported(
        w.owner,
        w.app_id,
        ds,
        "",
        model,
        "",
        concepts,
        dict(zip(ids, SIZES, strict=True)),
        dict(zip(ids, pngs, strict=True)),
        "",
        w.stranger,
        w.other_app_id,
    )
    e.task_id = await detection_task(api, e, drain)
    # polygons come from a person (a null model's polygon config is a nested array, which
    # FerretDB 1.24 cannot store); they are stored flat like any annotation
    points = [{"row": r, "col": c} for r, c in TRIANGLE]
    polygons = [
        {
            "inputId": i,
            "conceptId": concepts["dog"],
            "polygon": points,
            "confidence": 0.97,
        }
        for i in ids
    ]
    added = await api.gql(w.owner, ADD, i={"appId": w.app_id, "annotations": polygons})
    assert added["addAnnotations"].get("errors") == [], added
    e.text_id = await text_input(w.app_id, [ds], text="a text input")
    if whole_image:
        labels = [{"inputId": i, "conceptId": concepts["indoor"]} for i in [*ids, e.text_id]]
        added = await api.gql(w.owner, ADD, i={"appId": w.app_id, "annotations": labels})
        assert added["addAnnotations"].get("errors") == [], added
    version = (await api.gql(w.owner, CREATE, i={"datasetId": ds, "description": "v1"}))[
        "createDatasetVersion"
    ]
    assert version["__typename"] == "DatasetVersionSuccess", version
    e.version_id = version["datasetVersion"]["id"]
    return e


async def create_version(api: Api, caller: Caller, **fields: Any) -> dict[str, Any]:
    """A new version; fails the test unless it is made."""
    made = (await api.gql(caller, CREATE, i=fields))["createDatasetVersion"]
    assert made["__typename"] == "DatasetVersionSuccess", made
    version: dict[str, Any] = made["datasetVersion"]
    return version


async def zip_bytes(api: Api, caller: Caller, version_id: str, fmt: str, *, images: bool = True) -> bytes:
    response = await api.http.get(
        f"/dataset-versions/{version_id}/export?format={fmt}&images={str(images).lower()}",
        headers=caller.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return response.content


async def download(api: Api, caller: Caller, version_id: str, fmt: str, tmp: Path) -> Path:
    folder = tmp / fmt.lower()
    zipfile.ZipFile(io.BytesIO(await zip_bytes(api, caller, version_id, fmt))).extractall(folder)
    return folder


def manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((folder / "version.json").read_bytes())
    return data
