"""GraphiQL as a user meets it, in headless Chromium with every non-loopback request blocked:
the page renders from the app's own files, sends nothing until a key is entered, then loads the
schema at once, runs queries, keeps the key across reloads, and shows subscription updates."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.factories import Api, world
from tests.graphiql.conftest import LOOPBACK, Session
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import create_dataset, create_task, image_inputs, null_model

QUERY = ".graphiql-query-editor .CodeMirror"
HEADERS = "section.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE = ".result-window .CodeMirror"
DOCS_BUTTON = "[aria-label='Show Documentation Explorer']"

pytestmark = pytest.mark.slow  # a browser each: ~10 s per test


async def editor_text(page: Page, selector: str) -> str:
    value: str = await page.eval_on_selector(selector, "e => e.CodeMirror.getValue()")
    return value


async def wait_for_text(page: Page, selector: str, *needles: str) -> None:
    """Until the CodeMirror editor at ``selector`` contains every needle (on a timeout, the
    failure shows what the query and response editors held)."""
    try:
        await page.wait_for_function(
            "([sel, needles]) => { const e = document.querySelector(sel);"
            " return !!e && !!e.CodeMirror && needles.every(n => e.CodeMirror.getValue().includes(n)); }",
            arg=[selector, list(needles)],
            timeout=30_000,
        )
    except PlaywrightTimeout:
        held = {s: await editor_text(page, s) for s in (QUERY, RESPONSE)}
        raise AssertionError(f"{needles} never appeared in {selector}; the editors held {held}") from None


async def paste(page: Page, selector: str, text: str) -> None:
    """Select all in an editor and paste ``text`` over it, as a user does, until the editor
    holds exactly ``text``: on a slow machine GraphiQL can still be filling an editor (its
    default query, a restored tab) when the test's first paste lands."""
    for _ in range(3):
        await page.click(selector)
        await page.keyboard.press("Control+A")
        await page.keyboard.insert_text(text)
        with contextlib.suppress(PlaywrightTimeout):
            await page.wait_for_function(
                "([sel, text]) => { const e = document.querySelector(sel);"
                " return !!e && !!e.CodeMirror && e.CodeMirror.getValue() === text; }",
                arg=[selector, text],
                timeout=5_000,
            )
            return
    raise AssertionError(
        f"the editor {selector} never held the pasted text: {await editor_text(page, selector)!r}"
    )


async def open_page(session: Session, base_url: str) -> Page:
    page = session.page
    await page.goto(f"{base_url}/graphql")
    await page.wait_for_selector(QUERY)
    await page.wait_for_selector(HEADERS)
    return page


def assert_offline(session: Session) -> None:
    traffic = session.traffic
    assert traffic.blocked == [], "the page asked for something outside the app"
    assert all(urlsplit(url).hostname == LOOPBACK for _, url, _ in traffic.requests)
    assert all(urlsplit(url).hostname == LOOPBACK for url in traffic.websockets)
    assert traffic.console_errors == []


async def test_the_page_renders_from_the_apps_own_files_and_sends_nothing_without_a_key(
    session: Session, base_url: str
) -> None:
    page = await open_page(session, base_url)
    assert "Key <paste the key" in await editor_text(page, HEADERS)
    # the schema fetch is answered in the page: a hint, no request, so no 401
    await wait_for_text(page, RESPONSE, "Paste your API key into the Headers tab")
    await page.click(".graphiql-execute-button")
    await wait_for_text(page, RESPONSE, "Paste your API key into the Headers tab")
    assert session.traffic.graphql_posts() == []
    loaded = [urlsplit(url).path for _, url, _ in session.traffic.requests]
    assert loaded == [
        "/graphql",
        "/static/graphiql/vendor.css",
        "/static/graphiql/vendor.js",
        "/static/graphiql/labelstream-graphiql.js",
    ]
    assert_offline(session)


async def test_a_key_entered_once_loads_the_schema_at_once_returns_data_and_survives_a_reload(
    session: Session, base_url: str, api: Api
) -> None:
    w = await world(api)
    page = await open_page(session, base_url)
    await paste(page, HEADERS, json.dumps({"Authorization": f"Key {w.owner.key}"}))

    # Docs fills in without "Re-fetch": the new key fetched the schema again
    await page.click(DOCS_BUTTON)
    docs = page.locator(".graphiql-doc-explorer")
    await docs.get_by_text("LabelingTask", exact=True).first.wait_for()

    await page.click(".graphiql-execute-button")
    await wait_for_text(page, RESPONSE, w.owner.email, "Test app")

    # a new tab keeps the key
    await page.click(".graphiql-tab-add")
    await page.wait_for_function("() => document.querySelectorAll('.graphiql-tab').length === 2")
    assert w.owner.key in await editor_text(page, HEADERS)

    # reloaded: the key is still there (never the placeholder), the schema and queries work
    await page.reload()
    await page.wait_for_selector(HEADERS)
    assert w.owner.key in await editor_text(page, HEADERS)
    await page.click(DOCS_BUTTON)
    await page.locator(".graphiql-doc-explorer").get_by_text("LabelingTask", exact=True).first.wait_for()
    await page.click(".graphiql-execute-button")
    await wait_for_text(page, RESPONSE, w.owner.email)

    posts = session.traffic.graphql_posts()
    assert len(posts) >= 4  # two schema fetches, two queries
    assert set(posts) == {f"Key {w.owner.key}"}, "every request carried the key, none the placeholder"
    assert_offline(session)


async def _task(api: Api, owner: Any, app_id: str) -> dict[str, Any]:
    concept = await api.concept(owner, app_id, "cat")
    dataset = await create_dataset(api, owner, app_id)
    await image_inputs(api, owner, app_id, dataset, 4)
    model = await null_model(api, owner, app_id, [{"concept": "cat", "confidence": 0.7}])
    return await create_task(api, owner, appId=app_id, datasetId=dataset, modelId=model, conceptIds=[concept])


async def test_a_subscription_shows_the_updates_of_a_running_task(
    session: Session, base_url: str, api: Api, drain: Drain
) -> None:
    w = await world(api)
    task = await _task(api, w.owner, w.app_id)
    page = await open_page(session, base_url)
    await paste(page, HEADERS, json.dumps({"Authorization": f"Key {w.owner.key}"}))
    await paste(
        page,
        QUERY,
        f'subscription {{ labelingTaskProgress(taskId: "{task["id"]}") '
        "{ taskId status final snapshot metrics { inputsTotal processed labelingPercent } } }",
    )
    await page.click(".graphiql-execute-button")
    await wait_for_text(page, RESPONSE, '"status": "QUEUED"', '"snapshot": true')

    await drain()  # the worker labels the task; its progress comes to the page over the WebSocket
    await wait_for_text(page, RESPONSE, '"status": "DONE"', '"final": true', '"processed": 4')
    assert session.traffic.websockets == [f"{base_url.replace('http', 'ws')}/graphql"]
    assert_offline(session)
