"""A shared event's WebSocket frame built once (``app.live.frames``): the very bytes the
protocol library builds for a server's text message, and only for uvicorn's own protocol."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from app.live.frames import raw_connection, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_is_what_websockets_sends_for_a_server(size: int) -> None:
    data = ("é" * size).encode()[:size]  # multi-byte UTF-8 (the cut at an odd size is bytes only)
    assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


class _OtherProtocol:
    async def send(self, message: Any) -> None: ...


@pytest.mark.parametrize(
    "server_send",
    [None, print, _OtherProtocol().send, lambda message: None],
    ids=["none", "a-function", "another-server's-send", "a-lambda"],
)
def test_another_server_is_never_written_to_directly(server_send: Any) -> None:
    assert raw_connection(server_send) is None
