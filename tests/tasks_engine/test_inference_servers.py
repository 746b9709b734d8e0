"""Labeling tasks whose model runs on an inference server (KServe's model server from PyPI):
the same annotations as the built-in model, and a task that survives a failing server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as samples
from starlette.applications import Starlette

from app.annotations.models import Annotation
from app.inputs.models import Input, InputKind
from app.models.adapters import AdapterInput, get_adapter
from app.settings import Settings
from app.tasks.models import TaskInput
from app.tasks.run import load
from app.tasks.run.load import Loaded
from app.tasks.run.predict import RunModel, predict
from tests.factories import Api, Caller, world
from tests.inference_servers.processes import ServerProcess, kserve_server
from tests.models.remote.helpers import assert_same
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    add_inputs,
    annotations_of,
    assert_metrics_match_recount,
    b64,
    create_dataset,
    create_task,
    get_task,
)

pytestmark = pytest.mark.slow

SAMPLES = [
    samples.chelsea(),
    samples.coffee(),
    samples.astronaut(),
    samples.rocket(),
    samples.stereo_motorcycle()[0],
]
RETRY = """mutation($id: ID!) { retryFailedInputs(id: $id) { __typename ... on Error { code message } } }"""


def variant(i: int) -> np.ndarray:
    """The ``i``-th of many distinct images: a sample, cropped by ``i`` and shrunk."""
    base = SAMPLES[i % len(SAMPLES)]
    k = i // len(SAMPLES)
    crop = base[k * 3 :, k * 2 :, :3]
    img = Image.fromarray(np.ascontiguousarray(crop)).resize((240, 180 + (k % 7) * 10))
    return np.asarray(img)


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = kserve_server(tmp_path / "kserve.log").start()
    yield process
    process.stop()


async def served_model(api: Api, owner: Caller, app_id: str, builtin: str, config: dict[str, Any]) -> str:
    kind = "DETECTOR" if builtin == "general-object-detector" else "CLASSIFIER"
    concepts = [{"id": c.id, "name": c.name} for c in get_adapter(builtin).concepts()]
    data = await api.gql(
        owner,
        """mutation($i: CreateModelInput!) { createModel(input: $i) {
             __typename ... on ModelSuccess { model { id } } ... on Error { code field message } } }""",
        i={
            "appId": app_id,
            "name": f"served {builtin}",
            "kind": kind,
            "adapter": "kserve-v2",
            "config": config,
            "concepts": concepts,
        },
    )
    assert data["createModel"]["__typename"] == "ModelSuccess", data
    model_id: str = data["createModel"]["model"]["id"]
    return model_id


async def builtin_ids(api: Api, caller: Caller, app_id: str) -> dict[str, str]:
    data = await api.gql(
        caller, "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
    )
    return {n["name"]: n["id"] for n in data["models"]["nodes"]}


def labels(annotations: list[Annotation]) -> dict[tuple[Any, ...], tuple[str, float, list[float] | None]]:
    return {
        (a.input_id, a.concept_id, tuple(round(v, 3) for v in a.box or [])): (
            a.status.value,
            a.confidence,
            a.box,
        )
        for a in annotations
    }


def assert_same_labels(got: list[Annotation], want: list[Annotation]) -> None:
    g, w = labels(got), labels(want)
    assert g.keys() == w.keys()
    for key, (status, confidence, box) in w.items():
        assert g[key][0] == status
        assert abs(g[key][1] - confidence) < 1e-4
        if box is not None:
            assert np.allclose(g[key][2] or [], box, atol=1e-4)


async def test_served_models_label_like_the_builtins(api: Api, drain: Drain, server: ServerProcess) -> None:
    w = await world(api)
    models = await builtin_ids(api, w.owner, w.app_id)
    ds = await create_dataset(api, w.owner, w.app_id)
    await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(png(variant(i))), "datasetIds": [ds]} for i in range(5)]
    )
    concepts = [
        await api.concept(w.owner, w.app_id, n)
        for n in ("person", "cat", "cup", "motorcycle", "Egyptian cat", "espresso")
    ]
    served = {
        "general-object-detector": await served_model(
            api,
            w.owner,
            w.app_id,
            "general-object-detector",
            {"url": server.url, "model_name": "nanodet", "preprocess": "nanodet", "batch_size": 1},
        ),
        "general-image-classifier": await served_model(
            api,
            w.owner,
            w.app_id,
            "general-image-classifier",
            {
                "url": server.url,
                "model_name": "efficientnet",
                "preprocess": "efficientnet_lite0",
                "binary_data": True,
            },
        ),
    }
    for builtin, model_id in served.items():
        # five images, one per sample: the detector's raw outputs are 450k floats an image,
        # which KServe's server encodes as JSON lists (seconds an image on a loaded 2-core box)
        wanted = concepts[:4] if builtin == "general-object-detector" else concepts[4:]
        fields = {
            "appId": w.app_id,
            "datasetId": ds,
            "conceptIds": wanted,
            "thresholds": {"lower": 0.2, "upper": 0.6},
        }
        local = await create_task(api, w.owner, modelId=models[builtin], **fields)
        remote = await create_task(api, w.owner, modelId=model_id, **fields)
        await drain()
        for task in (local, remote):
            assert (await get_task(api, w.owner, task["id"]))["status"] == "DONE"
        want = await annotations_of(local["id"])
        assert want, builtin
        assert_same_labels(await annotations_of(remote["id"]), want)


async def test_a_task_survives_a_failing_server_killed_and_restarted(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    """200 images; the server fails every 10th request and is killed, then restarted, mid-task.
    The task closes with failed inputs, typed; retrying them ends with every input labeled
    exactly as the built-in model labels them undisturbed."""
    images = [variant(i) for i in range(200)]
    builtin = get_adapter("general-image-classifier")
    top = {p[0].extra["name"] for p in builtin.predict([AdapterInput(image=i) for i in images])}
    w = await world(api)
    models = await builtin_ids(api, w.owner, w.app_id)
    ds = await create_dataset(api, w.owner, w.app_id)
    await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(png(i)), "datasetIds": [ds]} for i in images]
    )
    concepts = [await api.concept(w.owner, w.app_id, n) for n in sorted(top)]
    fields = {
        "appId": w.app_id,
        "datasetId": ds,
        "conceptIds": concepts,
        "thresholds": {"lower": 0.1, "upper": 0.5},
    }

    undisturbed = await create_task(api, w.owner, modelId=models["general-image-classifier"], **fields)
    await drain()
    want = await annotations_of(undisturbed["id"])

    server = kserve_server(tmp_path / "kserve.log", fail_every=10).start()
    try:
        config = {
            "url": server.url,
            "model_name": "efficientnet",
            "preprocess": "efficientnet_lite0",
            "batch_size": 2,
            "max_concurrency": 2,
            "retries": 1,
            "backoff_s": 0.05,
            "timeout_s": 60.0,
        }
        model = await served_model(api, w.owner, w.app_id, "general-image-classifier", config)
        task = await create_task(api, w.owner, modelId=model, **fields)
        await drain(max_burst_jobs=12)
        server.kill()
        await drain(max_burst_jobs=4)
        server.start()
        await drain()
        state = await get_task(api, w.owner, task["id"])
        assert state["status"] == "DONE"
        codes = {t.code for t in await TaskInput.find({"task_id": task["id"], "state": "FAILED"}).to_list()}
        assert codes == {"INFERENCE_SERVER_UNAVAILABLE", "INFERENCE_SERVER_ERROR"}
        assert state["metrics"]["failed"] > 0
        for _ in range(12):  # each retry fails again about a tenth of what it sends
            if state["metrics"]["failed"] == 0:
                break
            data = await api.gql(w.owner, RETRY, id=task["id"])
            assert data["retryFailedInputs"]["__typename"] == "TaskRunSuccess", data
            await drain()
            state = await get_task(api, w.owner, task["id"])
            assert state["status"] == "DONE"
    finally:
        server.stop()
    assert state["metrics"]["failed"] == 0
    assert state["metrics"]["processed"] == 200
    await assert_metrics_match_recount(task["id"])
    assert_same_labels(await annotations_of(task["id"]), want)


async def test_a_served_model_on_encoded_images_labels_like_the_builtin(
    api: Api,
    asgi_app: Starlette,
    drain: Drain,
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``input.format: encoded_image``: the uploaded PNG and JPEG files go to the server as
    they are, undecoded by the worker (it reads their headers only); the server decodes and
    preprocesses. A file damaged after upload fails alone, with the same code both ways."""
    w = await world(api)
    models = await builtin_ids(api, w.owner, w.app_id)
    ds = await create_dataset(api, w.owner, w.app_id)
    files = [png(variant(i)) if i % 2 else jpeg(variant(i)) for i in range(9)]
    added = await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(f), "datasetIds": [ds]} for f in files]
    )
    damaged = added[8]
    doc = await Input.get(damaged)
    assert doc is not None and doc.blob_key
    asgi_app.state.runtime.blobs._path(doc.blob_key).write_bytes(files[8][: len(files[8]) // 2])
    decoded: list[int] = []
    decode_image = load.decode_image
    monkeypatch.setattr(load, "decode_image", lambda *a: decoded.append(1) or decode_image(*a))
    config = {
        "url": server.url,
        "model_name": "efficientnet-image",
        "preprocess": "efficientnet_lite0",
        "input": {"format": "encoded_image"},
        "batch_size": 3,
    }
    model = await served_model(api, w.owner, w.app_id, "general-image-classifier", config)
    concepts = [await api.concept(w.owner, w.app_id, n) for n in ("Egyptian cat", "espresso", "tabby")]
    fields = {
        "appId": w.app_id,
        "datasetId": ds,
        "conceptIds": concepts,
        "thresholds": {"lower": 0.05, "upper": 0.6},
    }
    remote = await create_task(api, w.owner, modelId=model, **fields)
    await drain()
    assert decoded == []  # the worker decoded none of them
    local = await create_task(api, w.owner, modelId=models["general-image-classifier"], **fields)
    await drain()
    assert len(decoded) == 9
    for task in (local, remote):
        done = await get_task(api, w.owner, task["id"])
        assert done["status"] == "DONE"
        assert (done["metrics"]["processed"], done["metrics"]["failed"]) == (9, 1)
        failed = await TaskInput.find({"task_id": task["id"], "state": "FAILED"}).to_list()
        assert [(t.input_id, t.code) for t in failed] == [(damaged, "IMAGE_UNDECODABLE")]
    want = await annotations_of(local["id"])
    assert want
    assert_same_labels(await annotations_of(remote["id"]), want)


async def test_only_the_inputs_of_failed_requests_fail(api: Api, tmp_path: Path) -> None:
    """The task run's predict step over 6 inputs, one image a request, one request at a time,
    every 3rd answered HTTP 500: the 3rd and 6th inputs fail with the server's code, the other
    4 keep the built-in's predictions (their batch-mates' failure does not take them down)."""
    images = [variant(i) for i in range(6)]
    loaded = [
        Loaded(
            Input(id=f"in{i}", app_id="app", kind=InputKind.IMAGE), AdapterInput(image=img, encoded=png(img))
        )
        for i, img in enumerate(images)
    ]
    server = kserve_server(tmp_path / "kserve.log", fail_every=3).start()
    try:
        config = {
            "url": server.url,
            "model_name": "efficientnet-image",
            "preprocess": "efficientnet_lite0",
            "input": {"format": "encoded_image"},
            "batch_size": 1,
            "max_concurrency": 1,
            "retries": 0,
        }
        model = RunModel("served", "CLASSIFIER", "kserve-v2", config, False, {})
        outputs, failures = await predict(
            [model], loaded, [], settings=Settings(inference_allow_private_networks=True)
        )
    finally:
        server.stop()
    assert {k: f.code for k, f in failures.items()} == {
        "in2": "INFERENCE_SERVER_ERROR",
        "in5": "INFERENCE_SERVER_ERROR",
    }
    want = get_adapter("general-image-classifier").predict([AdapterInput(image=i) for i in images])
    kept = ["in0", "in1", "in3", "in4"]
    assert sorted(outputs) == kept
    assert_same([[p for _, p in outputs[k]] for k in kept], [want[int(k[2:])] for k in kept])


async def test_a_served_instance_segmenter_labels_like_the_same_file_uploaded(
    api: Api, http: httpx.AsyncClient, drain: Drain, tmp_path: Path
) -> None:
    """``generic.output: yolov8_seg``: a YOLOv8-seg model on the server makes the polygon
    annotations its file makes uploaded (the same decoding, ``onnx_layouts``)."""
    from tests.models.onnx_files import constant_model
    from tests.models.test_onnx_layouts import seg_outputs
    from tests.models.upload_helpers import upload_model

    data = constant_model(seg_outputs())
    (tmp_path / "seg.onnx").write_bytes(data)
    process = kserve_server(tmp_path / "server.log", models={"seg": tmp_path / "seg.onnx"}).start()
    try:
        w = await world(api)
        ds = await create_dataset(api, w.owner, w.app_id)
        images = [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 128, 3), np.uint8)]  # the second letterboxed
        await add_inputs(
            api, w.owner, w.app_id, [{"imageBase64": b64(png(i)), "datasetIds": [ds]} for i in images]
        )
        names = [{"id": n, "name": n} for n in ("a", "cat", "c")]
        uploaded = await upload_model(http, w.owner, w.app_id, data, kind="SEGMENTER", concepts=names)
        assert uploaded["__typename"] == "ModelSuccess", uploaded
        made = await api.gql(
            w.owner,
            """mutation($i: CreateModelInput!) { createModel(input: $i) {
                 __typename ... on ModelSuccess { model { id } } ... on Error { code field message } } }""",
            i={
                "appId": w.app_id,
                "name": "served segmenter",
                "kind": "SEGMENTER",
                "adapter": "kserve-v2",
                "config": {
                    "url": process.url,
                    "model_name": "seg",
                    "labels": ["a", "cat", "c"],
                    "generic": {"input_size": [64, 64], "resize": "letterbox", "output": "yolov8_seg"},
                },
                "concepts": names,
            },
        )
        assert made["createModel"]["__typename"] == "ModelSuccess", made
        cat = await api.concept(w.owner, w.app_id, "cat")
        fields = {
            "appId": w.app_id,
            "datasetId": ds,
            "conceptIds": [cat],
            "taskType": "POLYGON_DETECTION",
            "thresholds": {"lower": 0.5, "upper": 0.8},
        }
        local = await create_task(api, w.owner, modelId=uploaded["model"]["id"], **fields)
        remote = await create_task(api, w.owner, modelId=made["createModel"]["model"]["id"], **fields)
        await drain()
    finally:
        process.stop()

    for task in (local, remote):
        assert (await get_task(api, w.owner, task["id"]))["status"] == "DONE"
    want = {a.input_id: a for a in await annotations_of(local["id"])}
    got = {a.input_id: a for a in await annotations_of(remote["id"])}
    assert len(want) == 2 and want.keys() == got.keys()
    for input_id, a in want.items():
        b = got[input_id]
        assert (b.concept_id, b.status, b.box) == (a.concept_id, a.status, None)
        assert b.confidence == pytest.approx(a.confidence, abs=1e-6)
        assert a.polygon is not None and b.polygon is not None and len(a.polygon) >= 8
        assert np.allclose(b.polygon, a.polygon, atol=1e-5)
