"""``/metrics`` after a task ran: every family the issue lists, with the samples it moved.

The worker here runs in the test's process (burst mode) with the worker's instrumented job
functions, so the API's ``/metrics`` shows the worker families too; tests/ops/test_processes.py
reads a worker process's own endpoint.
"""

from __future__ import annotations

import re

import httpx
from arq.worker import Worker
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from app.core.queue import QUEUE_NAME, redis_settings
from app.settings import Settings
from app.worker import job_functions
from tests.factories import Api, world
from tests.live.helpers import client
from tests.tasks_engine.helpers import create_dataset, create_task, image_inputs, null_model

FAMILIES = {
    "labelstream_graphql_requests": "counter",
    "labelstream_graphql_request_seconds": "histogram",
    "labelstream_graphql_errors": "counter",
    "labelstream_active_subscriptions": "gauge",
    "labelstream_jobs_queued": "gauge",
    "labelstream_jobs_running": "gauge",
    "labelstream_worker_jobs_running": "gauge",
    "labelstream_jobs_failed": "counter",
    "labelstream_inference_seconds": "histogram",
    "labelstream_inputs_labeled": "counter",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


async def _scrape(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_show_every_family_after_a_task_ran(
    api: Api, http: httpx.AsyncClient, asgi_app: Starlette, settings: Settings, ws_url: str
) -> None:
    await asgi_app.state.runtime.redis.flushdb()
    w = await world(api)
    c = await api.concept(w.owner, w.app_id, "cat")
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, 6)
    model = await null_model(api, w.owner, w.app_id, [{"concept": "cat", "confidence": 0.95}])
    before = samples(await _scrape(http))
    task = await create_task(api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=[c])

    queued = samples(await _scrape(http))
    assert queued[("labelstream_jobs_queued", ())] >= 2  # 6 inputs in batches of 4

    named = await api.raw("query MetricsProbe { __typename }", key=w.owner.key)
    invalid = await api.raw("query Broken { noSuchField }", key=w.owner.key)
    anonymous = await api.raw("{ __typename }")  # no key
    assert (named.status_code, invalid.status_code, anonymous.status_code) == (200, 200, 401)

    async with client(ws_url, key=w.owner.key) as ws:
        await ws.subscribe(
            "p", "subscription($t: ID!) { labelingTaskProgress(taskId: $t) { final } }", t=task["id"]
        )
        await ws.data("p", "labelingTaskProgress")
        open_now = samples(await _scrape(http))
        assert open_now[("labelstream_active_subscriptions", ())] >= 1
        assert settings.redis_url
        worker = Worker(
            functions=job_functions(),
            queue_name=QUEUE_NAME,
            redis_settings=redis_settings(settings.redis_url),
            ctx={"runtime": asgi_app.state.runtime},
            burst=True,
            poll_delay=0.01,
            handle_signals=False,
            max_jobs=2,
        )
        try:
            await worker.async_run()
        finally:
            await worker.close()

    text = await _scrape(http)
    assert {name: kind for name, kind in families(text).items() if name in FAMILIES} == FAMILIES
    after = samples(text)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("labelstream_graphql_requests_total", operation="MetricsProbe", type="query") == 1
    assert moved("labelstream_graphql_request_seconds_count", operation="MetricsProbe", type="query") == 1
    assert moved("labelstream_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") >= 1
    assert moved("labelstream_graphql_errors_total", code="UNAUTHENTICATED") >= 1
    assert moved("labelstream_inputs_labeled_total", outcome="done") == 6
    assert moved("labelstream_inference_seconds_count", model=model, adapter="null") >= 2
    assert after[("labelstream_jobs_queued", ())] == 0
    assert after[("labelstream_worker_jobs_running", ())] == 0
    assert (
        after[("labelstream_active_subscriptions", ())]
        == open_now[("labelstream_active_subscriptions", ())] - 1
    )
    assert re.search(r"^labelstream_jobs_failed_total \d", text, re.M)


async def test_health_needs_no_key_and_answers_ok(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_a_request_id_is_taken_from_the_client_or_made(api: Api, http: httpx.AsyncClient) -> None:
    caller = await api.user()
    given = await api.raw("{ __typename }", key=caller.key, headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await api.raw("{ __typename }", key=caller.key, headers={"X-Request-ID": "no spaces allowed"})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
