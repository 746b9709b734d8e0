"""FerretDB 2 on PostgreSQL with Microsoft's DocumentDB extension, as a throw-away test engine.

FerretDB 2 is the second MongoDB-wire engine the test suite runs on (see design/MONGODB.md):
unlike FerretDB 1.24 on SQLite it uses indexes and applies single-document updates atomically,
like MongoDB. Both parts are built by ``.ci/build-ferretdb2.sh``: the extensions go into
Debian's PostgreSQL 15, FerretDB into ``~/.cache/labelstream/ferretdb2/bin``.

:class:`FerretDBServer` starts a PostgreSQL cluster of its own (``initdb`` in a fresh folder, a
free loopback port, the settings of ``../shared/vendor/README.md``, ``CREATE EXTENSION
documentdb CASCADE``) and FerretDB in front of it; ``stop`` stops both and removes the cluster.
PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` user
Debian's package creates.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Self

import pymongo
import pymongo.errors

__all__ = ["DEFAULT_BIN_DIR", "ENV_VAR", "FerretDBServer", "PostgresCluster", "find_ferretdb_binary"]

ENV_VAR = "LABELSTREAM_FERRETDB_BIN"
DEFAULT_BIN_DIR = Path.home() / ".cache" / "labelstream" / "ferretdb2" / "bin"
PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")

_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # a free port we picked can be taken before the server binds it
_PR_SET_PDEATHSIG = 1

# ../shared/vendor/README.md: DocumentDB's own settings, plus durability off for tests.
_POSTGRES_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'pg_cron,pg_documentdb_core,pg_documentdb'",
    "cron.database_name": "'postgres'",
    "documentdb.enableLetAndCollationForQueryMatch": "true",
    "documentdb.enableNowSystemVariable": "true",
    "documentdb.enableSortbyIdPushDownToPrimaryKey": "true",
    "documentdb.enableSchemaValidation": "true",
    "documentdb.enableBypassDocumentValidation": "true",
    "documentdb.enableUserCrud": "true",
    "documentdb.enableCompact": "true",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "'256MB'",
    "log_min_messages": "warning",
}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Like app.embedded: the server gets SIGTERM if the test run dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _PortTakenError(RuntimeError):
    """Another server answered on the port picked."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_ferretdb_binary() -> str | None:
    """Return the FerretDB 2 binary to use, or None if there is none.

    Looks at ``$LABELSTREAM_FERRETDB_BIN``, then the default bin dir of
    ``.ci/build-ferretdb2.sh``, then ``ferretdb`` on ``PATH``. An env var that is set but does
    not name an executable is an error, not a reason to fall back.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        if not _is_executable(Path(configured)):
            msg = f"{ENV_VAR}={configured!r} is not an executable file"
            raise RuntimeError(msg)
        return configured
    default = DEFAULT_BIN_DIR / "ferretdb"
    if _is_executable(default):
        return str(default)
    return shutil.which("ferretdb")


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


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PostgresCluster:
    """A PostgreSQL 15 cluster with DocumentDB in a folder of its own, on a free loopback port."""

    def __init__(self, bin_dir: Path = PG_BIN_DIR) -> None:
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user: dict[str, Any] = {}

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("PostgresCluster is not started")
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self) -> dict[str, Any]:
        """Popen arguments that run a server program as the cluster's owner."""
        if os.geteuid() != 0:
            return {}
        owner = pwd.getpwnam("postgres")
        return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60) -> None:
        if not _is_executable(self.bin_dir / "postgres"):
            raise RuntimeError(f"no PostgreSQL at {self.bin_dir}: run .ci/build-ferretdb2.sh first")
        # Not under pytest's tmp_path: its parents are private to root, and under root the
        # cluster belongs to the `postgres` user.
        self.root = Path(tempfile.mkdtemp(prefix="labelstream-pg-"))
        self._user = self._as_owner()
        if self._user:
            os.chown(self.root, self._user["user"], self._user["group"])
        data = self.root / "data"
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, cwd=self.root, **self._user,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            settings = {**_POSTGRES_SETTINGS, "port": str(port), "unix_socket_directories": f"'{self.root}'"}
            (data / "postgresql.auto.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
            if self._user:
                os.chown(data / "postgresql.auto.conf", self._user["user"], self._user["group"])
            log_path = self.root / "postgres.log"
            self._log = log_path.open("ab")
            self._proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(data)],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None, **self._user,
            )  # fmt: skip
            self.port = port
            if self._wait_ready(deadline):
                break
            died_of_port = "already in use" in _tail(log_path)
            self._stop_server()
            if not died_of_port or attempt == _START_ATTEMPTS:
                raise RuntimeError(f"PostgreSQL did not start (log {log_path}):\n{_tail(log_path)}")
        self.psql("CREATE EXTENSION IF NOT EXISTS documentdb CASCADE")

    def _wait_ready(self, deadline: float) -> bool:
        assert self._proc is not None and self.root is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def psql(self, sql: str) -> str:
        """Run one SQL statement as the superuser; its output, or RuntimeError with the message."""
        done = subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", "postgres", "-c", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr.strip()}")
        return done.stdout

    def _stop_server(self, timeout: float = _STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, no waiting for clients.
        _stop_process(proc, signal.SIGINT, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    def stop(self) -> None:
        """Stop the server and remove the cluster. Safe to call again."""
        self._stop_server()
        root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


class FerretDBServer:
    """FerretDB 2 on free 127.0.0.1 ports in front of a PostgreSQL cluster of its own."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / "ferretdb.log"
        self.postgres = PostgresCluster()
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The MongoDB connection URL of the running server."""
        if self.port is None:
            raise RuntimeError("FerretDBServer is not started")
        return f"mongodb://127.0.0.1:{self.port}/"

    def command(self, port: int, debug_port: int, postgresql_url: str) -> list[str]:
        return [
            self.binary,
            f"--postgresql-url={postgresql_url}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--debug-addr=127.0.0.1:{debug_port}",
            f"--state-dir={self.data_dir}",
            "--no-auth",
            "--telemetry=disable",
            "--log-level=error",  # WARN logs every failed command, with its body
        ]

    def start(self, timeout: float = 60) -> None:
        """Start PostgreSQL, then FerretDB, and wait until it answers ``ping``.

        Raises RuntimeError, with the tail of the log, if a process exits or does not answer
        within ``timeout`` seconds.
        """
        if self._proc is not None:
            raise RuntimeError("FerretDBServer is already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        self.postgres.start(timeout)
        try:
            self._start_ferretdb(deadline)
        except BaseException:
            self.stop()
            raise

    def _start_ferretdb(self, deadline: float) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port, debug_port = _free_port(), _free_port()
            while debug_port == port:
                debug_port = _free_port()
            self._log = self.log_path.open("ab")
            self._proc = subprocess.Popen(
                self.command(port, debug_port, self.postgres.url),
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
            self.port = port
            try:
                self._wait_ready(self._proc, port, deadline)
                return
            except RuntimeError as exc:
                died = self._proc.poll() is not None
                port_taken = isinstance(exc, _PortTakenError) or (
                    died and "address already in use" in _tail(self.log_path)
                )
                self._stop_ferretdb()
                if not (port_taken and attempt < _START_ATTEMPTS):
                    raise

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
        url = self.url
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"FerretDB exited with code {code} during start-up (log {self.log_path}):\n"
                    f"{_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"FerretDB did not answer ping on {url} in time (log {self.log_path}):\n{_tail(self.log_path)}"
                )
            if not _port_open(port, min(remaining, 0.5)):
                time.sleep(0.02)
                continue
            wait_ms = max(50, min(2000, int(remaining * 1000)))
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                url, serverSelectionTimeoutMS=wait_ms, connectTimeoutMS=wait_ms, directConnection=True
            )
            try:
                client.admin.command("ping")
                pid = client.admin.command("serverStatus").get("pid")
            except pymongo.errors.PyMongoError:
                time.sleep(0.05)
                continue
            finally:
                client.close()
            if pid is not None and pid != proc.pid:
                raise _PortTakenError(f"port {port} is served by another process (pid {pid})")
            return

    def _stop_ferretdb(self, timeout: float = _STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        _stop_process(proc, signal.SIGTERM, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop FerretDB, then PostgreSQL, and remove the cluster. Safe to call again."""
        self._stop_ferretdb(timeout)
        self.postgres.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
