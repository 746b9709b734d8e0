"""A shared event's WebSocket frame, built once and written straight to each connection.

To send a text message, uvicorn's websockets-sansio protocol (what ``labelstream serve`` runs)
frames it with ``websockets`` (``Protocol.send_text``: a ``Frame``, its serialization, the
protocol's output buffer) and writes the bytes to the connection's transport. For an event the
hub sends to a thousand subscribers of the same operation, that is the same bytes built a
thousand times, inside a coroutine per subscriber. Here they are built once per distinct
message (``text_frame``: an unmasked, unfragmented text frame, RFC 6455 section 5.2, exactly
what ``websockets`` produces for a server without extensions) and written with one
``transport.write`` per subscriber, as a plain broadcast's socket write.

Only while the connection is in the state where uvicorn itself would do nothing else
(``RawConnection.ready``): handshake done, open, nothing closing or sent to close, writing not
paused by flow control, and no extension negotiated (permessage-deflate changes the frame).
Anything else, or another server, returns ``None`` from ``raw_connection`` or ``False`` from
``ready``, and the message takes the server's own ``send``.
"""

from __future__ import annotations

import struct
from typing import Any

TEXT_FIN = 0x81  # FIN bit + opcode 1 (text)

try:  # the server and protocol library labelstream serve runs; absent: never raw
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State

    OPEN: Any = State.OPEN
except ImportError:  # pragma: no cover - both are dependencies
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]
    OPEN = None


def text_frame(data: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying ``data`` (UTF-8), as a server sends it."""
    n = len(data)
    if n < 126:
        return bytes((TEXT_FIN, n)) + data
    if n < 1 << 16:
        return struct.pack("!BBH", TEXT_FIN, 126, n) + data
    return struct.pack("!BBQ", TEXT_FIN, 127, n) + data


class RawConnection:
    """Uvicorn's protocol object of one WebSocket connection, written to directly when ready."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def ready(self) -> bool:
        """True when uvicorn's own send of a text message would only frame it and write it."""
        p = self._protocol
        return (
            p.handshake_complete
            and not p.close_sent
            and not p.disconnected
            and p.initial_response is None
            and p.writable.is_set()
            and p.conn.state is OPEN
            and not p.conn.extensions
            and not p.conn.expect_continuation_frame
            and not p.transport.is_closing()
        )

    def write(self, frame: bytes) -> None:
        self._protocol.transport.write(frame)


def raw_connection(server_send: Any) -> RawConnection | None:
    """The connection behind the ASGI ``send`` a server gave a WebSocket, when it is uvicorn's
    websockets-sansio protocol with the attributes ``ready`` reads; otherwise None."""
    protocol = getattr(server_send, "__self__", None)
    if WebSocketsSansIOProtocol is None or type(protocol) is not WebSocketsSansIOProtocol:
        return None
    needed = ("handshake_complete", "close_sent", "disconnected", "initial_response", "writable", "transport")
    conn = getattr(protocol, "conn", None)
    if not all(hasattr(protocol, name) for name in needed) or conn is None:
        return None
    if not all(hasattr(conn, name) for name in ("state", "extensions", "expect_continuation_frame")):
        return None
    return RawConnection(protocol)
