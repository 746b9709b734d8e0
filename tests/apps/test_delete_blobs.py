"""Deleting an app frees the blobs only it held: its inputs' images, its dataset versions'
images and its model files; bytes another app's input also holds stay."""

from __future__ import annotations

import hashlib

import httpx

from app.core.blob_pins import BlobPin
from app.core.blobs import LocalBlobStore
from app.settings import Settings
from tests.exports.helpers import create_version
from tests.factories import Api, world
from tests.models.onnx_files import constant_model, yolov8_output
from tests.models.upload_helpers import upload_model
from tests.tasks_engine.helpers import add_inputs, b64, create_dataset, png

DELETE_APP = "mutation($id: ID!) { deleteApp(id: $id) { __typename ... on Error { code } } }"
DELETE_INPUT = "mutation($id: ID!) { deleteInput(id: $id) { __typename ... on Error { code } } }"


def _key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_deleting_an_app_deletes_the_blobs_nothing_else_holds(
    api: Api, http: httpx.AsyncClient, settings: Settings
) -> None:
    store = LocalBlobStore(settings.resolved_blob_dir)
    w = await world(api)
    ds = await create_dataset(api, w.owner, w.app_id)
    # images of this test alone (blobs are content-addressed: other tests' images are shared)
    only, shared, versioned = (png(seed, (21, 13)) for seed in (9301, 9302, 9303))
    ids = await add_inputs(
        api,
        w.owner,
        w.app_id,
        [{"imageBase64": b64(p), "datasetIds": [ds]} for p in (only, shared, versioned)],
    )
    await create_version(api, w.owner, datasetId=ds)  # pins the three images
    gone = (await api.gql(w.owner, DELETE_INPUT, id=ids[2]))["deleteInput"]
    assert gone["__typename"] == "DeleteSuccess", gone  # only the version's pin holds it now
    await add_inputs(api, w.stranger, w.other_app_id, [{"imageBase64": b64(shared)}])
    weights = constant_model(
        {"output0": yolov8_output([(29, 31, 13, 7)], [0], [0.9], 2)}, names="{0: 'cat', 1: 'dog'}"
    )
    made = await upload_model(http, w.owner, w.app_id, weights)
    assert "model" in made, made
    for data in (only, shared, versioned, weights):
        assert await store.get(_key(data)) == data

    deleted = (await api.gql(w.owner, DELETE_APP, id=w.app_id))["deleteApp"]

    assert deleted["__typename"] == "DeleteSuccess", deleted
    assert await store.get(_key(only)) is None
    assert await store.get(_key(versioned)) is None, "the version's pin went with the app"
    assert await store.get(_key(weights)) is None, "the model file went with its version"
    assert await store.get(_key(shared)) == shared, "another app's input still holds these bytes"
    keys = [_key(d) for d in (only, shared, versioned, weights)]
    assert await BlobPin.find({"key": {"$in": keys}}).to_list() == []


async def test_a_blob_another_apps_model_or_version_holds_stays(
    api: Api, http: httpx.AsyncClient, settings: Settings
) -> None:
    store = LocalBlobStore(settings.resolved_blob_dir)
    w = await world(api)
    picture = png(9304, (21, 13))
    weights = constant_model(
        {"output0": yolov8_output([(27, 33, 11, 9)], [0], [0.9], 2)}, names="{0: 'cat', 1: 'dog'}"
    )
    for caller, app_id in ((w.owner, w.app_id), (w.stranger, w.other_app_id)):
        ds = await create_dataset(api, caller, app_id)
        (input_id,) = await add_inputs(
            api, caller, app_id, [{"imageBase64": b64(picture), "datasetIds": [ds]}]
        )
        assert "model" in await upload_model(http, caller, app_id, weights)
        await create_version(api, caller, datasetId=ds)
        if app_id == w.other_app_id:  # there, only the version's pin holds the image
            gone = (await api.gql(caller, DELETE_INPUT, id=input_id))["deleteInput"]
            assert gone["__typename"] == "DeleteSuccess", gone

    deleted = (await api.gql(w.owner, DELETE_APP, id=w.app_id))["deleteApp"]

    assert deleted["__typename"] == "DeleteSuccess", deleted
    assert await store.get(_key(picture)) == picture
    assert await store.get(_key(weights)) == weights
