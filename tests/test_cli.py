"""The ``labelstream`` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URL", "REDIS_URL")}
    env.pop("LABELSTREAM_TEST_ENGINE", None)
    return env


def _start_up(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("GraphiQL: "):
            break
    else:  # pragma: no cover - diagnostic
        proc.kill()
        pytest.fail("labelstream up did not start:\n" + "\n".join(lines))
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, lines
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()  # pragma: no cover
    pytest.fail("API did not answer:\n" + "\n".join(lines))  # pragma: no cover


def _server_pids(proc: subprocess.Popen[str], data_dir: Path) -> set[int]:
    """Every process `up` runs: its children, plus valkey (which daemonizes away)."""
    pids = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    valkey_pid = data_dir / "redis" / "valkey.pid"
    if valkey_pid.exists():
        pids.add(int(valkey_pid.read_text().strip()))
    return pids


def _me(port: int, key: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": "{ me { user { email } apps { nodes { name } } } }"},
        headers={"Authorization": f"Key {key}"},
        timeout=10,
    )


def _stop(proc: subprocess.Popen[str], sig: int, pids: set[int]) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids
    ):
        time.sleep(0.2)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"processes left behind: {alive}"


@pytest.mark.slow
def test_up_prints_a_key_serves_graphql_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    proc, lines = _start_up(data_dir, port)
    keys = [line.removeprefix("API key: ") for line in lines if line.startswith("API key: ")]
    assert len(keys) == 1, lines
    pids = _server_pids(proc, data_dir)
    assert len(pids) >= 3  # nx-27017, valkey, one worker
    body = _me(port, keys[0]).json()
    assert body["data"]["me"]["apps"]["nodes"] == [{"name": "My first app"}]
    page = httpx.get(f"http://127.0.0.1:{port}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    _stop(proc, signal.SIGINT, pids)

    # restarted over the same folder: same data, no second key printed
    proc, lines = _start_up(data_dir, port)
    assert not [line for line in lines if line.startswith("API key: ")]
    assert _me(port, keys[0]).json()["data"]["me"]["user"]["email"] == body["data"]["me"]["user"]["email"]
    # `keys create` reaches the running servers
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "keys",
            "create",
            "--email",
            body["data"]["me"]["user"]["email"],
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    second = made.stdout.strip().removeprefix("API key: ")
    assert _me(port, second).status_code == 200
    _stop(proc, signal.SIGTERM, _server_pids(proc, data_dir))


def test_keys_create_on_a_folder_without_a_database_says_what_to_pass_and_creates_nothing(
    tmp_path: Path,
) -> None:
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "keys",
            "create",
            "--email",
            "nobody@example.com",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env={**_env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 2
    assert "no `labelstream up` is running" in made.stderr and "--data-dir" in made.stderr
    assert list(tmp_path.iterdir()) == [], "no database, no .labelstream folder"


def test_schema_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "schema.graphql"
    stale.write_text("type Query { old: Int }\n")
    check = [sys.executable, "-m", "app.cli", "schema", "check", "--path", str(stale)]
    result = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "+type Query" in result.stdout
    subprocess.run(
        [sys.executable, "-m", "app.cli", "schema", "export", "--path", str(stale)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert subprocess.run(check, cwd=ROOT, capture_output=True, timeout=60).returncode == 0


def test_serve_without_mongodb_url_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "MONGODB_URL" in result.stderr


@pytest.mark.slow
def test_demo_labels_the_bundled_samples_with_the_real_models(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "labeling (DONE)" in out and "100.0%" in out
    assert "Task DONE: 4 images" in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert any("chelsea" in r and "cat" in r and "SUCCESS" in r for r in rows)
    assert any("coffee" in r and "coffee" in r and "SUCCESS" in r for r in rows)
    assert any("astronaut" in r and "person" in r for r in rows)


def _worker_pids(data_dir: Path) -> list[int]:
    from app.embedded import WORKERS_PID_FILE

    try:
        return [int(p) for p in (data_dir / WORKERS_PID_FILE).read_text().split()]
    except (OSError, ValueError):
        return []


def _alive(pid: int) -> bool:
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_up_restarts_a_dead_worker_and_a_killed_up_leaves_nothing_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    proc, _ = _start_up(data_dir, port)
    try:
        (first,) = _worker_pids(data_dir)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_worker_pids(data_dir) in ([], [first])):
            time.sleep(0.2)
        (second,) = _worker_pids(data_dir)
        assert second != first and _alive(second), "the dead worker was started again"
        assert not _alive(first), "and reaped (no zombie)"
        pids = _server_pids(proc, data_dir)
        valkey = int((data_dir / "redis" / "valkey.pid").read_text().strip())
        proc.kill()  # SIGKILL: up cannot clean up
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(second):
            time.sleep(0.2)
        assert not _alive(second), "the worker died with up"
        # the daemonized valkey survives a SIGKILL of up; the next up on the folder stops it
        assert _alive(valkey)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, _ = _start_up(data_dir, port)
    assert not _alive(valkey), "the next up stopped what the killed one left"
    _stop(proc, signal.SIGTERM, _server_pids(proc, data_dir) | pids - {valkey, first, second})
