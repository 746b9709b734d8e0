"""FerretDB 1.24 (SQLite backend) as a throw-away MongoDB-wire test server.

FerretDB is the second engine the test suite runs on (see design/MONGODB.md).
The binary is built by ``.ci/build-ferretdb.sh``; :func:`find_ferretdb_binary`
locates it.
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
from pathlib import Path
from typing import IO, Self

import pymongo
import pymongo.errors

__all__ = ["DEFAULT_BIN_DIR", "ENV_VAR", "FerretDBServer", "find_ferretdb_binary"]

ENV_VAR = "LABELSTREAM_FERRETDB_BIN"
DEFAULT_BIN_DIR = Path.home() / ".cache" / "labelstream" / "ferretdb" / "bin"

_LOG_NAME = "ferretdb.log"
_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # a free port we picked can be taken before FerretDB binds it
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Like app.embedded: the server gets SIGTERM if the test run dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _PortTakenError(RuntimeError):
    """Another server answered on the port picked for FerretDB."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_ferretdb_binary() -> str | None:
    """Return the FerretDB binary to use, or None if there is none.

    Looks at ``$LABELSTREAM_FERRETDB_BIN``, then ``ferretdb`` on ``PATH``, then
    the default bin dir of ``.ci/build-ferretdb.sh``. An env var that is set
    but does not name an executable is an error, not a reason to fall back.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        if not _is_executable(Path(configured)):
            msg = f"{ENV_VAR}={configured!r} is not an executable file"
            raise RuntimeError(msg)
        return configured
    on_path = shutil.which("ferretdb")
    if on_path is not None:
        return on_path
    default = DEFAULT_BIN_DIR / "ferretdb"
    if _is_executable(default):
        return str(default)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class FerretDBServer:
    """One FerretDB process on free 127.0.0.1 ports, with its data in data_dir."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / _LOG_NAME
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The MongoDB connection URL of the running server."""
        if self.port is None:
            msg = "FerretDBServer is not started"
            raise RuntimeError(msg)
        return f"mongodb://127.0.0.1:{self.port}/"

    def _command(self, port: int, debug_port: int) -> list[str]:
        # The SQLite URL must name an existing directory and end with a slash.
        return [
            self.binary,
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir}/",
            f"--listen-addr=127.0.0.1:{port}",
            f"--state-dir={self.data_dir}",
            f"--debug-addr=127.0.0.1:{debug_port}",
            "--telemetry=disable",
            "--log-level=error",  # WARN logs every failed command, with its body
        ]

    def start(self, timeout: float = 30) -> None:
        """Start FerretDB and wait until it answers ``ping``.

        Raises RuntimeError, with the tail of the log, if the process exits or
        does not answer within ``timeout`` seconds.
        """
        if self._proc is not None:
            msg = "FerretDBServer is already started"
            raise RuntimeError(msg)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempt = 1
        while True:
            port, debug_port = _free_port(), _free_port()
            while debug_port == port:
                debug_port = _free_port()
            self._log = self.log_path.open("ab")
            self._proc = subprocess.Popen(
                self._command(port, debug_port),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            self.port = port
            try:
                self._wait_ready(self._proc, port, deadline)
            except RuntimeError as exc:
                died = self._proc.poll() is not None
                port_taken = isinstance(exc, _PortTakenError) or (
                    died and "address already in use" in _tail(self.log_path)
                )
                self.stop()
                if not (port_taken and attempt < _START_ATTEMPTS):
                    raise
                attempt += 1
            else:
                return

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
        url = self.url
        while True:
            code = proc.poll()
            if code is not None:
                msg = (
                    f"FerretDB exited with code {code} during start-up "
                    f"(log {self.log_path}):\n{_tail(self.log_path)}"
                )
                raise RuntimeError(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"FerretDB did not answer ping on {url} in time "
                    f"(log {self.log_path}):\n{_tail(self.log_path)}"
                )
                raise RuntimeError(msg)
            if not _port_open(port, min(remaining, 0.5)):
                # Cheaper and more prompt than a MongoClient, whose server selection
                # waits ~500 ms before retrying a refused connection.
                time.sleep(0.02)
                continue
            wait_ms = max(50, min(2000, int(remaining * 1000)))
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                url,
                serverSelectionTimeoutMS=wait_ms,
                connectTimeoutMS=wait_ms,
                directConnection=True,
            )
            try:
                client.admin.command("ping")
                # The port was free when picked; make sure the answer is from our process.
                pid = client.admin.command("serverStatus").get("pid")
            except pymongo.errors.PyMongoError:
                time.sleep(0.05)
                continue
            finally:
                client.close()
            if pid is not None and pid != proc.pid:
                msg = f"port {port} is served by another process (pid {pid})"
                raise _PortTakenError(msg)
            return

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` s (10), then SIGKILL. Safe to call again."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    def __enter__(self) -> Self:
        """Start the server (default timeout) for a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()
