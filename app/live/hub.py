"""One Redis subscription per API process, fanned out to every local subscriber.

    Redis  --psubscribe labelstream:*-->  Hub._read  --channel-->  Topic  --Delivery-->  Subscriber mailboxes
                                                                     |
                                         coalescing topics: one Throttle per key (task id):
                                         at most one render per ``interval`` (leading and trailing
                                         edge, latest event wins), renders never overlap

Invariants:
* A Redis message is decoded once and rendered once per process, whatever the number of
  subscribers; every subscriber receives the same frame object (the GraphQL layer executes a
  frame once per distinct operation, see ``app.live.execution``).
* A coalescing renderer with ``early`` (progress events that carry their publisher's read of
  the state) has its early frame sent before ``render`` reads MongoDB, so subscribers do not
  wait for that read. MongoDB stays the authority: when the read says something else, the
  throttle is made dirty with the event minus its state, so the database's state goes out at
  the end of the window (never more than one render per window). ``early`` itself refuses a
  state older than one the topic already sent, early or rendered (``Delivery.mark``).
* A subscriber waiting in ``get`` with an empty mailbox (parked) is not woken up: the hub
  encodes the frame for its operation (once per distinct operation, ``Sink.encode``) and writes
  it to its socket itself, in the same pass over subscribers, like a plain broadcast: on
  uvicorn's websockets-sansio protocol, a frame built once per distinct message goes straight to
  the connection's transport (``app.live.frames``). A write that has to wait (a client too slow
  to read: flow control paused the transport) goes on in its own task; until it is over, that
  subscriber's later deliveries wait in its mailbox, so its order holds and nobody else waits.
* Mailboxes are bounded. A coalescing delivery replaces the pending one with the same key unless
  that one is final (a final status is never dropped); when a mailbox would overflow it is
  emptied and its subscriber re-synchronises from MongoDB instead. Memory never grows with a
  slow client.
* Losing Redis loses events, never state: after every (re)subscription the hub asks every live
  subscriber to re-synchronise (a fresh snapshot from MongoDB).
* A subscriber that goes away (``unsubscribe``) leaves nothing behind: its topic, throttles,
  timers and pending renders are dropped with the last subscriber of the channel.
* Control channels (``listen``, e.g. ``labelstream:access``) never have a topic: their events go
  to plain callbacks, looked up only for channels nobody subscribes to, so the fan-out path pays
  nothing for them. After every (re)subscription each callback is called with None: events may
  have been lost.
* Access is re-checked for every live operation (``app.live.access``): a subscriber whose caller
  lost access is ended (``Subscriber.end``); from then on the hub never writes to it directly and
  its own task raises the reason instead of taking anything more from its mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core import pubsub
from app.core.aio import cancel_and_wait
from app.live.access import AccessWatch
from app.live.collector import Collector
from app.live.execution import DISCONNECTED

log = logging.getLogger("labelstream.live")


@dataclass(slots=True)
class Delivery:
    """One rendered event: ``frame`` is shared by every subscriber that receives it."""

    frame: Any
    key: str | None = None  # latest-wins key (e.g. task id); None: never replaced
    final: bool = False  # never replaced by a later delivery of the same key
    audience: str | None = None  # a user id, or None for everyone on the channel
    seq: int = 0  # hub sequence taken when rendering started (newer state >= larger seq)
    # how recent the state it shows is, comparable with the renderer's other marks; the topic
    # keeps the newest mark it sent per key (``Topic.seen``), which ``early`` compares with
    mark: Any = None


class Renderer(Protocol):
    """How one kind of channel turns raw events into deliveries (supplied by the GraphQL layer).

    A coalescing renderer may also have ``early(key, event, seen) -> Delivery | None``: a
    delivery built from the event alone (no I/O), sent before ``render`` reads the state;
    ``seen`` is the topic's own memory for it.
    """

    coalesce: bool

    def key(self, event: dict[str, Any]) -> str | None: ...

    async def render(self, key: str | None, event: dict[str, Any]) -> Delivery | None: ...


class Resync:
    """Marker returned by ``Subscriber.get``: take a fresh snapshot, earlier deltas are gone."""


RESYNC = Resync()


class Sink(Protocol):
    """How the hub sends an event to a subscriber itself (``app.live.execution.LiveSink``)."""

    def encode(self, frame: Any) -> str | None: ...

    def write(self, payload: str, frames: dict[tuple[str, str], bytes]) -> bool: ...

    def message(self, payload: str) -> Coroutine[Any, Any, None] | None: ...


class Subscriber:
    __slots__ = (
        "_ended",
        "_items",
        "_maxlen",
        "_resync",
        "_waiter",
        "accepts",
        "channel",
        "floor",
        "sending",
        "sink",
    )

    def __init__(self, channel: str, maxlen: int, accepts: str | None) -> None:
        self.channel = channel
        self.accepts = accepts  # user id for audience filtering (None: no filter)
        self._items: deque[Delivery] = deque()
        self._maxlen = maxlen
        self._resync = False
        self._waiter: asyncio.Future[None] | None = None
        # Direct sending: while the subscriber's own task is parked in ``get`` with nothing
        # pending, the hub sends an encoded delivery to it without waking it up.
        self.sink: Sink | None = None
        self.floor = 0  # deliveries with a seq <= floor predate the last snapshot: skipped
        self.sending = False  # a direct send is under way: ``get`` waits, so order is kept
        self._ended: BaseException | None = None

    def wants(self, delivery: Delivery) -> bool:
        return delivery.audience is None or delivery.audience == self.accepts

    @property
    def parked(self) -> bool:
        waiter = self._waiter
        return (
            waiter is not None
            and not waiter.done()
            and not self._items
            and not self._resync
            and not self.sending
        )

    def push(self, delivery: Delivery) -> None:
        items = self._items
        if delivery.key is not None:
            for i in range(len(items) - 1, -1, -1):
                if items[i].key == delivery.key:
                    if not items[i].final:
                        items[i] = delivery
                        return
                    break
        if len(items) >= self._maxlen:
            items.clear()
            self._resync = True
        else:
            items.append(delivery)
        self._wake()

    def request_resync(self) -> None:
        self._items.clear()
        self._resync = True
        self._wake()

    def end(self, reason: BaseException) -> None:
        """No more deliveries (the caller lost access): ``get`` raises ``reason`` once a direct
        send under way is over. Without a sink the hub never writes to it directly again."""
        if self._ended is None:
            self._ended = reason
            self.sink = None
            self._items.clear()
            self._wake()

    def sent(self) -> None:
        """A direct send that had to wait (a slow client) is over."""
        self.sending = False
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Delivery | Resync:
        while True:
            if not self.sending:
                if self._ended is not None:
                    raise self._ended
                if self._resync:
                    self._resync = False
                    self._items.clear()
                    return RESYNC
                if self._items:
                    return self._items.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def pending(self) -> int:
        return len(self._items)


def run_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` right now, up to its first real suspension (Python 3.12's eager tasks).

    None when it finished without suspending (a send to a socket with room in its buffer);
    otherwise a task that finishes it (a client too slow to read: its transport is paused).
    Exceptions of the first step are raised here.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    except BaseException:
        coro.close()
        raise
    task = asyncio.ensure_future(_finish(coro, waiting_on))
    # cancelled (even before it started) or failed: ``coro`` runs its cleanup now, not at GC
    task.add_done_callback(lambda _task: coro.close())
    return task


async def _finish(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive ``coro`` on from where ``run_eagerly`` left it, the way a task would."""
    while True:
        if isinstance(waiting_on, asyncio.Future):
            waiting_on._asyncio_future_blocking = False
            await asyncio.wait([waiting_on])  # its outcome goes back into ``coro`` below
        else:  # a bare yield: give the loop one turn
            await asyncio.sleep(0)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return


@dataclass(eq=False)
class Throttle:
    last: float = -1e18
    event: dict[str, Any] | None = None
    dirty: bool = False
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None


@dataclass(eq=False)
class Topic:
    channel: str
    renderer: Renderer
    subscribers: set[Subscriber] = field(default_factory=set)
    throttles: dict[str | None, Throttle] = field(default_factory=dict)
    seen: dict[Any, Any] = field(default_factory=dict)  # key -> newest ``Delivery.mark`` sent

    def sent(self, key: str | None, delivery: Delivery) -> None:
        """Remember the mark of a delivery that went out (the newest one per key)."""
        mark = delivery.mark
        if mark is not None:
            last = self.seen.get(key)
            if last is None or last < mark:
                self.seen[key] = mark

    def fan_out(self, delivery: Delivery, hub: Hub) -> None:
        frames: dict[tuple[str, str], bytes] = {}  # each distinct message's frame, built once
        for sub in self.subscribers:
            if delivery.audience is not None and not sub.wants(delivery):
                continue
            sink = sub.sink
            if sink is not None and sub.parked and delivery.seq > sub.floor:
                try:
                    encoded = sink.encode(delivery.frame)
                except Exception:  # the subscriber's own execution reports it the usual way
                    log.warning("could not encode an event of %s", self.channel, exc_info=True)
                    encoded = None
                if encoded is not None:
                    hub.send_direct(sub, sink, encoded, frames)
                    continue
            sub.push(delivery)

    def close(self) -> None:
        for throttle in self.throttles.values():
            throttle.cancel()
        self.throttles.clear()


class Hub:
    """Owned by the app lifespan: ``await hub.start()`` ... ``await hub.stop()``."""

    def __init__(
        self,
        redis_url: str,
        *,
        interval_s: float = 0.25,
        queue_size: int = 100,
        max_backoff_s: float = 2.0,
        access_recheck_s: float = 10.0,
        collector: Collector | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.interval = interval_s
        self.queue_size = queue_size
        self.max_backoff = max_backoff_s
        self.topics: dict[str, Topic] = {}
        self.connected = asyncio.Event()
        self.connections = 0  # successful (re)subscriptions, for tests and /health
        self.sent_direct = 0  # deliveries the hub wrote to a parked subscriber's socket itself
        self.sent_raw = 0  # of which written as a frame built once, straight to the transport
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[Any, asyncio.Task[Any]] = {}
        self._listeners: dict[str, list[Callable[[dict[str, Any] | None], None]]] = {}
        # who may still read what: re-checked on ``access`` events and every ``access_recheck_s``
        self.access = AccessWatch(access_recheck_s)
        self.listen(pubsub.ACCESS_CHANNEL, self.access.on_event)
        # keeps full garbage collections off the fan-out's path (app/live/collector.py)
        self.collector = collector

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-hub")
        self.access.start()
        if self.collector is not None:
            self.collector.start()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.access.stop()
        if self.collector is not None:
            await self.collector.stop()
        for topic in self.topics.values():
            topic.close()
            for sub in topic.subscribers:
                sub.request_resync()
        self.topics.clear()
        for pending in self._inflight.values():
            pending.cancel()
        self._inflight.clear()

    # -- subscribers ---------------------------------------------------------------------------

    def listen(self, channel: str, callback: Callable[[dict[str, Any] | None], None]) -> None:
        """Call ``callback`` with every decoded event of a control channel (one no subscriber
        uses), and with None after every (re)subscription to Redis: events may have been lost.
        It runs in the hub's reader, so it must not block: start a task for any I/O."""
        self._listeners.setdefault(channel, []).append(callback)

    def subscribe(self, channel: str, renderer: Renderer, *, audience: str | None = None) -> Subscriber:
        topic = self.topics.get(channel)
        if topic is None:
            topic = self.topics[channel] = Topic(channel, renderer)
        sub = Subscriber(channel, self.queue_size, audience)
        topic.subscribers.add(sub)
        if self.collector is not None:
            self.collector.subscribed()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        topic = self.topics.get(sub.channel)
        if topic is None or sub not in topic.subscribers:
            return
        topic.subscribers.discard(sub)
        if self.collector is not None:
            self.collector.unsubscribed()
        if not topic.subscribers:
            del self.topics[sub.channel]
            topic.close()

    def send_direct(
        self, sub: Subscriber, sink: Sink, encoded: str, frames: dict[tuple[str, str], bytes]
    ) -> None:
        """Send on the subscriber's behalf, in the hub's loop over subscribers, like a plain
        broadcast: no task switch per subscriber. The frame goes straight to the connection when
        it can (``Sink.write``); otherwise a send that has to wait goes on in its own task, and
        the subscriber takes nothing from its mailbox until it is over."""
        try:
            written = sink.write(encoded, frames)
        except Exception:  # the server's own send below says what it has to say
            log.warning("could not write an event on %s directly", sub.channel, exc_info=True)
            written = False
        if written:
            self.sent_direct += 1
            self.sent_raw += 1
            return
        send = sink.message(encoded)
        if send is None:
            return
        self.sent_direct += 1
        try:
            task = run_eagerly(send)
        except DISCONNECTED:
            return  # the connection's reader ends the subscription
        except Exception:
            log.warning("could not send an event on %s", sub.channel, exc_info=True)
            return
        if task is None:
            return
        sub.sending = True
        key = ("send", id(task))
        self._inflight[key] = task

        def done(task: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)
            sub.sent()
            if not task.cancelled() and not isinstance(task.exception(), (type(None), *DISCONNECTED)):
                log.warning("could not send an event on %s", sub.channel, exc_info=task.exception())

        task.add_done_callback(done)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def shared(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        """Single flight: concurrent callers with the same key share one load (e.g. the
        snapshots of a thousand subscribers re-synchronising after a Redis restart)."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    def stats(self) -> dict[str, int]:
        return {
            "topics": len(self.topics),
            "subscribers": sum(len(t.subscribers) for t in self.topics.values()),
            "throttles": sum(len(t.throttles) for t in self.topics.values()),
            "inflight": len(self._inflight),
            "connections": self.connections,
            "sent_direct": self.sent_direct,
            "sent_raw": self.sent_raw,
        }

    # -- Redis ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._listen()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused / reset / timeout: retry, never crash
                if self.connected.is_set():
                    log.warning("live hub lost Redis (%s); reconnecting", exc)
                    backoff = 0.05
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff, backoff * 2)

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(
            self.redis_url, socket_connect_timeout=2, socket_keepalive=True, health_check_interval=15
        )
        try:
            ps = client.pubsub()
            try:
                await ps.psubscribe(pubsub.PATTERN)
                while True:
                    message = await ps.get_message(timeout=None)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "pmessage":
                        self._dispatch(message["channel"], message["data"])
                    elif kind == "psubscribe":
                        self._on_subscribed()
            finally:
                with contextlib.suppress(Exception):
                    await ps.aclose()
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _on_subscribed(self) -> None:
        self.connections += 1
        self.connected.set()
        if self.connections > 1:
            count = self.stats()["subscribers"]
            log.info("live hub re-subscribed to Redis; re-synchronising %s subscribers", count)
        # Events published while we were not subscribed are lost: every subscriber re-reads
        # MongoDB. (On the first connection there may already be subscribers that started
        # while Redis was unreachable.)
        for topic in self.topics.values():
            for sub in topic.subscribers:
                sub.request_resync()
        for callbacks in self._listeners.values():
            for callback in callbacks:
                self._notify(callback, None)

    def _notify(
        self, callback: Callable[[dict[str, Any] | None], None], event: dict[str, Any] | None
    ) -> None:
        try:
            callback(event)
        except Exception:
            log.warning("a live listener failed", exc_info=True)

    def _dispatch(self, raw_channel: bytes | str, data: bytes | str) -> None:
        channel = raw_channel.decode() if isinstance(raw_channel, bytes) else raw_channel
        topic = self.topics.get(channel)
        if topic is None:
            callbacks = self._listeners.get(channel)
            if callbacks:
                self._control(channel, data, callbacks)
            return  # nobody here listens to it: not even decoded
        try:
            event = pubsub.decode(data)
        except Exception:
            log.warning("undecodable event on %s", channel)
            return
        renderer = topic.renderer
        key = renderer.key(event)
        if not renderer.coalesce:
            self._spawn_render(topic, key, event, None)
            return
        throttle = topic.throttles.get(key)
        if throttle is None:
            throttle = topic.throttles[key] = Throttle()
        throttle.event = event
        throttle.dirty = True
        self._schedule(topic, key, throttle)

    def _control(
        self, channel: str, data: bytes | str, callbacks: list[Callable[[dict[str, Any] | None], None]]
    ) -> None:
        try:
            event = pubsub.decode(data)
        except Exception:
            log.warning("undecodable event on %s", channel)
            return
        for callback in callbacks:
            self._notify(callback, event)

    # -- coalescing ----------------------------------------------------------------------------

    def _schedule(self, topic: Topic, key: str | None, throttle: Throttle) -> None:
        if throttle.task is not None or throttle.timer is not None:
            return  # the running render or the armed timer picks the latest event up
        delay = throttle.last + self.interval - time.monotonic()
        if delay <= 0:
            self._flush(topic, key, throttle)
        else:
            loop = asyncio.get_running_loop()
            throttle.timer = loop.call_later(delay, self._on_timer, topic, key, throttle)

    def _on_timer(self, topic: Topic, key: str | None, throttle: Throttle) -> None:
        """End of a throttle window: render what came in meanwhile, or forget the idle key."""
        throttle.timer = None
        if throttle.dirty:
            self._flush(topic, key, throttle)
        elif throttle.task is None and topic.throttles.get(key) is throttle:
            del topic.throttles[key]

    def _flush(self, topic: Topic, key: str | None, throttle: Throttle) -> None:
        if self.topics.get(topic.channel) is not topic or throttle.event is None:
            return  # the last subscriber left
        event, throttle.event, throttle.dirty = throttle.event, None, False
        throttle.last = time.monotonic()
        throttle.task = self._spawn_render(topic, key, event, throttle)

    def _spawn_render(
        self, topic: Topic, key: str | None, event: dict[str, Any], throttle: Throttle | None
    ) -> asyncio.Task[None]:
        seq = self.next_seq()
        task = asyncio.ensure_future(self._render(topic, key, event, seq, throttle))
        if throttle is None:  # nothing else holds a reference until it is done
            self._inflight[("render", seq)] = task
            task.add_done_callback(lambda _t: self._inflight.pop(("render", seq), None))
        return task

    async def _render(
        self, topic: Topic, key: str | None, event: dict[str, Any], seq: int, throttle: Throttle | None
    ) -> None:
        try:
            renderer = topic.renderer
            early_of = getattr(renderer, "early", None) if throttle is not None else None
            early: Delivery | None = early_of(key, event, topic.seen) if early_of is not None else None
            if early is not None:
                early.seq = seq
                topic.fan_out(early, self)
                topic.sent(key, early)
                seq = self.next_seq()  # the read below starts after it went out
            delivery = await renderer.render(key, event)
            if delivery is None or self.topics.get(topic.channel) is not topic:
                return
            if early is None:
                delivery.seq = seq
                topic.fan_out(delivery, self)
                topic.sent(key, delivery)
            elif delivery.frame != early.frame and throttle is not None and not throttle.dirty:
                # MongoDB says otherwise (another write since the publisher's read): its state
                # goes out at the end of this window, re-read then, like a trailing event
                throttle.event, throttle.dirty = {k: v for k, v in event.items() if k != "state"}, True
        except asyncio.CancelledError:
            raise
        except Exception:
            # a MongoDB hiccup: the next event (or a resync) brings the state; the hub lives on
            log.warning("could not render an event of %s", topic.channel, exc_info=True)
        finally:
            if throttle is not None:
                throttle.task = None
                if self.topics.get(topic.channel) is topic:
                    delay = max(0.0, throttle.last + self.interval - time.monotonic())
                    throttle.timer = asyncio.get_running_loop().call_later(
                        delay, self._on_timer, topic, key, throttle
                    )
