"""A classifier task's own pass gives the search its input vectors: no second decode, no second
model run, and the same vectors the embedding job would have computed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from app.inputs.models import Input
from app.models.adapters import AdapterInput, get_adapter
from app.search import embed, work
from app.search.codec import decode_many
from app.search.models import Embedding, RefKind
from tests.factories import Api, world
from tests.search.helpers import CAT, CAT_FLIPPED, SIMILAR_INPUTS, add_inputs, ids
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import b64, builtin, create_dataset, create_task, jpeg

pytestmark = pytest.mark.slow


class Calls:
    """Counts the separate embedding path's calls (and lets them run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        self.texts = 0
        images, texts = embed.embed_images, embed.embed_texts

        def counted_images(items: Any) -> np.ndarray:
            self.images += len(items)
            return images(items)

        def counted_texts(items: Any) -> np.ndarray:
            self.texts += len(items)
            return texts(items)

        monkeypatch.setattr(embed, "embed_images", counted_images)
        monkeypatch.setattr(embed, "embed_texts", counted_texts)


async def stored_inputs(app_id: str) -> dict[str, tuple[Embedding, np.ndarray]]:
    docs = await Embedding.find({"app_id": app_id, "kind": RefKind.INPUT, "deleted": False}).to_list()
    return {
        d.ref_id: (d, decode_many([(d.vector or b"", d.scale)], d.dim)[0])
        for d in docs
        if d.vector is not None
    }


async def test_an_image_classifier_task_stores_its_own_features_as_the_input_vectors(
    api: Api, drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await world(api)
    models = await builtin(api, w.owner, w.app_id)
    cat = await api.concept(w.owner, w.app_id, "cat")
    ds = await create_dataset(api, w.owner, w.app_id)
    big = np.asarray(Image.fromarray(samples.astronaut()).resize((1600, 1600)))  # decoded smaller
    photos = [CAT, CAT_FLIPPED, samples.coffee(), big]
    inputs = await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(jpeg(p)), "datasetIds": [ds]} for p in photos]
    )
    calls = Calls(monkeypatch)
    await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=models["general-image-classifier"],
        conceptIds=[cat],
        conceptMapping=[{"modelConceptId": "n02124075", "conceptId": cat}],
        thresholds={"lower": 0.2, "upper": 0.6},
    )
    await drain()

    assert calls.images == 0  # the embedding job found every input's vector current
    stored = await stored_inputs(w.app_id)
    assert set(stored) == set(inputs)
    assert {d.model for d, _ in stored.values()} == {embed.IMAGE_MODEL.key}
    docs = {d.id: d for d in await Input.find({"_id": {"$in": inputs}}).to_list()}
    assert all(stored[i][0].source == docs[i].blob_key for i in inputs)
    # the same vectors as the separate path (decode at the embedding size, features run)
    separate = embed.embed_images([(jpeg(p), None) for p in photos])
    for input_id, want in zip(inputs, separate, strict=True):
        assert float(stored[input_id][1] @ want) > 0.995
    # and nothing is left for the job to do
    assert await work.embed_inputs(object(), inputs) == 0
    found = (await api.gql(w.owner, SIMILAR_INPUTS, id=inputs[0]))["similarInputs"]
    assert ids(found)[0] == inputs[1]


async def test_a_center_crop_classifier_leaves_the_vectors_to_the_embedding_job(
    api: Api, drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its features differ from the default preprocessing's: they must not be stored."""
    w = await world(api)
    cat = await api.concept(w.owner, w.app_id, "cat")
    made = await api.gql(
        w.owner,
        """mutation($i: CreateModelInput!) { createModel(input: $i) { ... on ModelSuccess { model { id } } } }""",
        i={
            "appId": w.app_id,
            "name": "cropped",
            "kind": "CLASSIFIER",
            "adapter": "general-image-classifier",
            "config": {"center_crop": True},
            "concepts": [{"id": "n02124075", "name": "Egyptian cat"}],
        },
    )
    ds = await create_dataset(api, w.owner, w.app_id)
    inputs = await add_inputs(
        api,
        w.owner,
        w.app_id,
        [{"imageBase64": b64(jpeg(p)), "datasetIds": [ds]} for p in (CAT, CAT_FLIPPED)],
    )
    calls = Calls(monkeypatch)
    await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=made["createModel"]["model"]["id"],
        conceptIds=[cat],
        conceptMapping=[{"modelConceptId": "n02124075", "conceptId": cat}],
        thresholds={"lower": 0.2, "upper": 0.6},
    )
    await drain()
    assert calls.images == 2
    stored = await stored_inputs(w.app_id)
    assert set(stored) == set(inputs)
    separate = embed.embed_images([(jpeg(CAT), None)])[0]
    assert float(stored[inputs[0]][1] @ separate) > 0.995


async def test_a_text_topic_task_stores_its_sentence_embeddings(
    api: Api, drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await world(api)
    models = await builtin(api, w.owner, w.app_id)
    sports = await api.concept(w.owner, w.app_id, "sports")
    finance = await api.concept(w.owner, w.app_id, "finance")
    ds = await create_dataset(api, w.owner, w.app_id)
    texts = [
        "The striker scored twice and the home team won the cup final.",
        "Shares fell sharply after the central bank raised interest rates.",
        "The goalkeeper saved a penalty in the last minute of the match.",
    ]
    inputs = await add_inputs(api, w.owner, w.app_id, [{"text": t, "datasetIds": [ds]} for t in texts])
    calls = Calls(monkeypatch)
    await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=models["text-topic-classifier"],
        conceptIds=[sports, finance],
        thresholds={"lower": 0.5, "upper": 0.8},
    )
    await drain()
    assert calls.texts == 0
    stored = await stored_inputs(w.app_id)
    assert set(stored) == set(inputs)
    assert {d.model for d, _ in stored.values()} == {embed.TEXT_MODEL.key}
    for input_id, want in zip(inputs, embed.embed_texts(texts), strict=True):
        assert float(stored[input_id][1] @ want) > 0.995
    assert await work.embed_inputs(object(), inputs) == 0
    found = (await api.gql(w.owner, SIMILAR_INPUTS, id=inputs[0]))["similarInputs"]
    assert ids(found)[0] == inputs[2]


def test_one_session_gives_the_scores_and_the_features_of_any_config() -> None:
    plain = get_adapter("general-image-classifier")
    other = get_adapter("general-image-classifier", {"top_k": 2})
    images = [CAT, samples.coffee()]
    preds, features = other.predict_with_features([AdapterInput(image=i) for i in images])
    assert [p[0].concept for p in preds] == [
        p[0].concept for p in plain.predict([AdapterInput(image=i) for i in images])
    ]
    assert len(preds[0]) == 2
    np.testing.assert_allclose(features, plain.features(images), rtol=1e-4, atol=1e-4)
    assert other._session is plain._session


def test_topic_models_of_any_config_share_one_minilm_session() -> None:
    plain = get_adapter("text-topic-classifier")
    other = get_adapter("text-topic-classifier", {"temperature": 0.1, "template": "About {name}."})
    texts = ["The striker scored twice.", "Shares fell sharply."]
    _, embedded = other.predict_with_features([AdapterInput(text=t) for t in texts], ["sports", "finance"])
    np.testing.assert_allclose(embedded, plain.embed(texts), rtol=1e-5, atol=1e-5)
    assert other._session is plain._session
