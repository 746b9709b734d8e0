"""Access is re-checked while a subscription runs: a revoked key, a removed member or a lost role
ends it with a typed error (and a revoked key closes the connection), on both protocols, while
everybody else's subscriptions on the same task go on. Real uvicorn, MongoDB and Redis; the
access event travels over Redis like any other."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

from app.apps.models import Membership
from app.core import pubsub
from app.core.errors import DomainError
from app.live.access import AccessWatch, Rule
from app.live.hub import Delivery, Hub, Subscriber
from app.tasks.models import LabelingTask
from tests.factories import Api, Caller, world
from tests.live.helpers import LEGACY, PROGRESS, TRANSPORT, Client, client
from tests.tasks_engine.helpers import create_dataset, create_task, image_inputs, null_model

BOTH = pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])

TASKS = """subscription($a: ID!) { labelingTasks(appId: $a) { snapshot tasks { taskId } } }"""
REVIEW = """subscription($t: ID!) { reviewQueue(taskId: $t) { change taskId counts { inputs } } }"""
REVOKE = """mutation($id: ID!) { revokeApiKey(id: $id) { __typename ... on Error { code message } } }"""
KEYS = """{ me { apiKeys { nodes { id } } } }"""
REMOVE = """mutation($a: ID!, $u: ID!) { removeCollaborator(input: {appId: $a, userId: $u}) {
  __typename ... on Error { code message } } }"""
UPDATE = """mutation($a: ID!, $u: ID!, $r: [Role!]!) {
  updateCollaborator(input: {appId: $a, userId: $u, roles: $r}) { __typename ... on Error { code } } }"""

WITHIN = 3.0  # seconds: "within a second" with room for a busy test machine


async def _task(api: Api, owner: Caller, app_id: str) -> str:
    concept = await api.concept(owner, app_id, "cat")
    dataset = await create_dataset(api, owner, app_id)
    await image_inputs(api, owner, app_id, dataset, 1)
    model = await null_model(api, owner, app_id, [{"concept": "cat", "confidence": 0.7}])
    task = await create_task(
        api, owner, appId=app_id, datasetId=dataset, modelId=model, conceptIds=[concept], start=False
    )
    task_id: str = task["id"]
    return task_id


def _hub(asgi_app: Starlette) -> Hub:
    hub: Hub = asgi_app.state.runtime.live
    return hub


async def _progress(asgi_app: Starlette, app_id: str, task_id: str, processed: int) -> None:
    """A change of the task, as the engine makes it: written to MongoDB, then published."""
    collection = LabelingTask.get_pymongo_collection()
    await collection.update_one({"_id": task_id}, {"$set": {"metrics.inputs_processed": processed}})
    await pubsub.publish_task(asgi_app.state.runtime.redis, app_id, task_id, {"status": "QUEUED"})


async def _snapshots(ws: Client, *ops: tuple[str, str]) -> None:
    for op_id, field in ops:
        assert (await ws.data(op_id, field))["snapshot"] is True


async def _ended(ws: Client, op_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Each operation's next message, which must end it with the protocol's error message, and
    arrive within a few seconds; by operation id, the (first) error."""
    errors: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + WITHIN
    while set(errors) != op_ids:
        message = await ws.next(wait=max(0.0, deadline - time.monotonic()))
        assert message["type"] == "error" and message["id"] in op_ids - set(errors), message
        payload = message["payload"]
        found = payload if ws.protocol == TRANSPORT else [payload]
        assert isinstance(found, list) and len(found) == 1, message
        assert "Traceback" not in str(found)
        errors[message["id"]] = found[0]
    return errors


async def _closed_with(ws: Client) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        await ws.next(wait=WITHIN)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def _guards_released(hub: Hub) -> None:
    deadline = time.monotonic() + 10
    while hub.access.stats()["guards"] and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert hub.access.stats() | {"checks": 0} == {"guards": 0, "watches": 0, "pending": 0, "checks": 0}


@BOTH
async def test_a_revoked_key_ends_its_subscriptions_with_unauthenticated_and_closes_4403(
    api: Api, ws_url: str, asgi_app: Starlette, protocol: str
) -> None:
    # given a labeler and the owner watching the same task, the labeler on two connections
    w = await world(api)
    task_id = await _task(api, w.owner, w.app_id)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    [key_id] = [k["id"] for k in (await api.gql(labeler, KEYS))["me"]["apiKeys"]["nodes"]]
    hub = _hub(asgi_app)
    await asyncio.wait_for(hub.connected.wait(), 10)
    async with (
        client(ws_url, protocol, key=labeler.key) as theirs,
        client(ws_url, protocol, key=labeler.key) as idle,
        client(ws_url, protocol, key=w.owner.key) as mine,
    ):
        await theirs.subscribe("p", PROGRESS, t=task_id)
        await theirs.subscribe("l", TASKS, a=w.app_id)
        await mine.subscribe("p", PROGRESS, t=task_id)
        await _snapshots(theirs, ("p", "labelingTaskProgress"), ("l", "labelingTasks"))
        await _snapshots(mine, ("p", "labelingTaskProgress"))

        # when the labeler revokes the key both connections authenticated with
        revoked = await api.gql(labeler, REVOKE, id=key_id)
        assert revoked["revokeApiKey"]["__typename"] == "RevokeApiKeySuccess", revoked

        # then each of its operations ends with UNAUTHENTICATED, and both connections close 4403
        errors = await _ended(theirs, {"p", "l"})
        assert {e["extensions"]["code"] for e in errors.values()} == {"UNAUTHENTICATED"}
        assert await _closed_with(theirs) == 4403
        assert await _closed_with(idle) == 4403

        # and the owner's subscription of the same task goes on
        await _progress(asgi_app, w.app_id, task_id, 1)
        update = await mine.data("p", "labelingTaskProgress")
        assert update["snapshot"] is False and update["metrics"]["processed"] == 1
    await _guards_released(hub)


@BOTH
async def test_a_removed_member_loses_the_apps_subscriptions_with_not_found_and_keeps_the_rest(
    api: Api, ws_url: str, asgi_app: Starlette, protocol: str
) -> None:
    # given a labeler watching the owner's task and app, and their own app, on one connection
    w = await world(api)
    task_id = await _task(api, w.owner, w.app_id)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    own_app = await api.app(labeler, "Mine")
    hub = _hub(asgi_app)
    await asyncio.wait_for(hub.connected.wait(), 10)
    async with (
        client(ws_url, protocol, key=labeler.key) as theirs,
        client(ws_url, protocol, key=w.owner.key) as mine,
    ):
        await theirs.subscribe("p", PROGRESS, t=task_id)
        await theirs.subscribe("l", TASKS, a=w.app_id)
        await theirs.subscribe("o", TASKS, a=own_app)
        await mine.subscribe("p", PROGRESS, t=task_id)
        await _snapshots(
            theirs, ("p", "labelingTaskProgress"), ("l", "labelingTasks"), ("o", "labelingTasks")
        )
        await _snapshots(mine, ("p", "labelingTaskProgress"))

        # when the owner removes the labeler from the app
        removed = await api.gql(w.owner, REMOVE, a=w.app_id, u=labeler.user_id)
        assert removed["removeCollaborator"]["__typename"] == "CollaboratorSuccess", removed

        # then the app's operations end with NOT_FOUND, as an unknown id would answer
        errors = await _ended(theirs, {"p", "l"})
        assert errors["p"]["extensions"] == {"code": "NOT_FOUND", "field": "taskId"}
        assert errors["l"]["extensions"] == {"code": "NOT_FOUND", "field": "appId"}

        # and the task's updates reach the owner, not the removed labeler
        await _progress(asgi_app, w.app_id, task_id, 1)
        update = await mine.data("p", "labelingTaskProgress")
        assert update["metrics"]["processed"] == 1
        with pytest.raises(TimeoutError):
            await theirs.next(wait=0.5)

        # and the connection stays open for what the labeler may still read
        await theirs.subscribe("o2", TASKS, a=own_app)
        await _snapshots(theirs, ("o2", "labelingTasks"))
        await theirs.subscribe("p2", PROGRESS, t=task_id)
        assert (await _ended(theirs, {"p2"}))["p2"]["extensions"]["code"] == "NOT_FOUND"
    await _guards_released(hub)


@BOTH
async def test_a_reviewer_who_loses_the_role_loses_the_review_queue_with_permission_denied(
    api: Api, ws_url: str, asgi_app: Starlette, protocol: str
) -> None:
    w = await world(api)
    task_id = await _task(api, w.owner, w.app_id)
    member = await api.member(w.owner, w.app_id, ["REVIEWER"])
    await asyncio.wait_for(_hub(asgi_app).connected.wait(), 10)
    async with client(ws_url, protocol, key=member.key) as theirs:
        await theirs.subscribe("r", REVIEW, t=task_id)
        await theirs.subscribe("p", PROGRESS, t=task_id)
        assert (await theirs.data("r", "reviewQueue"))["change"] == "SNAPSHOT"
        await _snapshots(theirs, ("p", "labelingTaskProgress"))

        # when the reviewer becomes a labeler
        changed = await api.gql(w.owner, UPDATE, a=w.app_id, u=member.user_id, r=["LABELER"])
        assert changed["updateCollaborator"]["__typename"] == "CollaboratorSuccess", changed

        # then the review queue ends with PERMISSION_DENIED; progress (any member) goes on
        errors = await _ended(theirs, {"r"})
        assert errors["r"]["extensions"] == {"code": "PERMISSION_DENIED", "field": "taskId"}
        await _progress(asgi_app, w.app_id, task_id, 1)
        assert (await theirs.data("p", "labelingTaskProgress"))["metrics"]["processed"] == 1


async def test_access_lost_without_an_event_is_found_by_the_periodic_recheck(
    api: Api, ws_url: str, asgi_app: Starlette
) -> None:
    """MongoDB is the truth: a membership deleted behind the API's back (no event published)
    still ends the subscription, within the re-check period."""
    w = await world(api)
    task_id = await _task(api, w.owner, w.app_id)
    labeler = await api.member(w.owner, w.app_id, ["LABELER"])
    hub = _hub(asgi_app)
    period = hub.access.recheck_s
    async with client(ws_url, key=labeler.key) as theirs:
        await theirs.subscribe("p", PROGRESS, t=task_id)
        await _snapshots(theirs, ("p", "labelingTaskProgress"))
        hub.access.every(0.2)
        try:
            await Membership.get_pymongo_collection().delete_one(
                {"app_id": w.app_id, "user_id": labeler.user_id}
            )
            errors = await _ended(theirs, {"p"})
        finally:
            hub.access.every(period)
        assert errors["p"]["extensions"]["code"] == "NOT_FOUND"


# -- the rules on the hub's own objects (no I/O) --------------------------------------------------


async def test_an_ended_subscriber_raises_its_reason_instead_of_what_is_pending() -> None:
    sub = Subscriber("c", maxlen=10, accepts=None)
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.end(LookupError("access lost"))
    with pytest.raises(LookupError):
        await asyncio.wait_for(waiting, 1)
    sub.push(Delivery("after"))  # a render already under way when it ended
    with pytest.raises(LookupError):
        await sub.get()
    assert sub.sink is None, "the hub never writes to it directly again"


async def test_an_ended_subscriber_raises_only_once_a_send_under_way_is_over() -> None:
    sub = Subscriber("c", maxlen=10, accepts=None)
    sub.sending = True  # the hub is writing to a slow client's socket
    waiting = asyncio.create_task(sub.get())
    sub.end(LookupError("access lost"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    sub.sent()
    with pytest.raises(LookupError):
        await asyncio.wait_for(waiting, 1)


def _change(reason: str, **ids: str) -> pubsub.AccessChange:
    return pubsub.AccessChange.from_event({"type": "access", "reason": reason, **ids})


async def test_an_access_event_names_the_connections_to_re_check() -> None:
    watch = AccessWatch()
    on_a = watch.guard("u1", "k1")
    on_a.watch(Rule("a", "app", "a", "appId"), lambda exc: None)
    idle = watch.guard("u1", "k2")
    on_b = watch.guard("u2", "k3")
    on_b.watch(Rule("b", "app", "b", "appId"), lambda exc: None)

    assert watch.affected(_change("keyRevoked", keyId="k2", userId="u1")) == [idle]
    assert watch.affected(_change("memberRemoved", userId="u1", appId="a")) == [on_a]
    assert watch.affected(_change("memberRemoved", userId="u1", appId="b")) == []
    assert watch.affected(_change("rolesChanged", userId="u2", appId="b")) == [on_b]
    assert watch.affected(_change("appDeleted", appId="b")) == [on_b]
    # when in doubt, everyone: a reason from a newer version, or one without its ids
    assert set(watch.affected(_change("somethingNew", userId="u1"))) == {on_a, idle, on_b}
    assert set(watch.affected(_change("keyRevoked"))) == {on_a, idle, on_b}


async def test_an_operation_on_a_revoked_guard_ends_at_once() -> None:
    watch = AccessWatch()
    guard = watch.guard("u1", "k1")
    ended: list[DomainError] = []
    first = guard.watch(Rule("a", "app", "a", "appId"), ended.append)
    watch.revoke(guard, DomainError("gone"))
    late = guard.watch(Rule("a", "app", "a", "appId"), ended.append)
    assert [e.message for e in ended] == ["gone", "gone"]
    assert first not in guard.watches and late not in guard.watches
