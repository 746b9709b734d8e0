"""The mailbox rules, on the subscriber object itself (no I/O involved)."""

from __future__ import annotations

import asyncio

from app.live.hub import RESYNC, Delivery, Subscriber


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
