"""A labeling task's run embeds what it labels: the regions it creates and the inputs it looked at."""

from __future__ import annotations

from skimage import data as samples

from app.search import embed
from app.search.models import Embedding, RefKind
from tests.factories import Api, world
from tests.registry.factories import dataset
from tests.review.helpers import CREATE
from tests.search.helpers import CAT, CAT_FLIPPED, SIMILAR_INPUTS, add_inputs, ids, png_base64, similar
from tests.tasks_engine.conftest import Drain


async def test_a_detection_task_run_embeds_its_regions_and_inputs(api: Api, drain: Drain) -> None:
    w = await world(api)
    cat_c = await api.concept(w.owner, w.app_id, "cat")
    ds = await dataset(w.app_id)
    photos = [CAT, CAT_FLIPPED, samples.coffee()]
    inputs = await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": png_base64(p), "datasetIds": [ds]} for p in photos]
    )
    made = await api.gql(
        w.owner,
        """mutation($i: CreateModelInput!) { createModel(input: $i) { ... on ModelSuccess { model { id } } } }""",
        i={
            "appId": w.app_id,
            "name": "boxes",
            "kind": "DETECTOR",
            "adapter": "null",
            "config": {
                "predictions": [
                    {
                        "concept": "cat",
                        "confidence": 0.95,
                        "region": {"top": 0.1, "left": 0.2, "bottom": 0.95, "right": 0.8},
                    }
                ]
            },
            "concepts": [{"id": "cat", "name": "cat"}],
        },
    )
    body = {
        "appId": w.app_id,
        "name": "Boxes",
        "datasetId": ds,
        "modelId": made["createModel"]["model"]["id"],
        "conceptIds": [cat_c],
        "taskType": "BOUNDING_BOX_DETECTION",
        "thresholds": {"lower": 0.5, "upper": 0.9},
        "start": True,
    }
    task = (await api.gql(w.owner, CREATE, i=body))["createLabelingTask"]
    assert task["__typename"] == "LabelingTaskSuccess", task
    await drain()
    stored = await Embedding.find({"app_id": w.app_id, "deleted": False}).to_list()
    assert sum(e.kind == RefKind.ANNOTATION for e in stored) == 3
    assert {e.ref_id for e in stored if e.kind == RefKind.INPUT} == set(inputs)
    assert {e.model for e in stored} == {embed.IMAGE_MODEL.key}
    found = (await api.gql(w.owner, SIMILAR_INPUTS, id=inputs[0]))["similarInputs"]
    assert ids(found) == [inputs[1], inputs[2]]
    cat_region = next(e.ref_id for e in stored if e.kind == RefKind.ANNOTATION and e.input_id == inputs[0])
    neighbours = await similar(api, w.owner, cat_region, f={"taskIds": [task["labelingTask"]["id"]]})
    assert [e["node"]["inputId"] for e in neighbours["edges"]] == [inputs[1], inputs[2]]
