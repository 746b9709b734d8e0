"""GraphiQL in a real browser: Debian's headless Chromium driven by Playwright (over the Chrome
DevTools Protocol), the session app served by uvicorn on 127.0.0.1, and nothing else reachable.

* Chromium missing: the tests skip locally, and fail under ``CI=true`` (``.ci/run`` installs it).
* Every request for another host than 127.0.0.1 is aborted (and recorded: the tests assert there
  were none), and ``--host-resolver-rules`` makes every host name fail to resolve.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright
from starlette.applications import Starlette

from app.embedded import free_port
from tests.tasks_engine.conftest import drain  # noqa: F401 - the fixture, reused here

LOOPBACK = "127.0.0.1"


def chromium_binary() -> str | None:
    return (
        os.environ.get("LABELSTREAM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true and no chromium: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return binary


@pytest.fixture(scope="session")
async def base_url(asgi_app: Starlette) -> AsyncIterator[str]:
    """The session app on a free 127.0.0.1 port, in the tests' event loop."""
    port = free_port()
    config = uvicorn.Config(
        asgi_app, host=LOOPBACK, port=port, lifespan="off", ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://{LOOPBACK}:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                # no name resolves (the loopback address is a literal, never looked up)
                f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOOPBACK}",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-domain-reliability",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
            ],
        )
        yield launched
        await launched.close()


@dataclass
class Traffic:
    """What the page asked for: every request, and the ones aborted for leaving 127.0.0.1."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, url, auth
    blocked: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def graphql_posts(self) -> list[str | None]:
        return [auth for method, url, auth in self.requests if method == "POST" and "/graphql" in url]


@dataclass
class Session:
    context: BrowserContext
    page: Page
    traffic: Traffic


@pytest.fixture
async def session(browser: Browser) -> AsyncIterator[Session]:
    context = await browser.new_context(service_workers="block")
    traffic = Traffic()

    async def only_loopback(route: Route) -> None:
        request = route.request
        if urlsplit(request.url).hostname == LOOPBACK or request.url.startswith("data:"):
            traffic.requests.append((request.method, request.url, request.headers.get("authorization")))
            await route.continue_()
        else:
            traffic.blocked.append(request.url)
            await route.abort("blockedbyclient")

    await context.route("**/*", only_loopback)
    page = await context.new_page()
    page.on("websocket", lambda ws: traffic.websockets.append(ws.url))
    page.on("console", lambda m: traffic.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: traffic.console_errors.append(str(e)))
    yield Session(context=context, page=page, traffic=traffic)
    await context.close()
