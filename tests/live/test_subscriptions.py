"""Subscriptions over a real WebSocket server (uvicorn) against the session's real MongoDB and
Redis; tasks run by a real arq worker (``drain``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

from app.core import pubsub
from app.core.documents import utcnow
from app.live import service
from app.live.hub import Hub
from app.tasks.models import LabelingTask, TaskMetrics, TaskStatus
from app.tasks.progress import progress_payload
from tests.factories import Api, world
from tests.live.helpers import LEGACY, PROGRESS, TRANSPORT, client
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import create_dataset, create_task, image_inputs, null_model

BOTH = pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])

TASKS = """subscription($a: ID!) { labelingTasks(appId: $a) {
  snapshot tasks { taskId status final metrics { labelingPercent } } } }"""
REVIEW = """subscription($t: ID!) { reviewQueue(taskId: $t) {
  change taskId reviewerId inputIds counts { inputs annotations } } }"""


async def _task(api: Api, w: Any, n: int = 6, delay_ms: float = 0, **fields: Any) -> dict[str, Any]:
    c = await api.concept(w.owner, w.app_id, "cat")
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, n)
    preds = [{"concept": "cat", "confidence": 0.7}]
    model = await null_model(api, w.owner, w.app_id, preds, delay_ms=delay_ms)
    return await create_task(
        api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=[c], **fields
    )


def _hub(asgi_app: Starlette) -> Hub:
    hub: Hub = asgi_app.state.runtime.live
    return hub


async def _assert_matches_database(progress: dict[str, Any]) -> None:
    doc = await LabelingTask.get(progress["taskId"])
    assert doc is not None
    assert progress["status"] == doc.status.value
    assert progress["metrics"]["inputsTotal"] == doc.metrics.inputs_total
    assert progress["metrics"]["processed"] == doc.metrics.inputs_processed + doc.metrics.inputs_failed


@BOTH
async def test_progress_is_a_snapshot_then_rising_percentages_then_the_final_status(
    api: Api, ws_url: str, drain: Drain, protocol: str
) -> None:
    w = await world(api)
    task = await _task(api, w, n=8, delay_ms=60)
    async with client(ws_url, protocol, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        first = await ws.data("p", "labelingTaskProgress")
        assert first["snapshot"] is True and first["status"] == "QUEUED"
        assert first["metrics"] == {"inputsTotal": 8, "processed": 0, "labelingPercent": 0.0}
        runner = asyncio.create_task(drain(max_jobs=1))
        seen: list[tuple[float, dict[str, Any]]] = []
        while not seen or not seen[-1][1]["final"]:
            seen.append((time.monotonic(), await ws.data("p", "labelingTaskProgress")))
        await runner
    percents = [m["metrics"]["labelingPercent"] for _, m in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert len(seen) >= 2, "updates while the task runs, not only the end"
    assert seen[-1][1]["status"] == "DONE" and not any(m["snapshot"] for _, m in seen)
    # coalesced: at most one update per 250 ms window (plus the leading one)
    span = seen[-1][0] - seen[0][0]
    assert len(seen) <= span / 0.25 + 2
    await _assert_matches_database(seen[-1][1])


async def test_a_burst_of_events_is_coalesced_and_the_latest_state_wins(
    api: Api, ws_url: str, asgi_app: Starlette
) -> None:
    w = await world(api)
    task = await _task(api, w, n=2, start=False)
    redis = asgi_app.state.runtime.redis
    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
        started = time.monotonic()
        collection = LabelingTask.get_pymongo_collection()
        for k in range(40):  # 40 changes in ~0.2 s: far more than 4 per second
            await collection.update_one({"_id": task["id"]}, {"$set": {"metrics.inputs_processed": k % 3}})
            await pubsub.publish_task(redis, w.app_id, task["id"], {"status": "IN_PROGRESS"})
        await collection.update_one(
            {"_id": task["id"]}, {"$set": {"status": "DONE", "metrics.inputs_processed": 2}}
        )
        await pubsub.publish_task(redis, w.app_id, task["id"], {"status": "DONE"})
        received = []
        while not received or not received[-1]["final"]:
            received.append(await ws.data("p", "labelingTaskProgress"))
        elapsed = time.monotonic() - started
    assert len(received) <= elapsed / 0.25 + 2 < 40
    assert received[-1]["status"] == "DONE" and received[-1]["metrics"]["processed"] == 2
    await _assert_matches_database(received[-1])


SMALL = """subscription($t: ID!) { labelingTaskProgress(taskId: $t) { status metrics { processed } } }"""


@pytest.mark.parametrize("deflate", [False, True], ids=["frames-built-once", "permessage-deflate"])
async def test_subscribers_of_one_task_share_an_update_but_each_gets_its_own_query(
    api: Api, ws_url: str, asgi_app: Starlette, deflate: bool
) -> None:
    """Once past the snapshot, the hub executes an update once per distinct operation and writes
    it to every waiting subscriber itself: same query, same bytes; another query, its own shape;
    the legacy protocol, its own message type. Without permessage-deflate each distinct message's
    frame is built once and written straight to the connections (``app.live.frames``); with it,
    through the server's own send, which compresses."""
    w = await world(api)
    task = await _task(api, w, n=2, start=False)
    hub = _hub(asgi_app)
    await asyncio.wait_for(hub.connected.wait(), 10)
    redis = asgi_app.state.runtime.redis
    collection = LabelingTask.get_pymongo_collection()
    async with contextlib.AsyncExitStack() as stack:
        subscribers = []
        for protocol, op_id, query in (
            (TRANSPORT, "p", PROGRESS),
            (TRANSPORT, "p", PROGRESS),
            (TRANSPORT, "s", SMALL),
            (LEGACY, "q", PROGRESS),
        ):
            ws = await stack.enter_async_context(client(ws_url, protocol, key=w.owner.key, deflate=deflate))
            await ws.subscribe(op_id, query, t=task["id"])
            assert (await ws.next(op_id))["payload"]["data"]["labelingTaskProgress"]["status"] == "QUEUED"
            subscribers.append((ws, op_id))
        sent_before, raw_before = hub.stats()["sent_direct"], hub.stats()["sent_raw"]
        received: list[list[dict[str, Any]]] = [[] for _ in subscribers]
        for processed, status in ((1, "IN_PROGRESS"), (2, "DONE")):
            await collection.update_one(
                {"_id": task["id"]}, {"$set": {"status": status, "metrics.inputs_processed": processed}}
            )
            await pubsub.publish_task(redis, w.app_id, task["id"], {"status": status})
            for (ws, op_id), messages in zip(subscribers, received, strict=True):
                messages.append(await ws.next(op_id))
            await asyncio.sleep(0.3)  # past the coalescing window: every update is its own
    first, second, small, legacy = received
    assert first == second and [m["type"] for m in first] == ["next", "next"]
    assert [m["type"] for m in legacy] == ["data", "data"] and all(m["id"] == "q" for m in legacy)
    assert [m["payload"] for m in legacy] == [m["payload"] for m in first]
    assert [m["payload"]["data"]["labelingTaskProgress"] for m in small] == [
        {"status": "IN_PROGRESS", "metrics": {"processed": 1}},
        {"status": "DONE", "metrics": {"processed": 2}},
    ]
    last = first[-1]["payload"]["data"]["labelingTaskProgress"]
    assert last["final"] is True and last["snapshot"] is False
    await _assert_matches_database(last)
    assert hub.stats()["sent_direct"] - sent_before == 8, "every update was written by the hub itself"
    assert hub.stats()["sent_raw"] - raw_before == (0 if deflate else 8)


async def test_a_connection_whose_writing_is_paused_gets_its_updates_in_order_once_it_resumes(
    api: Api, ws_url: str, asgi_app: Starlette
) -> None:
    """Flow control (the transport's buffer above its high-water mark pauses the server's
    writing): a frame is never written past it, the update waits in the server's own send and
    the next one in the subscriber's mailbox; once writing resumes both arrive, in order, and
    later updates go straight to the connection again."""
    w = await world(api)
    task = await _task(api, w, n=3, start=False)
    hub = _hub(asgi_app)
    await asyncio.wait_for(hub.connected.wait(), 10)
    redis = asgi_app.state.runtime.redis
    collection = LabelingTask.get_pymongo_collection()

    async def update(processed: int) -> None:
        await collection.update_one({"_id": task["id"]}, {"$set": {"metrics.inputs_processed": processed}})
        await pubsub.publish_task(redis, w.app_id, task["id"], {"status": "IN_PROGRESS"})
        await asyncio.sleep(0.3)  # past the coalescing window: every update is its own

    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
        (sub,) = hub.topics[pubsub.task_channel(task["id"])].subscribers
        protocol = sub.sink._raw._protocol  # type: ignore[union-attr]  # uvicorn's, of this connection
        raw_before = hub.stats()["sent_raw"]
        protocol.pause_writing()  # what asyncio calls when the socket's buffer is too full
        await update(1)
        await update(2)
        with pytest.raises(TimeoutError):
            await ws.next("p", wait=0.3)
        assert hub.stats()["sent_raw"] == raw_before, "nothing written past flow control"
        protocol.resume_writing()
        processed = [(await ws.data("p", "labelingTaskProgress"))["metrics"]["processed"] for _ in range(2)]
        assert processed == [1, 2]
        await update(3)
        assert (await ws.data("p", "labelingTaskProgress"))["metrics"]["processed"] == 3
        assert hub.stats()["sent_raw"] == raw_before + 1


@BOTH
async def test_a_stopped_operation_gets_nothing_more_and_its_id_can_be_reused(
    api: Api, ws_url: str, asgi_app: Starlette, protocol: str
) -> None:
    w = await world(api)
    task = await _task(api, w, n=2, start=False)
    await asyncio.wait_for(_hub(asgi_app).connected.wait(), 10)
    redis = asgi_app.state.runtime.redis
    collection = LabelingTask.get_pymongo_collection()

    async def change(processed: int) -> None:
        await collection.update_one({"_id": task["id"]}, {"$set": {"metrics.inputs_processed": processed}})
        await pubsub.publish_task(redis, w.app_id, task["id"], {"status": "QUEUED"})

    async with client(ws_url, protocol, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
        await ws.stop("p")
        if protocol == LEGACY:  # the legacy protocol confirms a stop
            assert (await ws.next("p"))["type"] == "complete"
        await change(1)
        await asyncio.sleep(0.3)
        await ws.subscribe("p", PROGRESS, t=task["id"])  # the same id, a new operation
        again = await ws.data("p", "labelingTaskProgress")
        assert again["snapshot"] and again["metrics"]["processed"] == 1
        await asyncio.sleep(0.3)
        await change(2)
        update = await ws.data("p", "labelingTaskProgress")
        assert not update["snapshot"] and update["metrics"]["processed"] == 2
        with pytest.raises(TimeoutError):  # once, not once per operation that ever had the id
            await ws.next("p", wait=0.5)


async def test_labeling_tasks_lists_the_app_then_streams_each_change(
    api: Api, ws_url: str, drain: Drain
) -> None:
    w = await world(api)
    task = await _task(api, w, n=4)
    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("l", TASKS, a=w.app_id)
        snap = await ws.data("l", "labelingTasks")
        assert snap["snapshot"] is True
        assert [t["taskId"] for t in snap["tasks"]] == [task["id"]]
        await drain()
        last: dict[str, Any] = {}
        while last.get("status") != "DONE":
            update = await ws.data("l", "labelingTasks")
            assert update["snapshot"] is False and len(update["tasks"]) == 1
            last = update["tasks"][0]
        assert last == {
            "taskId": task["id"],
            "status": "DONE",
            "final": True,
            "metrics": {"labelingPercent": 100.0},
        }


async def test_review_queue_is_the_reviewers_counts_then_added_inputs(
    api: Api, ws_url: str, drain: Drain
) -> None:
    w = await world(api)
    reviewer = await api.member(w.owner, w.app_id, ["REVIEWER"])
    task = await _task(  # 0.7 is between the thresholds: every input needs review
        api, w, n=3, thresholds={"lower": 0.5, "upper": 0.9}, reviewerIds=[reviewer.user_id]
    )
    async with client(ws_url, key=reviewer.key) as ws:
        await ws.subscribe("r", REVIEW, t=task["id"])
        snap = await ws.data("r", "reviewQueue")
        assert snap == {
            "change": "SNAPSHOT",
            "taskId": task["id"],
            "reviewerId": reviewer.user_id,
            "inputIds": [],
            "counts": {"inputs": 0, "annotations": 0},
        }
        await drain()
        added: set[str] = set()
        while len(added) < 3:
            update = await ws.data("r", "reviewQueue")
            assert update["change"] == "ADDED" and update["counts"] is None
            assert update["reviewerId"] == reviewer.user_id
            added.update(update["inputIds"])
        await ws.stop("r")
        await ws.subscribe("r2", REVIEW, t=task["id"])
        again = await ws.data("r2", "reviewQueue")
        assert again["counts"] == {"inputs": 3, "annotations": 3}


@BOTH
async def test_a_connection_without_a_valid_key_is_refused(ws_url: str, api: Api, protocol: str) -> None:
    await api.user()  # the database is ready
    for payload in ({}, {"Authorization": "Key ls_not-a-key"}, {"Authorization": "Basic abc"}):
        async with client(ws_url, protocol, init=False) as ws:
            await ws.send({"type": "connection_init", "payload": payload})
            if protocol == TRANSPORT:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            else:
                message = await ws.recv()
                assert message["type"] == "connection_error"
                assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
                with pytest.raises(ConnectionClosed):
                    await ws.recv()


@BOTH
async def test_subscribing_before_the_connection_is_acknowledged_is_refused(
    ws_url: str, protocol: str
) -> None:
    async with client(ws_url, protocol, init=False) as ws:
        await ws.subscribe("p", PROGRESS, t="x")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_the_upgrade_requests_authorization_header_is_enough(api: Api, ws_url: str) -> None:
    w = await world(api)
    task = await _task(api, w, n=1, start=False)
    async with client(ws_url, header_key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["taskId"] == task["id"]


@BOTH
async def test_another_apps_task_or_app_is_refused_like_an_unknown_id(
    api: Api, ws_url: str, protocol: str
) -> None:
    w = await world(api)
    task = await _task(api, w, n=1, start=False)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    async with client(ws_url, protocol, key=w.stranger.key) as ws:
        for op_id, query, variables in (
            ("1", PROGRESS, {"t": task["id"]}),
            ("2", TASKS, {"a": w.app_id}),
            ("3", REVIEW, {"t": task["id"]}),
            ("4", PROGRESS, {"t": "no-such-task"}),
        ):
            await ws.subscribe(op_id, query, **variables)
            message = await ws.next(op_id)
            assert message["type"] == "error", message
            errors = message["payload"] if protocol == TRANSPORT else [message["payload"]]
            assert errors[0]["extensions"]["code"] == "NOT_FOUND", errors
            assert "Traceback" not in str(errors)
    async with client(ws_url, protocol, key=labeler.key) as ws:
        await ws.subscribe("r", REVIEW, t=task["id"])
        message = await ws.next("r")
        errors = message["payload"] if protocol == TRANSPORT else [message["payload"]]
        assert message["type"] == "error" and errors[0]["extensions"]["code"] == "PERMISSION_DENIED"
        await ws.subscribe("p", PROGRESS, t=task["id"])  # a labeler may watch progress
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]


@BOTH
async def test_subscriptions_per_connection_are_capped_with_a_typed_error(
    api: Api, ws_url: str, asgi_app: Starlette, protocol: str
) -> None:
    w = await world(api)
    cap = asgi_app.state.runtime.settings.max_subscriptions_per_connection
    async with client(ws_url, protocol, key=w.owner.key) as ws:
        for k in range(cap):
            await ws.subscribe(f"s{k}", TASKS, a=w.app_id)
        for k in range(cap):
            assert (await ws.data(f"s{k}", "labelingTasks"))["snapshot"]
        await ws.subscribe("over", TASKS, a=w.app_id)
        message = await ws.next("over")
        assert message["type"] == "error"
        errors = message["payload"] if protocol == TRANSPORT else [message["payload"]]
        assert errors[0]["extensions"]["code"] == "TOO_MANY"
        # the connection stays usable: stop one, and a new one fits
        await ws.stop("s0")
        await asyncio.sleep(0.1)
        await ws.subscribe("again", TASKS, a=w.app_id)
        assert (await ws.data("again", "labelingTasks"))["snapshot"]


async def _pattern_subscriptions(asgi_app: Starlette) -> int:
    value: int = await asgi_app.state.runtime.redis.execute_command("PUBSUB", "NUMPAT")
    return value


async def test_disconnecting_clients_release_everything(api: Api, ws_url: str, asgi_app: Starlette) -> None:
    w = await world(api)
    task = await _task(api, w, n=1, start=False)
    hub = _hub(asgi_app)
    await asyncio.wait_for(hub.connected.wait(), 10)

    async def cycle(k: int) -> None:
        protocol = TRANSPORT if k % 2 else LEGACY
        async with client(ws_url, protocol, key=w.owner.key) as ws:
            await ws.subscribe("p", PROGRESS, t=task["id"])
            await ws.subscribe("l", TASKS, a=w.app_id)
            await ws.data("p", "labelingTaskProgress")
            if k % 3 == 0:  # some leave while an event is being delivered
                await pubsub.publish_task(asgi_app.state.runtime.redis, w.app_id, task["id"], {})

    await cycle(0)
    await asyncio.sleep(0.5)
    tasks_before = len(asyncio.all_tasks())
    patterns_before = await _pattern_subscriptions(asgi_app)
    for batch in range(10):
        await asyncio.gather(*(cycle(batch * 20 + k) for k in range(20)))
    deadline = time.monotonic() + 10
    while hub.stats()["subscribers"] and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)  # throttle windows end
    assert hub.stats() == {
        "topics": 0,
        "subscribers": 0,
        "throttles": 0,
        "inflight": 0,
        "connections": hub.stats()["connections"],
        "sent_direct": hub.stats()["sent_direct"],
        "sent_raw": hub.stats()["sent_raw"],
    }
    assert len(asyncio.all_tasks()) <= tasks_before
    assert await _pattern_subscriptions(asgi_app) == patterns_before == 1


# -- events that carry their state (progress_payload's "state") --------------------------------


async def _progress_event(task_id: str, processed: int, updated_at: datetime) -> dict[str, Any]:
    """The engine's progress payload for the task as if read with these values (MongoDB is not
    changed: what a subscriber then gets from MongoDB tells the two apart)."""
    doc = await LabelingTask.get(task_id)
    assert doc is not None
    doc.metrics.inputs_processed, doc.status, doc.updated_at = processed, TaskStatus.IN_PROGRESS, updated_at
    return progress_payload(doc)


async def _write_progress(task_id: str, processed: int) -> None:
    """What a batch's record does to the task: IN_PROGRESS, ``processed`` counted, a new write time."""
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task_id},
        {
            "$set": {"status": "IN_PROGRESS", "metrics.inputs_processed": processed},
            "$currentDate": {"updated_at": True},
        },
    )


async def test_an_event_carrying_its_state_is_sent_at_once_and_mongodb_corrects_it_in_the_next_window(
    api: Api, ws_url: str, asgi_app: Starlette
) -> None:
    w = await world(api)
    task = await _task(api, w, n=4, start=False)
    await asyncio.wait_for(_hub(asgi_app).connected.wait(), 10)
    redis = asgi_app.state.runtime.redis
    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
        # the publisher read processed=1; by the time the hub reads, MongoDB says 3
        payload = await _progress_event(task["id"], 1, utcnow())
        await _write_progress(task["id"], 3)
        await pubsub.publish_task(redis, w.app_id, task["id"], payload)
        early = await ws.data("p", "labelingTaskProgress")
        assert early["metrics"]["processed"] == 1 and early["status"] == "IN_PROGRESS"
        corrected = await ws.data("p", "labelingTaskProgress")
        assert corrected["metrics"]["processed"] == 3 and not corrected["snapshot"]
        await _assert_matches_database(corrected)
        with pytest.raises(TimeoutError):  # nothing more: MongoDB's state was sent once
            await ws.next("p", wait=0.6)


async def test_an_event_whose_state_agrees_with_mongodb_is_sent_once(
    api: Api, ws_url: str, asgi_app: Starlette
) -> None:
    w = await world(api)
    task = await _task(api, w, n=4, start=False)
    await asyncio.wait_for(_hub(asgi_app).connected.wait(), 10)
    redis = asgi_app.state.runtime.redis
    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
        await _write_progress(task["id"], 2)
        fresh = await LabelingTask.get(task["id"])
        assert fresh is not None
        await pubsub.publish_task(redis, w.app_id, task["id"], progress_payload(fresh))
        update = await ws.data("p", "labelingTaskProgress")
        assert update["metrics"]["processed"] == 2
        await _assert_matches_database(update)
        with pytest.raises(TimeoutError):
            await ws.next("p", wait=0.6)


@pytest.mark.parametrize(
    ("newer_by", "older"),
    [("event", "earlier"), ("event", "same-tick"), ("mongodb", "earlier")],
    ids=["written-earlier", "same-clock-tick-counting-less", "after-a-state-read-from-mongodb"],
)
async def test_an_event_older_than_a_state_already_sent_waits_for_mongodb(
    api: Api, ws_url: str, asgi_app: Starlette, newer_by: str, older: str
) -> None:
    """Two publishers: one read before the other wrote, and publishes last. Its older state is
    not sent; MongoDB's is. Older: written earlier, or in the same clock tick (two batches'
    records) having counted fewer inputs, which only grow in a run. Already sent: carried by
    its event, or read from MongoDB by the hub (an event without a state)."""
    w = await world(api)
    task = await _task(api, w, n=4, start=False)
    await asyncio.wait_for(_hub(asgi_app).connected.wait(), 10)
    redis = asgi_app.state.runtime.redis
    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe("p", PROGRESS, t=task["id"])
        assert (await ws.data("p", "labelingTaskProgress"))["snapshot"]
        earlier = utcnow() - timedelta(seconds=5)
        await _write_progress(task["id"], 2)
        fresh = await LabelingTask.get(task["id"])
        assert fresh is not None
        stale = await _progress_event(task["id"], 1, earlier if older == "earlier" else fresh.updated_at)
        newer = progress_payload(fresh) if newer_by == "event" else {"status": "IN_PROGRESS"}
        await pubsub.publish_task(redis, w.app_id, task["id"], newer)
        assert (await ws.data("p", "labelingTaskProgress"))["metrics"]["processed"] == 2
        await asyncio.sleep(0.3)  # past the coalescing window
        await pubsub.publish_task(redis, w.app_id, task["id"], stale)
        again = await ws.data("p", "labelingTaskProgress")
        assert again["metrics"]["processed"] == 2, "the stale state must not go out"
        await _assert_matches_database(again)


def test_a_state_that_is_missing_or_malformed_is_not_used() -> None:
    good = progress_payload(
        LabelingTask.model_construct(
            id="t",
            app_id="a",
            name="n",
            status=TaskStatus.IN_PROGRESS,
            seeding=False,
            metrics=TaskMetrics(inputs_processed=1),
            updated_at=utcnow(),
        )
    )
    event = {"appId": "a", **good}
    state = service.published_state("t", event)
    assert state is not None and state.metrics.inputs_processed == 1 and state.app_id == "a"
    assert service.published_state("t", {"appId": "a", "status": "DONE"}) is None
    for broken in (
        {"updatedAt": "not a date"},
        {"updatedAt": "2026-01-01T00:00:00"},  # no time zone: not one of ours
        {"status": "NOT_A_STATUS"},
        {"metrics": {"inputs_processed": "many"}},
        {"name": None},
        {"seeding": "no"},
        {"metrics": None},
    ):
        bad = {**event, "state": {**good["state"], **broken}}
        assert service.published_state("t", bad) is None, broken
    assert service.published_state("t", {**good}) is None  # no appId
