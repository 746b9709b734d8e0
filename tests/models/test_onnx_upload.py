"""Uploading ONNX models over the API: stored as a checked, pinned blob and a first version;
every broken upload gets its typed error and leaves nothing behind."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.core.blob_pins import BlobPin
from app.embedded import free_port
from app.models.models import ModelEntry, ModelVersion
from app.settings import Settings
from tests.factories import Api, world
from tests.inputs.helpers import blob_files
from tests.models.onnx_files import constant_model, yolov8_output
from tests.models.upload_helpers import CREATE, concepts_input, upload_model, upload_version

NAMES = "{0: 'person', 1: 'bicycle', 2: 'car'}"


def yolo(n_classes: int = 3, names: str | None = NAMES, **kwargs: Any) -> bytes:
    out = yolov8_output([(32, 32, 16, 8)], [1], [0.9], n_classes)
    return constant_model({"output0": out}, names=names, **kwargs)


def files_in(root: Path) -> int:
    return blob_files(root) if root.exists() else 0


async def stored(settings: Settings) -> tuple[int, int, int, int]:
    """Models that are not built-in, versions, pins and blob files."""
    return (
        len(await ModelEntry.find({"builtin": False}).to_list()),
        len(await ModelVersion.find_all().to_list()),
        len(await BlobPin.find_all().to_list()),
        files_in(Path(settings.resolved_blob_dir)),
    )


async def test_upload_stores_a_checked_first_version_with_concepts_from_metadata(
    api: Api, http: httpx.AsyncClient, settings: Settings
) -> None:
    w = await world(api)
    before = await stored(settings)
    data = yolo()
    result = await upload_model(http, w.owner, w.app_id, data)
    assert result["__typename"] == "ModelSuccess", result
    model = result["model"]
    assert (model["adapter"], model["kind"], model["conceptsCount"]) == ("onnx", "DETECTOR", 3)
    assert model["activeVersion"]["number"] == 1 and model["activeVersion"]["layout"] == "yolov8"
    assert model["activeVersion"]["sizeBytes"] == len(data)
    assert [v["number"] for v in model["versions"]["nodes"]] == [1]
    assert model["config"]["blob_key"] == model["activeVersion"]["sha256"]
    concepts = await api.gql(
        w.owner,
        "query($id: ID!) { model(id: $id) { concepts(first: 5) { nodes { id name } } } }",
        id=model["id"],
    )
    assert [c["name"] for c in concepts["model"]["concepts"]["nodes"]] == ["person", "bicycle", "car"]
    after = await stored(settings)
    assert after[:3] == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert after[3] >= before[3]


async def test_request_concepts_win_and_must_match_the_outputs(api: Api, http: httpx.AsyncClient) -> None:
    w = await world(api)
    ok = await upload_model(http, w.owner, w.app_id, yolo(), concepts=concepts_input(["cat", "dog", "bird"]))
    assert ok["__typename"] == "ModelSuccess", ok
    assert ok["model"]["config"]["labels"] == ["cat", "dog", "bird"]


def _not_onnx() -> bytes:
    return b"this is not a model at all"


def _truncated() -> bytes:
    data = yolo()
    return data[: len(data) // 2]


def _nan() -> bytes:
    out = yolov8_output([(32, 32, 16, 8)], [1], [0.9], 3)
    out[0, 1, 0] = np.nan
    return constant_model({"output0": out}, names=NAMES)


def _unknown_layout() -> bytes:
    return constant_model({f"o{k}": np.zeros((1, 2), np.float32) for k in range(6)}, names=NAMES)


BROKEN = {
    "not onnx": (_not_onnx, {}, "MODEL_LOAD_FAILED", "file"),
    "truncated": (_truncated, {}, "MODEL_LOAD_FAILED", "file"),
    "two inputs": (lambda: yolo(inputs=2), {}, "UNSUPPORTED_MODEL_LAYOUT", "file"),
    "one channel": (lambda: yolo(input_shape=(1, 1, 64, 64)), {}, "UNSUPPORTED_MODEL_LAYOUT", "file"),
    "unknown layout": (_unknown_layout, {}, "UNSUPPORTED_MODEL_LAYOUT", "file"),
    "NaN output": (_nan, {}, "MODEL_OUTPUT_INVALID", "file"),
    "concept count": (
        yolo,
        {"concepts": concepts_input(["a", "b"])},
        "CONCEPT_COUNT_MISMATCH",
        "concepts",
    ),
    "no concepts": (lambda: yolo(names=None), {}, "REQUIRED", "concepts"),
    "wrong kind": (yolo, {"kind": "TEXT_CLASSIFIER"}, "ADAPTER_MISMATCH", "kind"),
    "segmenter without masks": (yolo, {"kind": "SEGMENTER"}, "UNSUPPORTED_MODEL_LAYOUT", "file"),
    "wrong adapter": (yolo, {"adapter": "general-object-detector"}, "ADAPTER_MISMATCH", "adapter"),
    "config wrong type": (yolo, {"config": {"scale": "big"}}, "WRONG_TYPE", "config.scale"),
    "config set by upload": (yolo, {"config": {"labels": ["x"]}}, "UNKNOWN_KEY", "config.labels"),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_broken_upload_gets_its_typed_error_and_stores_nothing(
    case: str, api: Api, http: httpx.AsyncClient, settings: Settings
) -> None:
    make, options, code, field = BROKEN[case]
    w = await world(api)
    before = await stored(settings)
    result = await upload_model(http, w.owner, w.app_id, make(), **options)
    assert (result["__typename"], result.get("code"), result.get("field")) == (
        "ValidationError",
        code,
        field,
    ), result
    assert await stored(settings) == before


async def test_a_file_over_the_size_limit_is_refused(
    api: Api, http: httpx.AsyncClient, settings: Settings
) -> None:
    w = await world(api)
    before = await stored(settings)
    data = yolo()
    limit = settings.max_model_bytes
    settings.max_model_bytes = len(data) - 1
    try:
        result = await upload_model(http, w.owner, w.app_id, data)
    finally:
        settings.max_model_bytes = limit
    assert (result["code"], result["field"]) == ("TOO_LARGE", "file"), result
    assert await stored(settings) == before


async def test_onnx_adapter_without_a_file_is_refused(api: Api) -> None:
    w = await world(api)
    data = await api.gql(
        w.owner,
        CREATE,
        input={"appId": w.app_id, "name": "m", "kind": "DETECTOR", "adapter": "onnx", "config": {}},
    )
    result = data["createModel"]
    assert (result["code"], result["field"]) == ("REQUIRED", "file"), result


@pytest.fixture
def served() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", files
    finally:
        server.shutdown()
        server.server_close()


async def test_upload_from_a_url_and_a_dead_url(
    api: Api, settings: Settings, served: tuple[str, dict[str, bytes]]
) -> None:
    base, files = served
    files["/m.onnx"] = yolo()
    w = await world(api)
    data = await api.gql(
        w.owner,
        CREATE,
        input={
            "appId": w.app_id,
            "name": "m",
            "kind": "DETECTOR",
            "adapter": "onnx",
            "url": f"{base}/m.onnx",
        },
    )
    model = data["createModel"]["model"]
    assert model["activeVersion"]["sourceUrl"] == f"{base}/m.onnx"
    before = await stored(settings)
    data = await api.gql(
        w.owner,
        CREATE,
        input={"appId": w.app_id, "name": "m", "kind": "DETECTOR", "adapter": "onnx", "url": f"{base}/gone"},
    )
    assert (data["createModel"]["code"], data["createModel"]["field"]) == ("INVALID_URL", "url")
    assert await stored(settings) == before


async def test_url_rules_of_image_urls_apply(
    api: Api, settings: Settings, served: tuple[str, dict[str, bytes]]
) -> None:
    base, files = served
    files["/m.onnx"] = yolo()
    w = await world(api)
    settings.fetch_allow_private_networks = False
    try:
        data = await api.gql(
            w.owner,
            CREATE,
            input={
                "appId": w.app_id,
                "name": "m",
                "kind": "DETECTOR",
                "adapter": "onnx",
                "url": f"{base}/m.onnx",
            },
        )
    finally:
        settings.fetch_allow_private_networks = True
    result = data["createModel"]
    assert (result["code"], result["field"]) == ("INVALID_URL", "url") and "non-public" in result["message"]


async def test_new_versions_and_their_errors(api: Api, http: httpx.AsyncClient, settings: Settings) -> None:
    w = await world(api)
    first = await upload_model(http, w.owner, w.app_id, yolo())
    model_id = first["model"]["id"]
    out = yolov8_output([(32, 32, 16, 8)], [2], [0.7], 3)
    second = await upload_version(http, w.owner, model_id, constant_model({"output0": out}))
    assert second["__typename"] == "ModelVersionSuccess", second
    assert second["version"]["number"] == 2
    assert second["model"]["activeVersion"]["id"] == second["version"]["id"]
    assert [v["number"] for v in second["model"]["versions"]["nodes"]] == [1, 2]
    # no names metadata and no concepts: the model keeps its concepts
    assert second["model"]["config"]["labels"] == ["person", "bicycle", "car"]

    before = await stored(settings)
    broken = await upload_version(http, w.owner, model_id, _nan())
    assert (broken["code"], broken["field"]) == ("MODEL_OUTPUT_INVALID", "file")
    mismatch = await upload_version(http, w.owner, model_id, yolo(n_classes=4, names=None))
    assert (mismatch["code"], mismatch["field"]) == ("CONCEPT_COUNT_MISMATCH", "concepts")
    unknown = await upload_version(http, w.owner, "no-such-model", yolo())
    assert (unknown["code"], unknown["field"]) == ("NOT_FOUND", "modelId")
    other = await world(api)
    theirs = await upload_model(http, other.owner, other.app_id, yolo())
    foreign = await upload_version(http, w.owner, theirs["model"]["id"], yolo())
    assert (foreign["code"], foreign["field"]) == ("NOT_FOUND", "modelId")
    builtin = await api.gql(
        w.owner, "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id } } }", a=w.app_id
    )
    not_uploaded = await upload_version(http, w.owner, builtin["models"]["nodes"][0]["id"], yolo())
    assert (not_uploaded["code"], not_uploaded["field"]) == ("ADAPTER_MISMATCH", "modelId")
    after = await stored(settings)
    assert after[:3] == (before[0] + 1, before[1] + 1, before[2] + 1)  # only the other app's upload


async def test_uploaded_config_changes_only_with_a_version(api: Api, http: httpx.AsyncClient) -> None:
    w = await world(api)
    model_id = (await upload_model(http, w.owner, w.app_id, yolo()))["model"]["id"]
    data = await api.gql(
        w.owner,
        """mutation($i: UpdateModelInput!) { updateModel(input: $i) { __typename
             ... on Error { code field } } }""",
        i={"id": model_id, "config": {"min_confidence": 0.5}},
    )
    assert data["updateModel"] == {
        "__typename": "ValidationError",
        "code": "ADAPTER_MISMATCH",
        "field": "config",
    }


async def test_deleting_a_model_removes_its_versions_pins_and_files(
    api: Api, http: httpx.AsyncClient, settings: Settings
) -> None:
    w = await world(api)
    before = await stored(settings)
    first = (await upload_model(http, w.owner, w.app_id, yolo()))["model"]
    second = await upload_version(http, w.owner, first["id"], yolo(names="{0: 'a', 1: 'b', 2: 'c'}"))
    keys = [first["activeVersion"]["sha256"], second["model"]["activeVersion"]["sha256"]]
    blobs = Path(settings.resolved_blob_dir)
    assert all((blobs / k[:2] / k[2:]).exists() for k in keys)
    data = await api.gql(
        w.owner, "mutation($id: ID!) { deleteModel(id: $id) { __typename } }", id=first["id"]
    )
    assert data["deleteModel"]["__typename"] == "DeleteSuccess"
    assert (await stored(settings))[:3] == before[:3]
    assert not any((blobs / k[:2] / k[2:]).exists() for k in keys)
