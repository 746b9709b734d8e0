"""Execute and encode a shared event once per distinct operation, not once per subscriber.

graphql-core runs a subscription's selection set for every event of every subscriber, and
Strawberry then wraps, encodes and sends each result on its own. For an event that reaches a
thousand subscribers of the same operation (same document, same variables), that is a
thousand identical executions and encodings (PERFORMANCE.md: naive fan-out to 1,000
subscribers is 5-6x slower than a raw broadcast). Frames the hub shares (``SharedFrame``)
carry a small cache:

* a subscriber's first message (the snapshot) goes the usual way; that execution tells its
  ``LiveSink`` (set by the transport for the operation) the operation's cache key and executor;
* for a later event, the hub executes the frame once per distinct operation with one of those
  executors (``LiveSink.encode``), keeps the JSON encoding of a result without errors, and
  writes it with each subscriber's own operation id straight to the socket of every
  subscriber waiting for it (``app.live.hub``); a subscriber that was busy meanwhile finds
  the same encoding when it gets to the event. Neither graphql-core nor Strawberry runs per
  subscriber. A result with errors goes the usual way for everyone.

Only frames whose fields do not depend on the caller may be shared: they are plain data built
by the live renderers, with no resolver reading ``info.context``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

import orjson
from graphql import ExecutionResult
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected, WebSocketState

from app.graphql.execution import PlainFieldsExecutor
from app.live.frames import RawConnection, raw_connection, text_frame

CacheKey = tuple[int, str]


class SharedFrame:
    """Mixin for event types the hub sends to many subscribers."""

    def live_results(self) -> dict[CacheKey, Any]:
        """(operation id, variables) -> (operation, result, encoded payload or None)."""
        cache: dict[CacheKey, Any] | None = self.__dict__.get("_live_results")
        if cache is None:
            cache = self.__dict__["_live_results"] = {}
        return cache

    def encoded_payload(self, key: CacheKey) -> str | None:
        """The JSON payload (``{"data": ...}``) another subscriber of the same operation built."""
        cache: dict[CacheKey, Any] | None = self.__dict__.get("_live_results")
        hit = cache.get(key) if cache is not None else None
        return hit[2] if hit is not None else None


class LiveSink:
    """One subscription operation's way to send an encoded payload without Strawberry.

    Set by the transport in the operation's task (``LIVE_SINK``). The executor records the
    operation's cache key and its executor on it the first time it executes a shared frame
    (the snapshot); from then on the hub can execute and encode a new frame for this operation
    itself (``encode``), once for all subscribers of the same operation, and send it.

    With ``server_send`` (the ASGI ``send`` the server gave the connection, see
    ``ServerSendMiddleware``) a message goes to the server in one call while the connection is
    open, instead of through Starlette's WebSocket and the exception middleware's wrapper: the
    same ``websocket.send`` text message, minus two awaits and their checks per subscriber.
    Anything else (accept, close, a connection Starlette already saw closed) stays with
    Starlette's WebSocket. When that server is uvicorn's websockets-sansio protocol, ``write``
    skips even the server's ``send``: the message's frame, built once for every subscriber of
    the same operation id, goes straight to the connection's transport (``app.live.frames``).
    """

    __slots__ = ("_done", "_prefix", "_raw", "_send", "_server_send", "_websocket", "executor", "key")

    def __init__(
        self,
        send_text: Callable[[str], Coroutine[Any, Any, None]],
        prefix: str,
        done: Callable[[], bool],
        *,
        websocket: WebSocket | None = None,
        server_send: Callable[[Message], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self._send = send_text  # Starlette's WebSocket.send_text: text frames
        self._prefix = prefix  # '{"id":"1","type":"next","payload":' (protocol-specific)
        self._done = done
        self._websocket = websocket
        self._server_send = server_send if websocket is not None else None
        self._raw: RawConnection | None = raw_connection(self._server_send)
        self.key: CacheKey | None = None
        self.executor: SharedEventExecutor | None = None

    def encoded(self, frame: Any) -> str | None:
        """The frame's payload for this operation if a subscriber already encoded it."""
        if self.key is None or not isinstance(frame, SharedFrame):
            return None
        return frame.encoded_payload(self.key)

    def encode(self, frame: Any) -> str | None:
        """The frame's payload for this operation, executing it here if nobody did yet.

        None when it cannot be sent pre-encoded (errors, or a resolver that must be awaited):
        the subscriber then takes the usual way.
        """
        if self.key is None or self.executor is None or not isinstance(frame, SharedFrame):
            return None
        if self.key not in frame.live_results():
            result = self.executor.build_per_event_executor(frame).execute_operation(False)
            if inspect.iscoroutine(result):  # never for the live types: they are plain data
                result.close()
                return None
        return frame.encoded_payload(self.key)

    def message(self, payload: str) -> Coroutine[Any, Any, None] | None:
        """The send of one message carrying ``payload`` (not started), or None when the
        operation is over. A client that left makes it raise one of ``DISCONNECTED``."""
        if self._done():
            return None
        text = self._prefix + payload + "}"
        server_send = self._server_send
        if server_send is not None and self._websocket.application_state is WebSocketState.CONNECTED:  # type: ignore[union-attr]
            return server_send({"type": "websocket.send", "text": text})
        return self._send(text)

    def write(self, payload: str, frames: dict[tuple[str, str], bytes]) -> bool:
        """Write the message carrying ``payload`` to the connection's transport at once, its
        frame taken from ``frames`` (built there by the first subscriber with the same operation
        id). False when it must go by ``message`` instead: another server, a connection not in a
        state to take it this way (flow control, closing, an extension), the operation over."""
        raw = self._raw
        if (
            raw is None
            or self._done()
            or self._websocket.application_state is not WebSocketState.CONNECTED  # type: ignore[union-attr]
            or not raw.ready()
        ):
            return False
        key = (self._prefix, payload)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = text_frame((self._prefix + payload + "}").encode())
        raw.write(frame)
        return True

    async def send(self, payload: str) -> None:
        send = self.message(payload)
        if send is not None:
            with contextlib.suppress(*DISCONNECTED):
                await send


# what sending to a client that just left raises: Starlette's exceptions, or the server's own
# (uvicorn's ClientDisconnected is an OSError) when the message went to the server directly
DISCONNECTED: tuple[type[Exception], ...] = (WebSocketDisconnect, WebSocketDisconnected, OSError)

LIVE_SINK: ContextVar[LiveSink | None] = ContextVar("labelstream_live_sink", default=None)


def message_prefix(operation_id: str, message_type: str) -> str:
    """The start of a protocol message with this id and type, up to its payload."""
    return '{"id":' + orjson.dumps(operation_id).decode() + ',"type":"' + message_type + '","payload":'


class SharedEventExecutor(PlainFieldsExecutor):  # plain objects completed in one step too
    def execute_operation(self, serially: bool | None = None) -> Any:
        root = self.root_value
        if not isinstance(root, SharedFrame):
            return super().execute_operation(serially)
        cache = root.live_results()
        # The parsed operation is the same object for every subscriber of the same query text
        # (ParserCache); it is kept in the entry so its id cannot be reused meanwhile.
        key = (id(self.operation), repr(sorted(self.variable_values.coerced.items())))
        sink = LIVE_SINK.get()
        if sink is not None:
            sink.key, sink.executor = key, self
        hit = cache.get(key)
        if hit is not None:
            return hit[1]
        result = super().execute_operation(serially)
        if self.is_awaitable(result):

            async def remember() -> Any:
                value = await result
                self._remember(cache, key, value)
                return value

            return remember()
        self._remember(cache, key, result)
        return result

    def _remember(self, cache: dict[CacheKey, Any], key: CacheKey, result: Any) -> None:
        # Only a plain result without errors or extensions is sent pre-encoded; anything else
        # goes through Strawberry for every subscriber.
        encoded = None
        if isinstance(result, ExecutionResult) and not result.errors and not result.extensions:
            encoded = orjson.dumps({"data": result.data}).decode()
        cache[key] = (self.operation, result, encoded)


def install(schema: Any) -> None:
    """Use the shared-event executor for every operation of ``schema`` (queries unaffected)."""
    schema.execution_context_class = SharedEventExecutor
