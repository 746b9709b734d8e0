"""Start, kill and restart the inference servers on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.embedded import free_port
from app.models.adapters.base import WEIGHTS_DIR
from tests.inference_servers.venvs import python_of

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CLASSIFIER_ONNX = WEIGHTS_DIR / "efficientnet_lite0.onnx"
DETECTOR_ONNX = WEIGHTS_DIR / "nanodet_m_416.onnx"


@dataclass
class ServerProcess:
    """One server process; ``kill()`` and ``start()`` again keep its port."""

    argv: list[str]
    health: str
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + self.health, timeout=2, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def kserve_server(
    log: Path, *, fail_every: int = 0, threads: int = 1, models: dict[str, Path] | None = None
) -> ServerProcess:
    """KServe's model server with the bundled models, plus ``models`` (name -> ONNX file)."""
    port = free_port()
    extra = [a for name, path in (models or {}).items() for a in ("--model", f"{name}={path}")]
    argv = [
        str(python_of("kserve")),
        str(HERE / "kserve_onnx.py"),
        "--http_port", str(port),
        "--model", f"efficientnet={CLASSIFIER_ONNX}",
        "--model", f"nanodet={DETECTOR_ONNX}",
        "--image-model", "efficientnet-image=efficientnet_lite0",
        "--image-model", "nanodet-image=nanodet",
        "--fail-every", str(fail_every),
        "--threads", str(threads),
        "--enable_latency_logging", "false",
        *extra,
    ]  # fmt: skip
    return ServerProcess(argv, "/v2/health/ready", port, log)


def ls_backend(log: Path, *, fail_every: int = 0) -> ServerProcess:
    port = free_port()
    argv = [
        str(python_of("lsml")),
        str(HERE / "ls_backend.py"),
        "--port",
        str(port),
        "--fail-every",
        str(fail_every),
    ]
    return ServerProcess(argv, "/health", port, log)
