"""The built-in models through the whole pipeline, on images that ship with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as samples

from app.annotations.models import AnnotationStatus
from tests.factories import Api, world
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


async def test_image_classifier_labels_the_cat_and_the_coffee(api: Api, drain: Drain) -> None:
    w = await world(api)
    models = await builtin(api, w.owner, w.app_id)
    cat = await api.concept(w.owner, w.app_id, "cat")
    coffee = await api.concept(w.owner, w.app_id, "coffee")
    ds = await create_dataset(api, w.owner, w.app_id)
    cat_input, coffee_input = await add_inputs(
        api,
        w.owner,
        w.app_id,
        [
            {"imageBase64": b64(jpeg(samples.chelsea())), "datasetIds": [ds]},
            {"imageBase64": b64(jpeg(samples.coffee())), "datasetIds": [ds]},
        ],
    )
    mapping = [{"modelConceptId": m, "conceptId": cat} for m in ("n02124075", "n02123045", "n02123159")] + [
        {"modelConceptId": m, "conceptId": coffee} for m in ("n07920052", "n07930864", "n03063599")
    ]
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=models["general-image-classifier"],
        conceptIds=[cat, coffee],
        conceptMapping=mapping,
        thresholds={"lower": 0.2, "upper": 0.6},
    )
    await drain()
    assert (await get_task(api, w.owner, task["id"]))["status"] == "DONE"
    labels = {(a.input_id, a.concept_id): a for a in await annotations_of(task["id"])}
    assert labels[(cat_input, cat)].status == AnnotationStatus.SUCCESS
    assert labels[(coffee_input, coffee)].status == AnnotationStatus.SUCCESS
    assert (cat_input, coffee) not in labels and (coffee_input, cat) not in labels


async def test_detector_and_text_regions_in_one_workflow(api: Api, drain: Drain) -> None:
    w = await world(api)
    models = await builtin(api, w.owner, w.app_id)
    person = await api.concept(w.owner, w.app_id, "person")  # COCO's own name: produced directly
    text = await api.concept(w.owner, w.app_id, "text")
    flow = await api.gql(
        w.owner,
        """mutation($a: ID!, $m: [ID!]!) { createWorkflow(input: {appId: $a, name: "detect", modelIds: $m}) {
             ... on WorkflowSuccess { workflow { id } } } }""",
        a=w.app_id,
        m=[models["general-object-detector"], models["text-region-detector"]],
    )
    ds = await create_dataset(api, w.owner, w.app_id)
    astronaut, page = await add_inputs(
        api,
        w.owner,
        w.app_id,
        [
            {"imageBase64": b64(jpeg(samples.astronaut())), "datasetIds": [ds]},
            {"imageBase64": b64(jpeg(np.stack([samples.page()] * 3, axis=-1))), "datasetIds": [ds]},
        ],
    )
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        workflowId=flow["createWorkflow"]["workflow"]["id"],
        taskType="BOUNDING_BOX_DETECTION",
        conceptIds=[person, text],
        thresholds={"lower": 0.3, "upper": 0.6},
    )
    await drain()
    anns = await annotations_of(task["id"])
    people = [a for a in anns if a.input_id == astronaut and a.concept_id == person]
    assert people and all(a.box is not None and 0 <= a.box[0] < a.box[2] <= 1 for a in people)
    regions = [a for a in anns if a.input_id == page and a.concept_id == text]
    assert len(regions) >= 3 and all(a.polygon is not None and len(a.polygon) >= 6 for a in regions)


async def test_text_inputs_get_zero_shot_topics(api: Api, drain: Drain) -> None:
    w = await world(api)
    models = await builtin(api, w.owner, w.app_id)
    sports = await api.concept(w.owner, w.app_id, "sports")
    finance = await api.concept(w.owner, w.app_id, "finance")
    ds = await create_dataset(api, w.owner, w.app_id)
    match, market = await add_inputs(
        api,
        w.owner,
        w.app_id,
        [
            {"text": "The striker scored twice and the home team won the cup final.", "datasetIds": [ds]},
            {"text": "Shares fell sharply after the central bank raised interest rates.", "datasetIds": [ds]},
        ],
    )
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=models["text-topic-classifier"],
        conceptIds=[sports, finance],
        thresholds={"lower": 0.5, "upper": 0.8},
    )
    await drain()
    best = {}
    for a in await annotations_of(task["id"]):
        if a.confidence > best.get(a.input_id, (None, 0.0))[1]:
            best[a.input_id] = (a.concept_id, a.confidence)
    assert best[match][0] == sports and best[market][0] == finance
