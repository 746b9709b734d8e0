"""Shared fixtures: real servers for the session, a fresh database for every test, and an
HTTP client driving the ASGI app (no mocks of MongoDB, Redis or GraphQL)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.documents import DOCUMENT_MODELS
from app.main import create_app
from app.settings import Settings
from tests.factories import Api
from tests.servers import Servers, start_servers
from tests.writers import WATCH


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with start_servers() as found:
        yield found


@pytest.fixture(scope="session")
def settings(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root: Path = tmp_path_factory.mktemp("data")
    return Settings(
        mongodb_url=servers.mongodb_url,
        redis_url=servers.redis_url,
        mongodb_db=f"labelstream_test_{secrets.token_hex(4)}",
        data_dir=root,
        max_page_size=50,
        max_bulk_items=20,
        max_upload_bytes=2 * 1024 * 1024,
        key_last_used_resolution_s=0,
        task_batch_size=4,  # small batches: several jobs per task even with a few inputs
        fetch_allow_private_networks=True,  # URL inputs are served from 127.0.0.1 in tests
        inference_allow_private_networks=True,  # so are the inference servers (tests/models/remote)
        fetch_timeout_s=5,
        search_embed_on_change=False,  # tests/search turns it on (a classifier pass per change)
    )


@pytest.fixture(scope="session")
async def asgi_app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(autouse=True)
async def clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Empty every collection before each test that uses the database."""
    if "asgi_app" in request.fixturenames or "api" in request.fixturenames:
        request.getfixturevalue("asgi_app")
        for model in DOCUMENT_MODELS:
            await model.get_pymongo_collection().delete_many({})
    yield


@pytest.fixture(autouse=True)
def one_annotation_writer() -> Iterator[None]:
    """Fails a test in which app code outside ``app/annotations/store.py`` wrote annotations."""
    WATCH.violations.clear()
    yield
    assert WATCH.violations == [], "annotations written outside the store"


@pytest.fixture
async def http(asgi_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient) -> Api:
    return Api(http)


def current_engine() -> str:
    import os

    if os.environ.get("MONGODB_URL"):
        return "external"
    return os.environ.get("LABELSTREAM_TEST_ENGINE", "embedded").lower()


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """``@pytest.mark.engine_bug("ferretdb", "...")``: the assertion stays exactly as MongoDB
    documents it; on that one engine the test must fail (strict), so a fixed engine shows up.

    With ``LABELSTREAM_TEST_ENGINE_TESTS_ONLY=1`` on another engine than the embedded one (CI's
    second run), a test that does not use the ``servers`` fixture is skipped: it talks to no
    MongoDB of this engine (it starts its own embedded servers, or none), so it runs exactly as
    in the embedded run."""
    import os

    engine = current_engine()
    if engine != "embedded" and os.environ.get("LABELSTREAM_TEST_ENGINE_TESTS_ONLY") == "1":
        same = pytest.mark.skip(reason=f"uses no MongoDB of the {engine} run: the embedded run covers it")
        for item in items:
            if "servers" not in getattr(item, "fixturenames", ()):
                item.add_marker(same)
    for item in items:
        for mark in item.iter_markers("engine_bug"):
            if mark.args and mark.args[0] == engine:
                reason = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("reason", "")
                item.add_marker(pytest.mark.xfail(reason=f"{engine} bug: {reason}", strict=True))


def pytest_report_header(config: Any) -> str:
    return f"labelstream test engine: {current_engine()}"
