"""Real inference servers for the remote adapters: KServe's model server and a Label Studio ML
backend from PyPI, each in its own venv (``tests/inference_servers``), on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.inference_servers.processes import ServerProcess, kserve_server, ls_backend


@pytest.fixture(scope="session")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = kserve_server(tmp_path_factory.mktemp("kserve") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ls_backend(tmp_path_factory.mktemp("lsml") / "server.log").start()
    yield server
    server.stop()
