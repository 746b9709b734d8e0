"""Search by text, by example image, by a box on an input; typed errors for bad requests."""

from __future__ import annotations

from skimage import data as samples

from app.search import embed
from tests.factories import Api, Caller, world
from tests.search.helpers import (
    CAT,
    CAT_FLIPPED,
    SIMILAR,
    SIMILAR_INPUTS,
    add_images,
    add_inputs,
    annotate,
    box,
    ids,
    png_base64,
)
from tests.tasks_engine.conftest import Drain

BACKFILL = """mutation($a: ID!) { backfillSearchEmbeddings(appId: $a) { __typename
  ... on BackfillSuccess { backfill { id status total done percent } } ... on Error { code message } } }"""
PROGRESS = """query($id: ID!) { searchBackfill(id: $id) { id status total done percent error } }"""

BY_IMAGE = """query($a: ID!, $img: String, $t: SearchTarget, $first: Int) {
  searchByImage(appId: $a, imageBase64: $img, target: $t, first: $first) { __typename
    ... on SimilarAnnotationConnection { edges { score node { id } } }
    ... on SimilarInputConnection { edges { score node { id } } } } }"""
BY_REGION = """query($i: ID!, $b: BoundingBoxInput!, $t: SearchTarget) {
  searchByRegion(inputId: $i, box: $b, target: $t) { __typename
    ... on SimilarAnnotationConnection { edges { score node { id } } }
    ... on SimilarInputConnection { edges { score node { id } } } } }"""

SPORTS = [
    "The football match ended two-nil after a late goal from the striker.",
    "The basketball team won the championship game in overtime.",
    "The tennis player served three aces to win the final set.",
]
OTHER = [
    "The central bank raised interest rates by half a percentage point.",
    "Simmer the onions in butter before adding the rice and the stock.",
    "The new phone has a larger battery and a faster processor.",
]


async def backfill(api: Api, owner: Caller, app_id: str, drain: Drain, total: int) -> None:
    data = await api.gql(owner, BACKFILL, a=app_id)
    started = data["backfillSearchEmbeddings"]["backfill"]
    assert started["status"] == "RUNNING" and started["total"] == total and started["done"] == 0
    busy = await api.gql(owner, BACKFILL, a=app_id)
    assert busy["backfillSearchEmbeddings"]["code"] == "BUSY"
    await drain()
    done = (await api.gql(owner, PROGRESS, id=started["id"]))["searchBackfill"]
    assert done["status"] == "DONE" and done["done"] == total and done["percent"] == 100.0


async def test_a_text_about_football_finds_the_other_sports_texts_first(api: Api, drain: Drain) -> None:
    w = await world(api)
    inputs = await add_inputs(api, w.owner, w.app_id, [{"text": t} for t in SPORTS + OTHER])
    # asked before any embedding exists: a typed error, and the work is queued
    errors = await api.gql_errors(w.owner, SIMILAR_INPUTS, id=inputs[0])
    assert errors[0]["extensions"]["code"] == "EMBEDDING_PENDING"
    await backfill(api, w.owner, w.app_id, drain, total=len(inputs))
    data = await api.gql(w.owner, SIMILAR_INPUTS, id=inputs[0], first=10)
    found = data["similarInputs"]
    assert found["embeddingModel"] == embed.TEXT_MODEL.key
    ranked = ids(found)
    assert set(ranked[:2]) == set(inputs[1:3])
    assert set(ranked[2:]) == set(inputs[3:])


async def test_images_and_texts_are_never_compared(api: Api, drain: Drain) -> None:
    w = await world(api)
    texts = await add_inputs(api, w.owner, w.app_id, [{"text": t} for t in SPORTS])
    images = await add_images(api, w.owner, w.app_id, [CAT, CAT_FLIPPED, samples.coffee()])
    await backfill(api, w.owner, w.app_id, drain, total=6)
    by_text = ids((await api.gql(w.owner, SIMILAR_INPUTS, id=texts[0]))["similarInputs"])
    by_image = ids((await api.gql(w.owner, SIMILAR_INPUTS, id=images[0]))["similarInputs"])
    assert set(by_text) == set(texts[1:])
    assert by_image == [images[1], images[2]]  # the mirror image first


async def test_an_example_image_and_a_box_on_an_input_find_the_cats(api: Api, drain: Drain) -> None:
    w = await world(api)
    cat_c = await api.concept(w.owner, w.app_id, "cat")
    cat, coffee, rocket = await add_images(api, w.owner, w.app_id, [CAT, samples.coffee(), samples.rocket()])
    cats = await annotate(
        api, w.owner, w.app_id, [{"inputId": cat, "conceptId": cat_c, "box": box(0.1, 0.35, 0.95, 0.95)}]
    )
    others = await annotate(
        api,
        w.owner,
        w.app_id,
        [
            {"inputId": coffee, "conceptId": cat_c, "box": box(0.2, 0.2, 0.8, 0.8)},
            {"inputId": rocket, "conceptId": cat_c, "box": box(0.1, 0.4, 0.9, 0.6)},
        ],
    )
    await drain()
    example = png_base64(CAT_FLIPPED[30:280, 20:300])
    data = await api.gql(w.owner, BY_IMAGE, a=w.app_id, img=example)
    assert data["searchByImage"]["__typename"] == "SimilarAnnotationConnection"
    found = [e["node"]["id"] for e in data["searchByImage"]["edges"]]
    assert found[0] == cats[0] and set(found[1:]) == set(others)
    data = await api.gql(w.owner, BY_IMAGE, a=w.app_id, img=example, t="INPUTS", first=1)
    assert [e["node"]["id"] for e in data["searchByImage"]["edges"]] == [cat]
    data = await api.gql(w.owner, BY_REGION, i=cat, b=box(0.15, 0.4, 0.9, 0.9))
    edges = data["searchByRegion"]["edges"]
    assert edges[0]["node"]["id"] == cats[0] and edges[0]["score"] > 0.8


async def test_bad_requests_get_typed_errors(api: Api, drain: Drain) -> None:
    w = await world(api)
    c = await api.concept(w.owner, w.app_id, "thing")
    (image,) = await add_images(api, w.owner, w.app_id, [samples.coffee()])
    whole, region = await annotate(
        api,
        w.owner,
        w.app_id,
        [
            {"inputId": image, "conceptId": c},
            {"inputId": image, "conceptId": c, "box": box(0.2, 0.2, 0.8, 0.8)},
        ],
    )

    async def code(query: str, **variables: object) -> str:
        errors = await api.gql_errors(w.owner, query, **variables)
        return str(errors[0]["extensions"]["code"])

    # not embedded yet: the worker has not run
    assert await code(SIMILAR, id=region) == "EMBEDDING_PENDING"
    assert await code(SIMILAR_INPUTS, id=image) == "EMBEDDING_PENDING"
    await drain()
    assert await code(SIMILAR, id=whole) == "NO_REGION"
    assert await code(SIMILAR, id=region, first=10_000) == "OUT_OF_RANGE"
    assert await code(SIMILAR, id=region, after="garbage!") == "INVALID_CURSOR"
    assert await code(SIMILAR_INPUTS, id=image, f={"statuses": ["SUCCESS"]}) == "INVALID"
    assert await code(SIMILAR_INPUTS, id="nope") == "NOT_FOUND"
    assert await code(BY_REGION, i=image, b=box(0.8, 0.2, 0.2, 0.8)) == "INVALID_GEOMETRY"
    assert await code(BY_REGION, i=image, b=box(-0.1, 0.2, 0.5, 0.8)) == "INVALID_GEOMETRY"
    assert await code(BY_IMAGE, a=w.app_id, img="bm90IGFuIGltYWdl") == "INVALID_IMAGE"
    assert await code(BY_IMAGE, a=w.app_id, img="***") == "INVALID"
    assert await code(BY_IMAGE, a=w.other_app_id, img=png_base64(CAT)) == "NOT_FOUND"
    # the stranger cannot search from this app's objects
    errors = await api.gql_errors(w.stranger, SIMILAR, id=region)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    errors = await api.gql_errors(w.stranger, BY_REGION, i=image, b=box(0.1, 0.1, 0.5, 0.5))
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
