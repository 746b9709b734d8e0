"""WebSocket transport on /graphql: both protocols, with what Strawberry leaves to the app.

* ``connection_init`` payload ``{"Authorization": "Key ..."}`` is kept on the connection's scope
  (``state.connection_params``) so the view's ``on_ws_connect`` authenticates from it, falling
  back to the upgrade request's header. A refusal closes graphql-transport-ws with 4403 and
  answers legacy graphql-ws with ``connection_error`` (then close 1011), as each protocol says.
* graphql-transport-ws: the server pings every ``keep_alive_interval`` seconds after the ack
  (Strawberry only answers pings); legacy graphql-ws gets Strawberry's ``ka`` messages.
* The per-connection subscription cap answers with a typed error (``extensions.code``
  ``TOO_MANY``) on the operation, never closing the connection.
* Messages go out as text frames: browsers' graphql-ws clients parse ``event.data`` as text.
* Access lost while an operation runs (``app.live.access``): the operation ends with the
  protocol's ``error`` message (graphql-transport-ws: ``payload`` a list of errors; graphql-ws:
  ``payload`` one error, and no ``complete`` after it), never a ``next``/``data`` with errors.
  When the connection's key no longer authenticates, every operation gets ``UNAUTHENTICATED``
  and then the connection is closed with 4403 (Forbidden) on both protocols, the code of a
  refused ``connection_init``; a lost membership or role ends only the operations concerned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from app.core.aio import cancel_and_wait
from app.core.errors import ErrorCode
from app.graphql.context import Context
from app.live.access import LIVE_GUARD, Guard, access_lost
from app.live.execution import DISCONNECTED, LIVE_SINK, LiveSink, message_prefix

CAP_MESSAGE = "too many subscriptions on this connection (at most {cap})"
REVOKED_CLOSE = (4403, "Forbidden")  # the key no longer authenticates: as a refused connection_init
REVOKED_GRACE_S = 1.0  # how long the operations' error messages may take before the close


SERVER_SEND = "labelstream.server_send"  # scope key: the ASGI ``send`` the server gave a WebSocket


class ServerSendMiddleware:
    """Keeps the server's own ASGI ``send`` of a WebSocket connection in its scope
    (``SERVER_SEND``), for the live hub's sends to parked subscribers (``LiveSink``). Outermost:
    Starlette's error middleware passes WebSocket ``send`` through unwrapped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


def _live_sink(adapter: Any, prefix: str, done: Callable[[], bool]) -> LiveSink | None:
    """The operation's sink, or None when its WebSocket is not ours (tests' adapters)."""
    if not isinstance(adapter, TextWebSocketAdapter):
        return None
    ws = adapter.ws
    return LiveSink(ws.send_text, prefix, done, websocket=ws, server_send=ws.scope.get(SERVER_SEND))


def cap_error(cap: int) -> dict[str, Any]:
    return {"message": CAP_MESSAGE.format(cap=cap), "extensions": {"code": ErrorCode.TOO_MANY.value}}


def _remember_params(context: Context, message: Mapping[str, Any]) -> None:
    payload = message.get("payload")
    if isinstance(payload, dict):
        context.request.scope.setdefault("state", {})["connection_params"] = payload


def connection_authorization(params: Any) -> str | None:
    """The ``Authorization`` entry of a ``connection_init`` payload (any letter case)."""
    if not isinstance(params, dict):
        return None
    for name, value in params.items():
        if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
            return value
    headers = params.get("headers")  # some clients nest them: {"headers": {...}}
    return connection_authorization(headers) if isinstance(headers, dict) else None


def _guard(context: Context, closer: Callable[[], Awaitable[None]]) -> Guard | None:
    """A guard for an acknowledged connection (None without a live hub)."""
    hub = getattr(context.runtime, "live", None)
    principal = context.principal_or_none
    if hub is None or principal is None:
        return None
    guard: Guard = hub.access.guard(principal.user_id, principal.key_id, closer)
    return guard


def _release(context: Context, guard: Guard | None) -> None:
    hub = getattr(context.runtime, "live", None)
    if hub is not None and guard is not None:
        hub.access.release(guard)


async def _close_revoked(websocket: Any, tasks: list[asyncio.Task[Any]]) -> None:
    """Close once the operations (each ended with UNAUTHENTICATED) have sent their errors."""
    if tasks:
        await asyncio.wait(tasks, timeout=REVOKED_GRACE_S)
    with contextlib.suppress(*DISCONNECTED, WebSocketDisconnected, RuntimeError, OSError):
        await websocket.close(*REVOKED_CLOSE)


class _UntilAccessLost:
    """A result stream that stops at a result ending the operation, sending the protocol's
    ``error`` message for it instead (Strawberry would send it as ``next``, then ``complete``)."""

    def __init__(self, operation: Operation[Context, None], source: Any) -> None:
        self._operation = operation
        self._source = source

    def __aiter__(self) -> _UntilAccessLost:
        return self

    async def __anext__(self) -> Any:
        result = await self._source.__anext__()
        errors = access_lost(getattr(result, "errors", None))
        if errors:
            await self._operation.send_initial_errors(errors)  # marks it completed, frees its id
            raise StopAsyncIteration
        return result


class TextWebSocketAdapter(ASGIWebSocketAdapter):
    """Text frames; a message to a client that just left is dropped, not raised.

    Raising would end the operation task with an error that the legacy handler never cleans up
    (its result stream stays open until garbage collection, holding the live subscription);
    the connection's reader sees the disconnect and closes every operation properly.
    """

    async def send_json(self, message: Mapping[str, object]) -> None:
        with contextlib.suppress(*DISCONNECTED):
            await self.ws.send_text(orjson.dumps(message).decode())


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    _ping_task: asyncio.Task[None] | None = None
    _guard: Guard | None = None

    async def handle_connection_init(self, message: Any) -> None:
        if not self.connection_init_received:
            _remember_params(self.context, message)
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._guard is None:
            self._guard = _guard(self.context, self._revoked)
        interval = getattr(self.view, "keep_alive_interval", None) if self.view.keep_alive else None
        if self.connection_acknowledged and interval and self._ping_task is None:
            self._ping_task = asyncio.create_task(self._ping(float(interval)))

    async def _ping(self, interval: float) -> None:
        with contextlib.suppress(WebSocketDisconnected, RuntimeError, OSError):
            while True:
                await asyncio.sleep(interval)
                await self.send_message({"type": "ping"})

    async def _revoked(self) -> None:
        tasks = [op.task for op in self.operations.values() if op.task is not None]
        await _close_revoked(self.websocket, tasks)

    async def shutdown(self) -> None:
        task, self._ping_task = self._ping_task, None
        await cancel_and_wait(task)
        guard, self._guard = self._guard, None
        _release(self.context, guard)
        await super().shutdown()

    async def _send_result_stream(self, operation: Operation[Context, None], result_source: Any) -> None:
        # a plain async iterator (not a generator): nothing left to finalize when it is dropped
        stream: Any = _UntilAccessLost(operation, result_source)
        await super()._send_result_stream(operation, stream)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # The operation's own task: what it sets here is seen by its stream and executor only.
        LIVE_GUARD.set(self._guard)
        # over once completed or stopped by the client (its id may then be reused)
        operations = self.operations
        sink = _live_sink(
            self.websocket,
            message_prefix(operation.id, "next"),
            lambda: operation.completed or operations.get(operation.id) is not operation,
        )
        if sink is not None:
            LIVE_SINK.set(sink)
        await super().run_operation(operation)

    async def handle_subscribe(self, message: Any) -> None:
        cap = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and cap is not None
            and message.get("id") not in self.operations
            and len(self.operations) >= cap
        ):
            error: Any = {"id": message["id"], "type": "error", "payload": [cap_error(cap)]}
            await self.send_message(error)
            return
        await super().handle_subscribe(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    _guard: Guard | None = None
    _ended: set[asyncio.Task[Any]] | None = None  # operation tasks whose last message was `error`

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        # The operation's own task (see TransportWSHandler.run_operation).
        LIVE_GUARD.set(self._guard)
        # over once stopped, or restarted by the client under the same id
        task, tasks = asyncio.current_task(), self.tasks
        sink = _live_sink(
            self.websocket, message_prefix(operation_id, "data"), lambda: tasks.get(operation_id) is not task
        )
        if sink is not None:
            LIVE_SINK.set(sink)
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def handle_connection_init(self, message: Any) -> None:
        _remember_params(self.context, message)
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._guard is None:
            self._guard = _guard(self.context, self._revoked)

    async def _revoked(self) -> None:
        await _close_revoked(self.websocket, list(self.tasks.values()))

    async def cleanup(self) -> None:
        guard, self._guard = self._guard, None
        _release(self.context, guard)
        await super().cleanup()

    async def send_data_message(self, execution_result: Any, operation_id: str) -> None:
        errors = access_lost(execution_result.errors)
        if not errors:
            await super().send_data_message(execution_result, operation_id)
            return
        # the operation ends here: its `error`, and no `complete` after it
        task = asyncio.current_task()
        if task is not None:
            if self._ended is None:
                self._ended = set()
            self._ended.add(task)
        error: Any = {"type": "error", "id": operation_id, "payload": errors[0].formatted}
        await self.send_message(error)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "complete" and self._ended:
            task = asyncio.current_task()
            if task in self._ended:
                self._ended.discard(task)
                return
        await super().send_message(message)

    async def handle_start(self, message: Any) -> None:
        cap = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and cap is not None
            and message.get("id") not in self.tasks
            and len(self.tasks) >= cap
        ):
            error: Any = {"type": "error", "id": message["id"], "payload": cap_error(cap)}
            await self.send_message(error)
            return
        await super().handle_start(message)
