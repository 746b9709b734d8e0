"""GraphQL subscriptions over WebSocket with the ``graphql-transport-ws`` protocol.

One connection carries several operations (ids ``"0"``, ``"1"``, ...). The API key travels in
``connection_init``'s payload, as the server expects (``app/live/transport.py``); a refused key
closes the socket with 4403. Server pings are answered with pongs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from app.client.api import Api
from app.client.errors import ClientError, KeyRefused, Unreachable

PROTOCOL = "graphql-transport-ws"


def _recv(ws: ClientConnection, timeout: float | None) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=timeout))
    if message.get("type") == "ping":
        ws.send(json.dumps({"type": "pong"}))
    return message if isinstance(message, dict) else {}


def subscribe(
    api: Api, document: str, variable_sets: Sequence[dict[str, Any]], ack_timeout: float = 15.0
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(operation index, data)`` for every ``next`` message; ``(index, None)`` when an
    operation completes. Stops when every operation completed; the caller may stop earlier."""
    try:
        ws = connect(
            api.ws_url,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            proxy=None,
            open_timeout=10,
            user_agent_header="labelstream-cli",
        )
    except InvalidStatus as exc:
        raise Unreachable(f"{api.ws_url} refused the WebSocket upgrade ({exc})") from None
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise Unreachable(f"cannot open a WebSocket to {api.ws_url} ({exc})") from None
    with ws:
        try:
            yield from _operations(ws, api, document, variable_sets, ack_timeout)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 4403:
                raise KeyRefused(f"{api.url} refused the API key on the WebSocket") from None
            raise Unreachable(f"the WebSocket to {api.ws_url} closed ({exc})") from None
        except TimeoutError:
            raise Unreachable(f"{api.ws_url} did not acknowledge the connection") from None


def _operations(
    ws: ClientConnection, api: Api, document: str, variable_sets: Sequence[dict[str, Any]], ack_timeout: float
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Key {api.target.key}"}}))
    while _recv(ws, ack_timeout).get("type") != "connection_ack":
        pass
    for index, variables in enumerate(variable_sets):
        operation = {"query": document, "variables": variables}
        ws.send(json.dumps({"id": str(index), "type": "subscribe", "payload": operation}))
    open_ops = set(range(len(variable_sets)))
    while open_ops:
        message = _recv(ws, None)
        kind, ident = message.get("type"), message.get("id")
        if kind not in ("next", "error", "complete") or ident is None:
            continue
        index = int(ident)
        if kind == "next":
            payload = message.get("payload") or {}
            if payload.get("errors"):
                _raise(payload["errors"])
            data: dict[str, Any] = payload.get("data") or {}
            yield index, data
        elif kind == "error":
            _raise(message.get("payload") or [])
        else:
            open_ops.discard(index)
            yield index, None


def _raise(errors: Any) -> None:
    first = errors[0] if isinstance(errors, list) and errors else errors
    if not isinstance(first, dict):
        raise ClientError(str(first))
    code = (first.get("extensions") or {}).get("code")
    if code == "UNAUTHENTICATED":
        raise KeyRefused(str(first.get("message")))
    raise ClientError(str(first.get("message")), code=code)
