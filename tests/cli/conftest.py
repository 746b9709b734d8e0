"""A real ``labelstream up`` for the client commands, and a way to run them as a user would.

The server runs on the test engines (the session's MongoDB and Redis, its own database name),
so the same tests run on nx-27017 and FerretDB. Every command runs as a separate process from a
folder of its own with its own HOME / XDG folders: nothing of the repository, no data folder.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.embedded import EmbeddedRedis, free_port
from tests.servers import Servers

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    key: str
    data_dir: Path
    env: dict[str, str]
    log: Path

    def gql(self, query: str, key: str | None = None, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Key {key or self.key}"},
            timeout=60,
        )
        body: dict[str, Any] = response.json()
        assert not body.get("errors"), body
        return body["data"]


@pytest.fixture(scope="session")
def cli_server(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-server")
    port = free_port()
    # A Redis of its own: the worker of this `up` must not take the session's jobs (it would
    # look for their tasks in its own database and the session's tasks would never finish).
    redis = EmbeddedRedis(root / "redis", persist=False)
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELSTREAM_")}
    env.update(
        MONGODB_URL=servers.mongodb_url,
        REDIS_URL=redis.url,
        LABELSTREAM_MONGODB_DB=f"labelstream_cli_{secrets.token_hex(4)}",
        LABELSTREAM_FETCH_ALLOW_PRIVATE_NETWORKS="true",  # URL inputs served from 127.0.0.1
        LABELSTREAM_TASK_BATCH_SIZE="4",
        LABELSTREAM_KEY_LAST_USED_RESOLUTION_S="0",
        PYTHONPATH=str(ROOT),
    )
    data_dir = root / "data"
    log = root / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        key = _wait_for_key(proc, log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the API did not answer:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        yield Server(url, key, data_dir, env, log)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        redis.stop()


def _wait_for_key(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("API key: "):
                return line.removeprefix("API key: ").strip()
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail("labelstream up printed no key:\n" + log.read_text()[-3000:])


@dataclass
class Client:
    """Runs ``labelstream`` as a user of another machine would: from ``cwd``, with HOME and the
    XDG folders under ``home``; no repository, no data folder, no server variables."""

    cwd: Path
    home: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "labelstream" / "config.json"

    @property
    def state_dir(self) -> Path:
        return self.home / "state" / "labelstream"

    def env(self) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LABELSTREAM_") and k not in ("MONGODB_URL", "REDIS_URL")
        }
        base.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_STATE_HOME=str(self.home / "state"),
            PYTHONPATH=str(ROOT),
            COLUMNS="200",
        )
        base.update(self.extra)
        return base

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str, timeout: float = 300) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture
def client(tmp_path: Path) -> Client:
    cwd = tmp_path / "work"
    home = tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return Client(cwd, home)


@pytest.fixture
def logged_in(client: Client, cli_server: Server) -> Client:
    client.ok("login", "--url", cli_server.url, "--key", cli_server.key)
    return client


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
