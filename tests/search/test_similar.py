"""Smart Object Search on real images: region crops of scikit-image samples (the cat photo,
its mirror image, coffee, astronaut, rocket) embedded by a real worker, searched over GraphQL."""

from __future__ import annotations

from dataclasses import dataclass

from skimage import data as samples
from starlette.applications import Starlette

from app.annotations import store as annotation_store
from app.annotations.models import Annotation
from app.search import embed, store
from app.search.models import Embedding, RefKind
from tests.factories import Api, Caller, world
from tests.search.helpers import (
    BULK,
    CAT,
    CAT_FLIPPED,
    SIMILAR,
    add_images,
    annotate,
    box,
    ids,
    similar,
)
from tests.tasks_engine.conftest import Drain


@dataclass
class Objects:
    owner: Caller
    app_id: str
    cat_concept: str
    thing_concept: str
    cats: list[str]  # three cat crops (two on the photo, one on its mirror image)
    others: list[str]  # coffee cup, astronaut face, rocket, astronaut body
    inputs: list[str]


async def objects(api: Api, drain: Drain, owner: Caller, app_id: str) -> Objects:
    cat_c = await api.concept(owner, app_id, "cat")
    thing_c = await api.concept(owner, app_id, "thing")
    inputs = await add_images(
        api, owner, app_id, [CAT, CAT_FLIPPED, samples.coffee(), samples.astronaut(), samples.rocket()]
    )
    cat, flipped, coffee, astronaut, rocket = inputs
    cats = await annotate(
        api,
        owner,
        app_id,
        [
            {"inputId": cat, "conceptId": cat_c, "box": box(0.1, 0.35, 0.95, 0.95)},
            {"inputId": flipped, "conceptId": cat_c, "box": box(0.1, 0.05, 0.95, 0.65)},
            {"inputId": cat, "conceptId": cat_c, "box": box(0.15, 0.45, 0.8, 0.85)},
        ],
    )
    others = await annotate(
        api,
        owner,
        app_id,
        [
            {"inputId": coffee, "conceptId": thing_c, "box": box(0.2, 0.2, 0.8, 0.8)},
            {"inputId": astronaut, "conceptId": thing_c, "box": box(0.0, 0.3, 0.5, 0.7)},
            {"inputId": rocket, "conceptId": thing_c, "box": box(0.1, 0.4, 0.9, 0.6)},
            {"inputId": astronaut, "conceptId": thing_c, "box": box(0.5, 0.0, 1.0, 0.5)},
        ],
    )
    await drain()
    return Objects(owner, app_id, cat_c, thing_c, cats, others, inputs)


async def test_a_cat_crop_finds_the_other_cat_crops_before_unrelated_objects(api: Api, drain: Drain) -> None:
    w = await world(api)
    o = await objects(api, drain, w.owner, w.app_id)
    found = await similar(api, w.owner, o.cats[0], first=10)
    assert found["embeddingModel"] == embed.IMAGE_MODEL.key
    ranked = ids(found)
    assert o.cats[0] not in ranked  # the query itself is not a result
    assert set(ranked[:2]) == set(o.cats[1:])
    assert set(ranked[2:]) == set(o.others)
    scores = [e["score"] for e in found["edges"]]
    assert scores == sorted(scores, reverse=True)
    assert scores[1] > 0.8 > 0.4 > scores[2]


async def test_results_page_by_cursor_without_repeats(api: Api, drain: Drain) -> None:
    w = await world(api)
    o = await objects(api, drain, w.owner, w.app_id)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await similar(api, w.owner, o.cats[0], first=2, after=after)
        seen += ids(page)
        pages += 1
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert sorted(seen) == sorted(o.cats[1:] + o.others)
    assert seen == ids(await similar(api, w.owner, o.cats[0], first=10))


async def test_a_concept_filter_applies_inside_the_search(api: Api, drain: Drain) -> None:
    w = await world(api)
    o = await objects(api, drain, w.owner, w.app_id)
    things = await similar(api, w.owner, o.cats[0], first=2, f={"conceptIds": [o.thing_concept]})
    # the two best are cats, yet a filtered page of two is full of things, not empty
    assert len(ids(things)) == 2 and set(ids(things)) <= set(o.others)
    assert things["pageInfo"]["hasNextPage"] is True
    by_status = await similar(api, w.owner, o.cats[0], f={"statuses": ["AWAITING_REVIEW"]})
    assert ids(by_status) == []
    by_input = await similar(
        api, w.owner, o.cats[0], f={"conceptIds": [o.cat_concept], "labeledBy": [w.owner.user_id]}
    )
    assert set(ids(by_input)) == set(o.cats[1:])


async def test_another_apps_vectors_never_appear_and_its_ids_are_unknown(api: Api, drain: Drain) -> None:
    w = await world(api)
    mine = await objects(api, drain, w.owner, w.app_id)
    theirs = await objects(api, drain, w.stranger, w.other_app_id)
    found = ids(await similar(api, w.owner, mine.cats[0], first=20))
    assert set(found) == set(mine.cats[1:] + mine.others)
    errors = await api.gql_errors(w.owner, SIMILAR, id=theirs.cats[0])
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    errors = await api.gql_errors(w.owner, SIMILAR, id="no-such-annotation")
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_vectors_of_another_model_are_never_compared(api: Api, drain: Drain) -> None:
    w = await world(api)
    o = await objects(api, drain, w.owner, w.app_id)
    # a vector of the same annotation ids, made by another (pretend) model, is stored alongside
    other = [
        store.Vector(
            w.app_id, "another-model@7", RefKind.ANNOTATION, a, "x", "s", embed.embed_arrays([CAT])[0]
        )
        for a in o.others
    ]
    await store.put(other)
    assert await Embedding.find({"model": "another-model@7"}).count() == len(o.others)
    found = await similar(api, w.owner, o.cats[0], first=10)
    assert set(ids(found)) == set(o.cats[1:] + o.others)
    # the other model's vectors (all identical to a cat) would have ranked the things first
    assert set(ids(found)[:2]) == set(o.cats[1:])


async def test_an_edited_box_changes_its_embedding_and_a_relabel_does_not(
    api: Api, drain: Drain, asgi_app: Starlette
) -> None:
    w = await world(api)
    o = await objects(api, drain, w.owner, w.app_id)
    target = o.others[2]  # the rocket
    before = await store.get_vector(w.app_id, embed.IMAGE_MODEL.key, RefKind.ANNOTATION, target)
    data = await api.gql(
        w.owner,
        BULK,
        i={"appId": w.app_id, "annotationIds": [target], "action": "RELABEL", "conceptId": o.cat_concept},
    )
    assert data["bulkAnnotationAction"]["changedIds"] == [target]
    await drain()
    same = await store.get_vector(w.app_id, embed.IMAGE_MODEL.key, RefKind.ANNOTATION, target)
    assert before is not None and same is not None and float(before @ same) > 0.9999
    doc = await Annotation.get(target)
    assert doc is not None and before is not None
    runtime = asgi_app.state.runtime
    # the box moves to the top-left corner of the rocket photo (sky and launch tower)
    await annotation_store.edit(runtime, doc, {"box": [0.0, 0.0, 0.3, 0.3]}, w.owner.user_id)
    await drain()
    after = await store.get_vector(w.app_id, embed.IMAGE_MODEL.key, RefKind.ANNOTATION, target)
    assert after is not None
    assert float(before @ after) < 0.95
