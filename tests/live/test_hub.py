"""The mailbox and direct-sending rules, on the hub's own objects (no I/O involved: the
"socket" is a list that can be told to hold sends, like a client too slow to read)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from app.live.hub import RESYNC, Delivery, Hub, Subscriber, run_eagerly


async def test_latest_progress_replaces_the_pending_one_of_the_same_task() -> None:
    sub = Subscriber("c", maxlen=10, accepts=None)
    sub.push(Delivery("a1", key="a"))
    sub.push(Delivery("b1", key="b"))
    sub.push(Delivery("a2", key="a"))
    assert [(await sub.get()).frame for _ in range(2)] == ["a2", "b1"]  # type: ignore[union-attr]


async def test_a_final_status_is_never_replaced() -> None:
    sub = Subscriber("c", maxlen=10, accepts=None)
    sub.push(Delivery("done", key="a", final=True))
    sub.push(Delivery("queued-again", key="a"))
    assert [(await sub.get()).frame for _ in range(2)] == ["done", "queued-again"]  # type: ignore[union-attr]


async def test_an_overflowing_mailbox_is_emptied_and_asks_for_a_snapshot() -> None:
    sub = Subscriber("c", maxlen=3, accepts=None)
    for k in range(5):
        sub.push(Delivery(k))
    assert await sub.get() is RESYNC
    assert sub.pending == 0


async def test_a_waiting_subscriber_wakes_up_on_push() -> None:
    sub = Subscriber("c", maxlen=3, accepts=None)
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.push(Delivery("x"))
    assert (await asyncio.wait_for(waiter, 1)).frame == "x"  # type: ignore[union-attr]


async def test_deliveries_for_another_reviewer_are_not_for_me() -> None:
    sub = Subscriber("c", maxlen=3, accepts="me")
    assert sub.wants(Delivery("x", audience=None)) and sub.wants(Delivery("x", audience="me"))
    assert not sub.wants(Delivery("x", audience="someone else"))


# -- direct sending: the hub writes to a waiting subscriber's socket itself ---------------------


class Socket:
    """What a subscriber's sink writes to; ``hold`` makes sends wait (a client too slow to read)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.hold: asyncio.Event | None = None
        self.write_fails = False

    def encode(self, frame: Any) -> str | None:
        return None if frame == "not shareable" else f"<{frame}>"

    def write(self, payload: str, frames: dict[tuple[str, str], bytes]) -> bool:
        if self.write_fails:
            raise RuntimeError("the transport refused the write")
        return False  # never straight to a transport: the coroutine's way below

    def message(self, payload: str) -> Coroutine[Any, Any, None] | None:
        return None if payload == "<over>" else self._send(payload)

    async def _send(self, payload: str) -> None:
        if self.hold is not None:
            await self.hold.wait()
        self.sent.append(payload)


class Plain:
    coalesce = False


def _parked(hub: Hub, channel: str = "c") -> tuple[Subscriber, Socket, asyncio.Task[Any]]:
    sub = hub.subscribe(channel, Plain())  # type: ignore[arg-type]
    socket = Socket()
    sub.sink = socket
    return sub, socket, asyncio.create_task(sub.get())


async def test_run_eagerly_finishes_now_or_hands_the_rest_to_a_task() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("quick")

    assert run_eagerly(quick()) is None and done == ["quick"]  # before any await

    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()
        done.append("slow")

    task = run_eagerly(slow())
    assert task is not None and done == ["quick"]
    gate.set()
    await asyncio.wait_for(task, 1)
    assert done == ["quick", "slow"]

    async def broken() -> None:
        raise ValueError("first step")

    with pytest.raises(ValueError, match="first step"):
        run_eagerly(broken())


async def test_a_cancelled_continuation_closes_its_coroutine() -> None:
    closed = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.set()

    task = run_eagerly(stuck())
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_a_direct_write_that_fails_leaves_the_event_to_the_servers_send() -> None:
    hub = Hub("redis://unused")
    sub, socket, getter = _parked(hub)
    socket.write_fails = True
    await asyncio.sleep(0)  # the getter is parked
    hub.topics["c"].fan_out(Delivery("e1", seq=1), hub)
    assert socket.sent == ["<e1>"] and sub.pending == 0, "the event was not dropped"
    assert hub.stats()["sent_direct"] == 1 and hub.stats()["sent_raw"] == 0
    getter.cancel()


async def test_a_waiting_subscriber_gets_the_event_written_without_waking_up() -> None:
    hub = Hub("redis://unused")
    sub, socket, getter = _parked(hub)
    await asyncio.sleep(0)  # the getter is parked
    hub.topics["c"].fan_out(Delivery("e1", seq=1), hub)
    assert socket.sent == ["<e1>"] and sub.pending == 0 and not getter.done()
    assert hub.stats()["sent_direct"] == 1
    getter.cancel()


async def test_older_than_the_snapshot_unshareable_or_over_goes_the_usual_way_or_nowhere() -> None:
    hub = Hub("redis://unused")
    sub, socket, getter = _parked(hub)
    sub.floor = 5
    await asyncio.sleep(0)
    hub.topics["c"].fan_out(Delivery("old", seq=5), hub)  # the subscriber skips it itself
    assert socket.sent == [] and (await asyncio.wait_for(getter, 1)).frame == "old"  # type: ignore[union-attr]
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    hub.topics["c"].fan_out(Delivery("not shareable", seq=6), hub)
    assert socket.sent == [] and (await asyncio.wait_for(getter, 1)).frame == "not shareable"  # type: ignore[union-attr]
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    hub.topics["c"].fan_out(Delivery("over", seq=7), hub)  # the operation has ended
    assert socket.sent == [] and sub.pending == 0 and not getter.done()
    getter.cancel()


async def test_a_slow_client_holds_up_nobody_and_keeps_its_order() -> None:
    hub = Hub("redis://unused")
    slow, slow_socket, slow_getter = _parked(hub)
    _, fast_socket, fast_getter = _parked(hub)
    slow_socket.hold = asyncio.Event()
    await asyncio.sleep(0)
    topic = hub.topics["c"]
    topic.fan_out(Delivery("e1", seq=1), hub)
    assert fast_socket.sent == ["<e1>"] and slow.sending and slow_socket.sent == []
    topic.fan_out(Delivery("e2", seq=2), hub)  # the slow one is busy: into its mailbox
    assert fast_socket.sent == ["<e1>", "<e2>"] and slow.pending == 1
    await asyncio.sleep(0.05)
    assert not slow_getter.done(), "e2 must not overtake e1, still being written"
    slow_socket.hold.set()
    assert (await asyncio.wait_for(slow_getter, 1)).frame == "e2"  # type: ignore[union-attr]
    assert slow_socket.sent == ["<e1>"] and not slow.sending
    assert hub.stats()["inflight"] == 0
    fast_getter.cancel()
