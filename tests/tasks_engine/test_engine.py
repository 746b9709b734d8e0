"""Running labeling tasks end to end: API -> Redis queue -> arq worker -> MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from app.annotations.models import Annotation, AnnotationStatus
from app.predictions.models import Prediction
from app.tasks import engine
from app.tasks.models import InputState, LabelingTask, TaskInput
from tests.factories import Api, world
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    THREE,
    annotations_of,
    assert_metrics_match_recount,
    create_dataset,
    create_task,
    get_task,
    image_inputs,
    null_model,
    scenario,
)


async def _concepts(api: Api, owner: Any, app_id: str, *names: str) -> dict[str, str]:
    return {n: await api.concept(owner, app_id, n) for n in names}


async def test_task_labels_every_input_routes_by_threshold_and_finishes(api: Api, drain: Drain) -> None:
    s = await scenario(api, 6)
    w, c, ds, model = s.w, s.c, s.ds, s.model
    inputs = s.inputs
    created = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=model,
        conceptIds=list(c.values()),
        thresholds={"lower": 0.5, "upper": 0.9},
    )
    assert created["status"] == "QUEUED" and created["metrics"]["inputsTotal"] == 6
    await drain()
    task = await get_task(api, w.owner, created["id"])
    assert task["status"] == "DONE"
    assert task["metrics"] == {
        "inputsTotal": 6,
        "processed": 6,
        "failed": 0,
        "approved": 6,
        "awaitingReview": 6,
        "discarded": 6,
        "labelingPercent": 100.0,
    }
    anns = await annotations_of(created["id"])
    assert sorted((a.input_id, a.concept_id, a.status) for a in anns) == sorted(
        [(i, c["cat"], AnnotationStatus.SUCCESS) for i in inputs]
        + [(i, c["dog"], AnnotationStatus.AWAITING_REVIEW) for i in inputs]
    )
    assert all(a.labeled_by_model_id == model and a.dataset_ids == [ds] for a in anns)
    # raw predictions are kept, including the discarded ones
    assert await Prediction.find({"task_id": created["id"]}).count() == 18
    await assert_metrics_match_recount(created["id"])


async def test_mapping_many_to_one_per_concept_ranges_and_unmapped_concepts(api: Api, drain: Drain) -> None:
    w = await world(api)
    c = await _concepts(api, w.owner, w.app_id, "pet", "vehicle")
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, 2)
    model = await null_model(
        api,
        w.owner,
        w.app_id,
        [
            {"concept": "n-tabby", "confidence": 0.4},
            {"concept": "n-siamese", "confidence": 0.7},  # same task concept: the best one counts
            {"concept": "n-car", "confidence": 0.45},
            {"concept": "n-rock", "confidence": 0.99},  # not mapped: ignored
        ],
    )
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=model,
        conceptIds=[c["pet"], c["vehicle"]],
        conceptMapping=[
            {"modelConceptId": "n-tabby", "conceptId": c["pet"]},
            {"modelConceptId": "n-siamese", "conceptId": c["pet"]},
            {"modelConceptId": "n-car", "conceptId": c["vehicle"]},
        ],
        thresholds={"lower": 0.5, "upper": 0.9},
        conceptThresholds=[{"conceptId": c["vehicle"], "range": {"lower": 0.1, "upper": 0.4}}],
    )
    await drain()
    anns = await annotations_of(task["id"])
    got = sorted((a.concept_id, a.status.value, a.confidence) for a in anns)
    assert got == sorted(
        [
            (c["pet"], "AWAITING_REVIEW", 0.7),
            (c["pet"], "AWAITING_REVIEW", 0.7),
            (c["vehicle"], "SUCCESS", 0.45),
            (c["vehicle"], "SUCCESS", 0.45),
        ]
    )


async def test_a_job_executed_twice_leaves_identical_annotations(
    api: Api, drain: Drain, asgi_app: Any
) -> None:
    s = await scenario(api, 5)
    w, c, ds, model = s.w, s.c, s.ds, s.model
    inputs = s.inputs
    task = await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
    )
    await drain()

    def snapshot(anns: list[Annotation]) -> list[tuple[Any, ...]]:
        return [(a.id, a.key, a.status, a.confidence, a.created_at) for a in anns]

    before = snapshot(await annotations_of(task["id"]))
    doc = await LabelingTask.get(task["id"])
    assert doc is not None
    runtime = asgi_app.state.runtime
    # replay the job as arq's at-least-once delivery may, while the task is still running
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task["id"]}, {"$set": {"status": "IN_PROGRESS"}}
    )
    # the same job again: every input is DONE, nothing changes
    again = await engine.run_batch(runtime, task["id"], inputs, run=doc.run)
    assert (again.processed, again.skipped) == (0, 5)
    assert (await get_task(api, w.owner, task["id"]))["status"] == "DONE"  # the replay closed it again
    # as if the worker died after writing annotations but before recording the inputs
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task["id"]}, {"$set": {"status": "IN_PROGRESS"}}
    )
    # (each input's TaskInput was made PENDING when the run started; a task input that is
    # missing altogether means its input was deleted, and the job skips it)
    await TaskInput.get_pymongo_collection().update_many(
        {"task_id": task["id"]}, {"$set": {"state": "PENDING"}}
    )
    redo = await engine.run_batch(runtime, task["id"], inputs, run=doc.run)
    assert redo.processed == 5
    assert snapshot(await annotations_of(task["id"])) == before
    assert await Prediction.find({"task_id": task["id"]}).count() == 15
    assert (await get_task(api, w.owner, task["id"]))["status"] == "DONE"
    await assert_metrics_match_recount(task["id"])


async def test_bad_inputs_fail_alone_and_the_task_still_finishes(
    api: Api, drain: Drain, asgi_app: Any
) -> None:
    from app.embedded import free_port
    from app.inputs.models import Input

    w = await world(api)
    c = await _concepts(api, w.owner, w.app_id, "cat", "dog", "bird")
    ds = await create_dataset(api, w.owner, w.app_id)
    good = await image_inputs(api, w.owner, w.app_id, ds, 3)
    # seeds of their own: blobs are shared by content, and these two get damaged
    corrupt, missing = await image_inputs(api, w.owner, w.app_id, ds, 2, seed=9200)
    dead_url = (
        await api.gql(
            w.owner,
            """mutation($a: ID!, $u: String!, $d: ID!) { addInput(input: {appId: $a, imageUrl: $u, datasetIds: [$d]}) {
             ... on InputSuccess { input { id status } } } }""",
            a=w.app_id,
            u=f"http://127.0.0.1:{free_port()}/gone.jpg",
            d=ds,
        )
    )["addInput"]["input"]
    assert dead_url["status"] == "PENDING_FETCH"
    # damage two stored images behind the API's back (disk corruption, a lost file)
    blobs = asgi_app.state.runtime.blobs
    doc = await Input.get(corrupt)
    assert doc is not None and doc.blob_key
    blobs._path(doc.blob_key).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    doc = await Input.get(missing)
    assert doc is not None and doc.blob_key
    blobs._path(doc.blob_key).unlink()

    model = await null_model(api, w.owner, w.app_id, THREE)
    task = await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
    )
    await drain()
    done = await get_task(api, w.owner, task["id"])
    assert done["status"] == "DONE"
    assert (done["metrics"]["processed"], done["metrics"]["failed"]) == (6, 3)
    log = await api.gql(
        w.owner,
        """query($t: ID!) { taskInputs(taskId: $t, states: [FAILED]) { nodes { inputId code message attempts } } }""",
        t=task["id"],
    )
    codes = {n["inputId"]: n["code"] for n in log["taskInputs"]["nodes"]}
    assert codes == {corrupt: "IMAGE_UNDECODABLE", missing: "INPUT_MISSING", dead_url["id"]: "FETCH_FAILED"}
    assert {a.input_id for a in await annotations_of(task["id"])} == set(good)
    fetched = await Input.get(dead_url["id"])
    assert fetched is not None and fetched.status.value == "FETCH_FAILED"
    await assert_metrics_match_recount(task["id"])


@contextlib.contextmanager
def image_server(body: bytes, on_get: Callable[[], None] = lambda: None) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 (its port) that answers every GET with ``body`` as a PNG,
    ``/redirect`` with a redirect to it; ``on_get`` runs first (in the server's thread)."""
    import http.server
    import threading

    from app.embedded import free_port

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            on_get()
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/img.png")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        server.shutdown()


async def test_url_inputs_are_fetched_measured_and_labeled(api: Api, drain: Drain) -> None:
    from app.inputs.models import Input
    from tests.tasks_engine.helpers import add_inputs, png

    body = png(7, (20, 10))
    with image_server(body) as port:
        w = await world(api)
        c = await _concepts(api, w.owner, w.app_id, "cat", "dog", "bird")
        ds = await create_dataset(api, w.owner, w.app_id)
        ids = await add_inputs(
            api, w.owner, w.app_id, [{"imageUrl": f"http://127.0.0.1:{port}/redirect", "datasetIds": [ds]}]
        )
        model = await null_model(api, w.owner, w.app_id, THREE)
        task = await create_task(
            api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
        )
        await drain()
    doc = await Input.get(ids[0])
    assert doc is not None
    assert (doc.status.value, doc.width, doc.height, doc.content_type) == ("READY", 20, 10, "image/png")
    image = await api.http.get(f"/inputs/{ids[0]}/image", headers=w.owner.headers)
    assert image.content == body
    assert (await get_task(api, w.owner, task["id"]))["metrics"]["approved"] == 1


async def test_a_url_input_deleted_while_its_image_is_fetched_leaves_no_bytes_behind(
    api: Api, drain: Drain, asgi_app: Any, settings: Any
) -> None:
    from pymongo import MongoClient

    from app.core.blobs import blob_key
    from tests.tasks_engine.helpers import add_inputs, png

    body = png(8, (21, 13))
    deleting: dict[str, str] = {}
    client: MongoClient[Any] = MongoClient(settings.mongodb_url)

    def delete_the_input() -> None:  # while the worker waits for its image
        client[settings.mongodb_db]["inputs"].delete_one({"_id": deleting["id"]})

    try:
        with image_server(body, on_get=delete_the_input) as port:
            w = await world(api)
            c = await _concepts(api, w.owner, w.app_id, "cat", "dog", "bird")
            ds = await create_dataset(api, w.owner, w.app_id)
            [deleting["id"]] = await add_inputs(
                api, w.owner, w.app_id, [{"imageUrl": f"http://127.0.0.1:{port}/img.png", "datasetIds": [ds]}]
            )
            model = await null_model(api, w.owner, w.app_id, THREE)
            task = await create_task(
                api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
            )
            await drain()
    finally:
        client.close()

    blobs = asgi_app.state.runtime.blobs
    assert await blobs.get(blob_key(body)) is None, "nothing names the fetched bytes: not kept"
    assert not list(settings.resolved_blob_dir.joinpath(".retired").glob("*"))
    log = await api.gql(
        w.owner,
        """query($t: ID!) { taskInputs(taskId: $t, states: [FAILED]) { nodes { inputId code } } }""",
        t=task["id"],
    )
    assert log["taskInputs"]["nodes"] == [{"inputId": deleting["id"], "code": "INPUT_MISSING"}]


async def test_cancel_stops_further_work(api: Api, drain: Drain) -> None:
    s = await scenario(api, 12)  # 3 jobs of 4
    w, c, ds, model = s.w, s.c, s.ds, s.model
    task = await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
    )
    await drain(max_burst_jobs=1, max_jobs=1)
    cancel = """mutation($id: ID!) { cancelLabelingTask(id: $id) { __typename
                  ... on TaskRunSuccess { labelingTask { status } } ... on Error { code } } }"""
    assert (await api.gql(w.owner, cancel, id=task["id"]))["cancelLabelingTask"]["labelingTask"][
        "status"
    ] == "CANCELLED"
    await drain()
    after = await get_task(api, w.owner, task["id"])
    assert after["status"] == "CANCELLED" and after["metrics"]["processed"] == 4
    assert {a.input_id for a in await annotations_of(task["id"])}.__len__() == 4
    # cancelling twice is a typed error
    assert (await api.gql(w.owner, cancel, id=task["id"]))["cancelLabelingTask"]["code"] == "INVALID_STATE"


async def test_retry_reprocesses_only_the_failed_inputs(api: Api, drain: Drain, asgi_app: Any) -> None:
    from app.inputs.models import Input

    w = await world(api)
    c = await _concepts(api, w.owner, w.app_id, "cat", "dog", "bird")
    ds = await create_dataset(api, w.owner, w.app_id)
    inputs = await image_inputs(api, w.owner, w.app_id, ds, 6)
    blobs = asgi_app.state.runtime.blobs
    lost = await Input.get(inputs[2])
    assert lost is not None and lost.blob_key
    saved = await blobs.get(lost.blob_key)
    blobs._path(lost.blob_key).unlink()
    model = await null_model(api, w.owner, w.app_id, THREE)
    task = await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
    )
    await drain()
    assert (await get_task(api, w.owner, task["id"]))["metrics"]["failed"] == 1
    retry = """mutation($id: ID!) { retryFailedInputs(id: $id) { __typename ... on Error { code } } }"""
    await blobs.put(saved)  # the file is back
    assert (await api.gql(w.owner, retry, id=task["id"]))["retryFailedInputs"][
        "__typename"
    ] == "TaskRunSuccess"
    await drain()
    done = await get_task(api, w.owner, task["id"])
    assert done["status"] == "DONE"
    assert (done["metrics"]["processed"], done["metrics"]["failed"], done["metrics"]["approved"]) == (6, 0, 6)
    attempts = {s.input_id: s.attempts for s in await TaskInput.find({"task_id": task["id"]}).to_list()}
    assert attempts == {i: (2 if i == inputs[2] else 1) for i in inputs}
    assert all(s.state == InputState.DONE for s in await TaskInput.find({"task_id": task["id"]}).to_list())
    assert (await api.gql(w.owner, retry, id=task["id"]))["retryFailedInputs"]["code"] == "NOTHING_TO_RETRY"
    await assert_metrics_match_recount(task["id"])


async def test_dry_run_histogram_matches_a_real_reapply_and_reviews_survive(api: Api, drain: Drain) -> None:
    s = await scenario(api, 4)
    w, c, ds, model = s.w, s.c, s.ds, s.model
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=model,
        conceptIds=list(c.values()),
        thresholds={"lower": 0.5, "upper": 0.9},
    )
    await drain()
    # a person approved one dog annotation (it would be discarded by the new thresholds)
    reviewed = await Annotation.find_one({"task_id": task["id"], "concept_id": c["dog"]})
    assert reviewed is not None
    await Annotation.get_pymongo_collection().update_one(
        {"_id": reviewed.id}, {"$set": {"status": "SUCCESS", "reviewed_by": w.owner.user_id}}
    )
    q = """mutation($i: ReapplyThresholdsInput!) { reapplyThresholds(input: $i) { __typename
             ... on ReapplyThresholdsSuccess { dryRun histogram { conceptId approved awaitingReview discarded }
                   labelingTask { thresholds { lower upper } metrics { approved awaitingReview } } }
             ... on Error { code field } } }"""
    new = {"lower": 0.7, "upper": 0.96, "upperInclusive": False}
    dry = (await api.gql(w.owner, q, i={"taskId": task["id"], "thresholds": new}))["reapplyThresholds"]
    hist = {h["conceptId"]: (h["approved"], h["awaitingReview"], h["discarded"]) for h in dry["histogram"]}
    assert hist == {c["cat"]: (0, 4, 0), c["dog"]: (0, 0, 4), c["bird"]: (0, 0, 4)}
    assert dry["labelingTask"]["thresholds"] == {"lower": 0.5, "upper": 0.9}  # nothing changed
    assert len(await annotations_of(task["id"])) == 8
    real = (await api.gql(w.owner, q, i={"taskId": task["id"], "thresholds": new, "dryRun": False}))[
        "reapplyThresholds"
    ]
    assert real["histogram"] == dry["histogram"]
    assert real["labelingTask"]["thresholds"] == {"lower": 0.7, "upper": 0.96}
    anns = await annotations_of(task["id"])
    machine = [a for a in anns if a.reviewed_by is None]
    assert sorted((a.concept_id, a.status.value) for a in machine) == [(c["cat"], "AWAITING_REVIEW")] * 4
    kept = await Annotation.get(reviewed.id)
    assert (
        kept is not None and kept.status == AnnotationStatus.SUCCESS and kept.reviewed_by == w.owner.user_id
    )
    assert real["labelingTask"]["metrics"] == {"approved": 1, "awaitingReview": 4}
    # bad thresholds are typed errors
    bad = await api.gql(w.owner, q, i={"taskId": task["id"], "thresholds": {"lower": 0.9, "upper": 0.1}})
    assert bad["reapplyThresholds"]["__typename"] == "ValidationError"
    bad = await api.gql(
        w.owner, q, i={"taskId": task["id"], "conceptThresholds": [{"conceptId": "nope", "range": {}}]}
    )
    assert bad["reapplyThresholds"]["field"] == "conceptThresholds.0.conceptId"


async def test_high_priority_task_created_later_finishes_first(
    api: Api, drain: Drain, asgi_app: Any, settings: Any
) -> None:
    from tests.tasks_engine.conftest import make_worker, stop_worker

    w = await world(api)
    c = await _concepts(api, w.owner, w.app_id, "cat", "dog", "bird")
    low_ds = await create_dataset(api, w.owner, w.app_id, "low")
    high_ds = await create_dataset(api, w.owner, w.app_id, "high")
    await image_inputs(api, w.owner, w.app_id, low_ds, 16)
    await image_inputs(api, w.owner, w.app_id, high_ds, 16, seed=50)
    model = await null_model(api, w.owner, w.app_id, THREE, delay_ms=15)
    common = {"appId": w.app_id, "modelId": model, "conceptIds": list(c.values())}
    low = await create_task(api, w.owner, datasetId=low_ds, priority="LOW", name="low", **common)
    worker = make_worker(asgi_app, settings, max_jobs=1, burst=False)
    running = asyncio.create_task(worker.async_run())
    try:
        for _ in range(500):  # the worker is busy with the LOW task
            if (await get_task(api, w.owner, low["id"]))["status"] == "IN_PROGRESS":
                break
            await asyncio.sleep(0.01)
        high = await create_task(api, w.owner, datasetId=high_ds, priority="HIGH", name="high", **common)
        for _ in range(6000):  # a generous wait on a loaded machine; the order is what counts
            h = await get_task(api, w.owner, high["id"])
            if h["status"] == "DONE":
                break
            await asyncio.sleep(0.01)
        low_then = await get_task(api, w.owner, low["id"])
        assert h["status"] == "DONE"
        assert low_then["status"] == "IN_PROGRESS" and low_then["metrics"]["processed"] < 16
    finally:
        await stop_worker(worker, running)
    await drain()
    assert (await get_task(api, w.owner, low["id"]))["status"] == "DONE"


async def test_progress_events_reach_redis_and_end_with_done(api: Api, drain: Drain, asgi_app: Any) -> None:
    from app.core import pubsub

    s = await scenario(api, 12)
    w, c, ds, model = s.w, s.c, s.ds, s.model
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=model,
        conceptIds=list(c.values()),
        start=False,
    )
    redis = asgi_app.state.runtime.redis
    channel = redis.pubsub()
    await channel.subscribe(pubsub.task_channel(task["id"]), pubsub.app_tasks_channel(w.app_id))
    start = """mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }"""
    assert (await api.gql(w.owner, start, id=task["id"]))["startLabelingTask"][
        "__typename"
    ] == "TaskRunSuccess"
    await drain(max_jobs=1)
    events: dict[str, list[dict[str, Any]]] = {}
    quiet = 0
    while quiet < 3:  # read until the channel has been quiet for a while
        message = await channel.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is None:
            quiet += 1
            continue
        quiet = 0
        events.setdefault(message["channel"].decode(), []).append(pubsub.decode(message["data"]))
    await channel.aclose()
    mine = events[pubsub.task_channel(task["id"])]
    percents = [e["metrics"]["labelingPercent"] for e in mine]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert mine[0]["status"] == "QUEUED" and mine[-1]["status"] == "DONE"
    assert len(events[pubsub.app_tasks_channel(w.app_id)]) == len(mine)


async def test_watching_task_goes_idle_then_labels_inputs_added_later(api: Api, drain: Drain) -> None:
    s = await scenario(api, 3)
    w, c, ds, model = s.w, s.c, s.ds, s.model
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=model,
        conceptIds=list(c.values()),
        watchDataset=True,
    )
    await drain()
    assert (await get_task(api, w.owner, task["id"]))["status"] == "IDLE"
    await image_inputs(api, w.owner, w.app_id, ds, 2, seed=20)
    await drain()
    later = await get_task(api, w.owner, task["id"])
    assert later["status"] == "IDLE"
    assert (later["metrics"]["inputsTotal"], later["metrics"]["processed"], later["metrics"]["approved"]) == (
        5,
        5,
        5,
    )


async def test_lifecycle_mutations_check_roles_state_and_ids(api: Api, drain: Drain) -> None:
    s = await scenario(api, 2)
    w, c, ds, model = s.w, s.c, s.ds, s.model
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    task = await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=list(c.values())
    )
    for name in ("startLabelingTask", "cancelLabelingTask", "retryFailedInputs"):
        q = f"mutation($id: ID!) {{ {name}(id: $id) {{ __typename ... on Error {{ code field }} }} }}"
        assert (await api.gql(labeler, q, id=task["id"]))[name]["code"] == "PERMISSION_DENIED"
        assert (await api.gql(w.stranger, q, id=task["id"]))[name]["code"] == "NOT_FOUND"
        assert (await api.gql(w.owner, q, id="nope"))[name]["code"] == "NOT_FOUND"
    start = "mutation($id: ID!) { startLabelingTask(id: $id) { __typename ... on Error { code } } }"
    # a queued run cannot be retried; a running one cannot be started again
    retry = "mutation($id: ID!) { retryFailedInputs(id: $id) { __typename ... on Error { code } } }"
    assert (await api.gql(w.owner, retry, id=task["id"]))["retryFailedInputs"]["code"] == "INVALID_STATE"
    await drain()
    again = await api.gql(w.owner, start, id=task["id"])
    assert again["startLabelingTask"]["__typename"] == "TaskRunSuccess"
    await drain()
    t = await get_task(api, w.owner, task["id"])
    assert (t["status"], t["run"], t["metrics"]["approved"]) == ("DONE", 2, 2)
    assert len(await annotations_of(task["id"])) == 4  # the second run updated, not duplicated
    errors = await api.gql_errors(
        w.stranger, "query($t: ID!) { taskInputs(taskId: $t) { nodes { id } } }", t=task["id"]
    )
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_inputs_that_cannot_be_decoded_keep_their_code_when_the_model_fails(
    api: Api, drain: Drain, asgi_app: Any, monkeypatch: Any
) -> None:
    """A chunk with images cut short (readable headers, undecodable data) whose model then
    raises: the cut images fail with IMAGE_UNDECODABLE, the others with MODEL_ERROR, and the
    task closes (the cut ones used to be recorded as neither, so the task never closed)."""
    from app.inputs.models import Input
    from tests.tasks_engine.helpers import add_inputs, b64, png

    s = await scenario(api, 0)
    # images of their own (blobs are stored by content: other tests' images must stay whole)
    whole = [png(seed, (64, 48)) for seed in range(9100, 9106)]
    items = [{"imageBase64": b64(f), "datasetIds": [s.ds]} for f in whole]
    inputs = await add_inputs(api, s.w.owner, s.w.app_id, items)
    blobs = asgi_app.state.runtime.blobs
    for k, (input_id, data) in enumerate(zip(inputs, whole, strict=True)):
        doc = await Input.get(input_id)
        assert doc is not None and doc.blob_key
        if k % 2:  # cut short behind the API's back: the header reads, the pixels do not
            blobs._path(doc.blob_key).write_bytes(data[: len(data) // 2])

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the model is broken")

    monkeypatch.setattr(engine, "predict", failing)
    task = await create_task(
        api, s.w.owner, appId=s.w.app_id, datasetId=s.ds, modelId=s.model, conceptIds=list(s.c.values())
    )
    await drain()
    done = await get_task(api, s.w.owner, task["id"])
    assert done["status"] == "DONE"
    assert (done["metrics"]["processed"], done["metrics"]["failed"]) == (6, 6)  # processed: settled
    codes = {t.input_id: t.code for t in await TaskInput.find({"task_id": task["id"]}).to_list()}
    assert codes == {i: "IMAGE_UNDECODABLE" if k % 2 else "MODEL_ERROR" for k, i in enumerate(inputs)}
    await assert_metrics_match_recount(task["id"])


DELETE_INPUT = "mutation($id: ID!) { deleteInput(id: $id) { __typename } }"


async def test_a_record_counts_only_the_task_inputs_it_changed(api: Api) -> None:
    """What a chunk records for inputs deleted meanwhile, or recorded already by another run of
    the same job, moves no counter; a record arriving after the deletions closed the task leaves
    the closing recount alone. (The counters stood above a recount after such races.)"""
    from app.tasks import progress
    from app.tasks.run.write import Outcome

    s = await scenario(api, 4)
    created = await create_task(
        api, s.w.owner, appId=s.w.app_id, datasetId=s.ds, modelId=s.model, conceptIds=list(s.c.values())
    )
    task = await LabelingTask.get(created["id"])
    assert task is not None
    a, b, c, d = s.inputs
    assert (await api.gql(s.w.owner, DELETE_INPUT, id=a))["deleteInput"]["__typename"] == "DeleteSuccess"
    out = Outcome(approved=1, awaiting_review=1, discarded=1)
    await progress.record(task, {a: out, b: out}, {}, set())  # a's task input went with a
    await assert_metrics_match_recount(task.id)
    await progress.record(task, {b: out}, {}, set())  # b again: another run of the same job
    await progress.record(task, {}, {b: ("MODEL_ERROR", "late")}, set())
    await assert_metrics_match_recount(task.id)
    shown = await get_task(api, s.w.owner, task.id)
    assert (shown["metrics"]["processed"], shown["metrics"]["failed"], shown["metrics"]["discarded"]) == (
        1,
        0,
        1,
    )
    for gone in (c, d):  # the last pending inputs: their deletion closes the task
        assert (await api.gql(s.w.owner, DELETE_INPUT, id=gone))["deleteInput"][
            "__typename"
        ] == "DeleteSuccess"
    assert (await get_task(api, s.w.owner, task.id))["status"] == "DONE"
    assert await progress.record(task, {c: out, d: out}, {}, set()) is None
    await assert_metrics_match_recount(task.id)
    closed = await get_task(api, s.w.owner, task.id)
    assert closed["status"] == "DONE" and closed["metrics"]["processed"] == 1
