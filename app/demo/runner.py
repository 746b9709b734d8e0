"""``labelstream demo``: the main flow in one command, through the real API and a real worker.

It creates a demo user and app, uploads the bundled sample images into a dataset, creates a
labeling task with a workflow of two built-in models (object detector + image classifier),
shows a live progress bar fed by the task's Redis events, and prints every annotation with
where the thresholds routed it. Everything goes through GraphQL (in-process), the queue and an
arq worker, exactly as with ``labelstream up``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path
from typing import Any

import httpx
from arq.worker import Worker
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from app.core import pubsub
from app.core.queue import QUEUE_NAME, redis_settings
from app.main import create_app
from app.settings import Settings
from app.tasks.jobs import FUNCTIONS
from app.users.service import create_api_key, get_or_create_user

SAMPLES = Path(__file__).resolve().parent / "samples"
DEMO_EMAIL = "demo@labelstream.invalid"
# Task concepts, and the model concepts that count as each (ImageNet synsets, COCO names).
CONCEPTS: dict[str, list[str]] = {
    "person": [],  # COCO's own name: produced directly
    "cat": ["n02124075", "n02123045", "n02123159", "cat"],  # Egyptian cat, tabby, tiger cat
    "coffee": ["n07920052", "n07930864", "cup"],  # espresso, cup (ImageNet), cup (COCO)
    "rocket": ["n03773504", "n04008634", "n04266014"],  # missile, projectile, space shuttle
}

CREATE_CONCEPT = """mutation($a: ID!, $n: String!) { createConcept(input: {appId: $a, name: $n}) {
  ... on ConceptSuccess { concept { id } } ... on Error { code message } } }"""
CREATE_DATASET = """mutation($a: ID!) { createDataset(input: {appId: $a, name: "Samples"}) {
  ... on DatasetSuccess { dataset { id } } ... on Error { code message } } }"""
CREATE_WORKFLOW = """mutation($a: ID!, $m: [ID!]!) {
  createWorkflow(input: {appId: $a, name: "detect + classify", modelIds: $m}) {
    ... on WorkflowSuccess { workflow { id } } ... on Error { code message } } }"""
START = """mutation($id: ID!) { startLabelingTask(id: $id) {
  ... on TaskRunSuccess { labelingTask { id } } ... on Error { code message } } }"""
POLL = "query($id: ID!) { labelingTask(id: $id) { status metrics { labelingPercent } } }"


class DemoError(RuntimeError):
    pass


async def _gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise DemoError(f"GraphQL error: {body.get('errors')}")
    data: dict[str, Any] = body["data"]
    return data


def _ok(result: dict[str, Any], field: str) -> Any:
    if "code" in result:
        raise DemoError(f"{result.get('code')}: {result.get('message')}")
    return result[field]


async def _setup(client: httpx.AsyncClient) -> tuple[str, str, list[tuple[str, str]]]:
    """App, dataset, uploaded inputs; returns (app id, task id, [(input id, file name)])."""
    app = _ok(
        (
            await _gql(
                client,
                'mutation { createApp(input: {name: "Labelstream demo"}) { '
                "... on AppSuccess { app { id } } ... on Error { code message } } }",
            )
        )["createApp"],
        "app",
    )
    app_id = app["id"]
    concept_ids: dict[str, str] = {}
    for name in CONCEPTS:
        made = (
            await _gql(
                client,
                "mutation($a: ID!, $n: String!) { createConcept(input: {appId: $a, name: $n}) "
                "{ ... on ConceptSuccess { concept { id } } ... on Error { code message } } }",
                a=app_id,
                n=name,
            )
        )["createConcept"]
        concept_ids[name] = _ok(made, "concept")["id"]
    dataset = _ok(
        (
            await _gql(
                client,
                'mutation($a: ID!) { createDataset(input: {appId: $a, name: "Samples"}) '
                "{ ... on DatasetSuccess { dataset { id } } ... on Error { code message } } }",
                a=app_id,
            )
        )["createDataset"],
        "dataset",
    )
    files = sorted(SAMPLES.glob("*.jpg"))
    items = [
        {"imageBase64": base64.b64encode(f.read_bytes()).decode(), "datasetIds": [dataset["id"]]}
        for f in files
    ]
    added = (
        await _gql(
            client,
            "mutation($a: ID!, $i: [AddInputItem!]!) { addInputs(appId: $a, inputs: $i) "
            "{ ... on AddInputsSuccess { inputs { id } errors { index message } } "
            "... on Error { code message } } }",
            a=app_id,
            i=items,
        )
    )["addInputs"]
    if added.get("errors"):
        raise DemoError(f"upload failed: {added['errors']}")
    inputs = [(i["id"], f.stem) for i, f in zip(added["inputs"], files, strict=True)]
    models = {
        m["name"]: m["id"]
        for m in (
            await _gql(
                client, "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
            )
        )["models"]["nodes"]
    }
    pair = [models["general-object-detector"], models["general-image-classifier"]]
    flow = _ok((await _gql(client, CREATE_WORKFLOW, a=app_id, m=pair))["createWorkflow"], "workflow")
    mapping = [{"modelConceptId": m, "conceptId": concept_ids[c]} for c, ms in CONCEPTS.items() for m in ms]
    task = _ok(
        (
            await _gql(
                client,
                "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { "
                "... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code field message } } }",
                i={
                    "appId": app_id,
                    "name": "Demo: label the samples",
                    "datasetId": dataset["id"],
                    "workflowId": flow["id"],
                    "conceptIds": list(concept_ids.values()),
                    "conceptMapping": mapping,
                    "thresholds": {"lower": 0.3, "upper": 0.7},
                    "start": False,
                },
            )
        )["createLabelingTask"],
        "labelingTask",
    )
    return app_id, task["id"], inputs


async def _follow(runtime: Any, client: httpx.AsyncClient, task_id: str, console: Console) -> None:
    """A progress bar driven by the task's Redis events (MongoDB re-read on every event)."""
    channel = runtime.redis.pubsub()
    await channel.subscribe(pubsub.task_channel(task_id))
    try:
        started = await _gql(
            client,
            "mutation($id: ID!) { startLabelingTask(id: $id) { "
            "... on TaskRunSuccess { labelingTask { id } } ... on Error { code message } } }",
            id=task_id,
        )
        _ok(started["startLabelingTask"], "labelingTask")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            console=console,
            transient=False,
        ) as bar:
            line = bar.add_task("labeling", total=100.0)
            status = "QUEUED"
            while status not in ("DONE", "IDLE", "FAILED", "CANCELLED"):
                message = await channel.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None:
                    event = pubsub.decode(message["data"])
                else:  # no event for a while: ask MongoDB (events are hints, state is there)
                    event = await _poll(client, task_id)
                status = event["status"]
                bar.update(
                    line, completed=event["metrics"]["labelingPercent"], description=f"labeling ({status})"
                )
    finally:
        await channel.aclose()


async def _poll(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    task = (
        await _gql(
            client,
            "query($id: ID!) { labelingTask(id: $id) { status metrics { labelingPercent } } }",
            id=task_id,
        )
    )["labelingTask"]
    return {"status": task["status"], "metrics": task["metrics"]}


async def _report(
    client: httpx.AsyncClient, app_id: str, task_id: str, inputs: list[tuple[str, str]], console: Console
) -> None:
    data = await _gql(
        client,
        "query($a: ID!, $t: ID!) { annotations(appId: $a, filter: {taskIds: [$t]}, first: 100) { nodes { "
        "inputId concept { name } confidence status box { top left bottom right } } } "
        "labelingTask(id: $t) { status metrics { inputsTotal approved awaitingReview discarded } } }",
        a=app_id,
        t=task_id,
    )
    names = dict(inputs)
    table = Table(title="Annotations")
    for column in ("image", "concept", "confidence", "status", "region"):
        table.add_column(column)
    for node in sorted(data["annotations"]["nodes"], key=lambda n: (names[n["inputId"]], -n["confidence"])):
        box = node["box"]
        region = (
            "whole image"
            if box is None
            else (f"box {box['top']:.2f},{box['left']:.2f} - {box['bottom']:.2f},{box['right']:.2f}")
        )
        table.add_row(
            names[node["inputId"]],
            node["concept"]["name"],
            f"{node['confidence']:.2f}",
            node["status"],
            region,
        )
    console.print(table)
    m = data["labelingTask"]["metrics"]
    console.print(
        f"Task {data['labelingTask']['status']}: {m['inputsTotal']} images, {m['approved']} annotations "
        f"approved (>= 0.7), {m['awaitingReview']} waiting for review (0.3 - 0.7), "
        f"{m['discarded']} prediction(s) discarded (< 0.3)."
    )


async def run_demo(settings: Settings, console: Console) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        user = await get_or_create_user(DEMO_EMAIL, "Demo")
        _, secret = await create_api_key(user.id, "labelstream demo")
        assert settings.redis_url
        worker = Worker(
            functions=FUNCTIONS,
            queue_name=QUEUE_NAME,
            redis_settings=redis_settings(settings.redis_url),
            ctx={"runtime": runtime},
            handle_signals=False,
            poll_delay=0.01,
            max_jobs=1,
        )
        running = asyncio.create_task(worker.async_run())
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://demo",
                headers={"Authorization": f"Key {secret}"},
                timeout=120,
            ) as client:
                console.print("Uploading the sample images and creating a labeling task ...")
                app_id, task_id, inputs = await _setup(client)
                await _follow(runtime, client, task_id, console)
                await _report(client, app_id, task_id, inputs, console)
                console.print(
                    f"\nApp {app_id}, task {task_id}. Demo user {DEMO_EMAIL}; a key for it: {secret}"
                )
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            # arq's close() cancels a wake-up job still running and re-raises its CancelledError
            with contextlib.suppress(asyncio.CancelledError):
                await worker.close()
