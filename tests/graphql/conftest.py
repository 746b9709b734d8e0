"""An API process of its own (uvicorn on 127.0.0.1) for the tests that time a bystander query.

A separate process, not the session app in the test's event loop: a request that froze that loop
would freeze the test's clock and its timeouts with it, and an exponential validation (as before
the limits) would hang the run instead of failing it within a second.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.settings import Settings
from tests.live.helpers import ApiProcess, env_for
from tests.servers import Servers


@pytest.fixture(scope="session")
def api_server(
    servers: Servers, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    root = tmp_path_factory.mktemp("graphql-api")
    env = env_for(servers.mongodb_url, servers.redis_url, settings.mongodb_db, root / "data")
    server = ApiProcess(env, root / "api.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
