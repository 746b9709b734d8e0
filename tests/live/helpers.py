"""A small GraphQL-over-WebSocket client speaking both protocols (graphql-transport-ws and the
legacy graphql-ws), and helpers to run API processes and workers as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from app.embedded import free_port

TRANSPORT = "graphql-transport-ws"
LEGACY = "graphql-ws"

PROGRESS = """subscription($t: ID!) { labelingTaskProgress(taskId: $t) {
  taskId status final snapshot reviewedPercent metrics { inputsTotal processed labelingPercent } } }"""
PROGRESS_REVIEW = """subscription($t: ID!) { labelingTaskProgress(taskId: $t) {
  taskId status final snapshot reviewedPercent metrics { reviewedPercent inputsToReview reviewed } } }"""


class Client:
    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.ack: dict[str, Any] | None = None
        self.pending: list[dict[str, Any]] = []  # received for another operation than asked
        self.pings = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, wait: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), wait)
        assert isinstance(raw, str), "messages must be text frames"
        message: dict[str, Any] = orjson.loads(raw)
        return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        while True:
            message = await self.recv()
            if message["type"] in ("ka", "ping"):
                continue
            return message

    async def subscribe(self, op_id: str, query: str, **variables: Any) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT else "start"
        await self.send({"id": op_id, "type": kind, "payload": {"query": query, "variables": variables}})

    async def stop(self, op_id: str) -> None:
        await self.send({"id": op_id, "type": "complete" if self.protocol == TRANSPORT else "stop"})

    async def next(self, op_id: str | None = None, wait: float = 10.0) -> dict[str, Any]:
        """The next message of an operation within ``wait`` seconds (keep-alives counted, skipped)."""
        for k, message in enumerate(self.pending):
            if op_id is None or message.get("id") == op_id:
                return self.pending.pop(k)
        deadline = time.monotonic() + wait
        while True:
            message = await self.recv(max(0.0, deadline - time.monotonic()))
            if message["type"] in ("ka", "ping", "pong"):
                self.pings += 1
                if message["type"] == "ping":
                    await self.send({"type": "pong"})
                continue
            if op_id is None or message.get("id") == op_id:
                return message
            self.pending.append(message)

    async def data(self, op_id: str, field: str, wait: float = 10.0) -> dict[str, Any]:
        message = await self.next(op_id, wait)
        assert message["type"] in ("next", "data"), message
        assert "errors" not in message["payload"], message
        value: dict[str, Any] = message["payload"]["data"][field]
        return value


@contextlib.asynccontextmanager
async def client(
    url: str,
    protocol: str = TRANSPORT,
    *,
    key: str | None = None,
    header_key: str | None = None,
    init: bool = True,
    deflate: bool = False,
) -> AsyncIterator[Client]:
    """``deflate=True``: the client offers permessage-deflate (the test server accepts it; the
    default ``labelstream serve`` does not, see ``ws_per_message_deflate``)."""
    headers = {"Authorization": f"Key {header_key}"} if header_key else None
    compression = "deflate" if deflate else None
    async with connect(
        url,
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers,
        max_size=2**22,
        compression=compression,
    ) as ws:
        c = Client(ws, protocol)
        if init:
            c.ack = await c.init({"Authorization": f"Key {key}"} if key else {})
            assert c.ack["type"] == "connection_ack", c.ack
        yield c


def env_for(mongodb_url: str, redis_url: str, db: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MONGODB_URL": mongodb_url,
            "REDIS_URL": redis_url,
            "LABELSTREAM_MONGODB_DB": db,
            "LABELSTREAM_DATA_DIR": str(data_dir),
            "LABELSTREAM_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "LABELSTREAM_TASK_BATCH_SIZE": "2",
            "LABELSTREAM_KEY_LAST_USED_RESOLUTION_S": "0",
        }
    )
    env.update(extra)
    return env


class ApiProcess:
    """``python -m app.cli serve`` on a free 127.0.0.1 port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.http_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"API did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def api_processes(n: int, env: dict[str, str], tmp: Path) -> Iterator[list[ApiProcess]]:
    procs = [ApiProcess(env, tmp / f"api-{k}.log") for k in range(n)]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


def run_worker(env: dict[str, str], log_path: Path, timeout: float = 120.0) -> None:
    """One ``python -m app.cli worker --burst``: runs every queued job, then exits."""
    with log_path.open("ab") as log:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "worker", "--burst"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    assert done.returncode == 0, log_path.read_text()[-3000:]
