"""Time to recover after a worker is killed mid-batch (issue 11: within two lease periods).

    python bench/recovery.py [--lease 2.0] [--kills 3]

Embedded servers (nx-27017 + valkey) in a temporary folder, the API in this process (ASGI
transport) to set up a task over 40 images with a slow null model (100 ms per input, batches of
4), and real ``labelstream worker`` processes with ``batch_lease_s = lease`` and the
reconciliation every lease / 4. Each round waits until a batch is leased (being worked on),
kills that worker with SIGKILL, starts a new one at once, and measures the time from the kill
to that very batch being DONE (its lease lapsing, the reconciliation waking a job, the new
worker running the whole batch again: ~0.4 s). Prints each round and the worst ratio to the lease.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.embedded import EmbeddedServers
from app.main import create_app
from app.settings import Settings
from app.tasks.models import BatchState, TaskBatch
from app.users.service import create_api_key, get_or_create_user

SETUP = """mutation($a: ID!, $i: [AddInputItem!]!) { addInputs(appId: $a, inputs: $i) { __typename } }"""


def png(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = (await client.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def setup(client: httpx.AsyncClient) -> str:
    app_id = (
        await gql(
            client, 'mutation { createApp(input: {name: "bench"}) { ... on AppSuccess { app { id } } } }'
        )
    )["createApp"]["app"]["id"]
    concept = (
        await gql(
            client,
            'mutation($a: ID!) { createConcept(input: {appId: $a, name: "cat"}) { ... on ConceptSuccess { concept { id } } } }',
            a=app_id,
        )
    )["createConcept"]["concept"]["id"]
    ds = (
        await gql(
            client,
            'mutation($a: ID!) { createDataset(input: {appId: $a, name: "d"}) { ... on DatasetSuccess { dataset { id } } } }',
            a=app_id,
        )
    )["createDataset"]["dataset"]["id"]
    for k in range(0, 40, 20):
        await gql(
            client, SETUP, a=app_id, i=[{"imageBase64": png(k + i), "datasetIds": [ds]} for i in range(20)]
        )
    model = (
        await gql(
            client,
            """mutation($i: CreateModelInput!) { createModel(input: $i) { ... on ModelSuccess { model { id } } } }""",
            i={
                "appId": app_id,
                "name": "slow",
                "kind": "CLASSIFIER",
                "adapter": "null",
                "config": {"predictions": [{"concept": "cat", "confidence": 0.95}], "delay_ms": 100},
                "concepts": [{"id": "cat", "name": "cat"}],
            },
        )
    )["createModel"]["model"]["id"]
    task = await gql(
        client,
        """mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) {
             ... on LabelingTaskSuccess { labelingTask { id } } } }""",
        i={"appId": app_id, "name": "t", "datasetId": ds, "modelId": model, "conceptIds": [concept]},
    )
    task_id: str = task["createLabelingTask"]["labelingTask"]["id"]
    return task_id


def worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stdout=out, stderr=out)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="labelstream-recovery-"))
    with EmbeddedServers(root, None, None) as servers:
        assert servers.mongodb_url and servers.redis_url
        settings = Settings(
            mongodb_url=servers.mongodb_url, redis_url=servers.redis_url, mongodb_db="bench_recovery",
            data_dir=root, task_batch_size=4, batch_lease_s=args.lease, reconcile_interval_s=args.lease / 4,
        )  # fmt: skip
        env = {
            **os.environ,
            "MONGODB_URL": servers.mongodb_url,
            "REDIS_URL": servers.redis_url,
            "LABELSTREAM_MONGODB_DB": "bench_recovery",
            "LABELSTREAM_DATA_DIR": str(root),
            "LABELSTREAM_BATCH_LEASE_S": str(args.lease),
            "LABELSTREAM_RECONCILE_INTERVAL_S": str(args.lease / 4),
            "LABELSTREAM_WORKER_MAX_JOBS": "1",
        }
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            user = await get_or_create_user("bench@labelstream.invalid", "Bench")
            _, secret = await create_api_key(user.id, "bench")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://bench",
                headers={"Authorization": f"Key {secret}"},
                timeout=60,
            ) as client:
                task_id = await setup(client)
                proc = worker(env, root / "worker.log")
                ratios = []
                for round_ in range(args.kills):
                    while True:  # a batch being worked on
                        leased = await TaskBatch.find_one(
                            {"task_id": task_id, "state": BatchState.LEASED.value}
                        )
                        if leased is not None:
                            break
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.1)  # mid-batch
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    killed_at = time.monotonic()
                    proc = worker(env, root / "worker.log")
                    while True:
                        doc = await TaskBatch.get(leased.id)
                        if doc is not None and doc.state is BatchState.DONE:
                            break
                        await asyncio.sleep(0.02)
                    took = time.monotonic() - killed_at
                    ratios.append(took / args.lease)
                    print(f"round {round_ + 1}: batch {leased.id.split(':', 1)[1]} done {took:.2f} s after the kill"
                          f" ({took / args.lease:.2f} lease periods of {args.lease:.1f} s)")  # fmt: skip
                proc.terminate()
                proc.wait()
                print(f"worst: {max(ratios):.2f} lease periods (target <= 2)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    asyncio.run(main())
