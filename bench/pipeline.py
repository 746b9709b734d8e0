"""Auto-annotation engine benchmarks, on the embedded servers (nx-27017 + valkey).

    python bench/pipeline.py                 # all three
    python bench/pipeline.py overhead        # pipeline time / plain model loop, 200 images
    python bench/pipeline.py throughput      # null model, inputs persisted per second
    python bench/pipeline.py latency         # enqueue-to-start of a job, p50 / p99
    python bench/pipeline.py --null-inputs 1000 --commands throughput
                                             # smaller run; print the MongoDB commands sent,
                                             # per command and collection, and per batch
    python bench/pipeline.py --cpu throughput
                                             # also the CPU seconds of the task: this process's
                                             # main thread (event loop), its other threads
                                             # (inference, decoding) and nx-27017 (Linux /proc)
    python bench/pipeline.py --engine ferretdb2 overhead throughput
                                             # the same on FerretDB 2 + DocumentDB (built by
                                             # .ci/build-ferretdb2.sh) instead of nx-27017

Everything runs in this process except the two servers: the API (called in-process over the
ASGI transport, the same GraphQL layer as over HTTP) and one arq worker sharing its runtime,
like `labelstream up` with one worker. Figures are printed; bench/RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pymongo import monitoring

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.queue import QUEUE_NAME, redis_settings
from app.embedded import EmbeddedServers
from app.main import create_app
from app.settings import Settings
from app.tasks.jobs import FUNCTIONS
from app.users.service import create_api_key, get_or_create_user
from app.worker import ping

IMAGES = 200
BATCH = 32
NULL_INPUTS = 5000
NULL_BATCH = 250
SEARCH_EMBED = True
BURST_WORKER = False
CPU = False


def _cpu_s(stat: str) -> float:
    """utime + stime of a /proc/.../stat line, in seconds."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split() -> dict[str, float]:
    """CPU seconds so far: this process's main thread, its other threads, and nx-27017."""
    main = others = 0.0
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            spent = _cpu_s(Path(f"/proc/self/task/{tid}/stat").read_text())
            if int(tid) == os.getpid():
                main = spent
            else:
                others += spent
    server = 0.0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if b"nx-27017" in cmdline.read_bytes():
                server += _cpu_s((cmdline.parent / "stat").read_text())
    return {"main_thread": main, "other_threads": others, "nx_27017": server}


def bench_settings(servers: Any, data_dir: Path, **fields: Any) -> Settings:
    """Settings of a benchmark against ``servers`` (``EmbeddedServers``), its data in
    ``data_dir``, database ``bench``, with ``fields`` on top."""
    return Settings(
        mongodb_url=servers.mongodb_url,
        redis_url=servers.redis_url,
        data_dir=data_dir,
        mongodb_db="bench",
        **fields,
    )


def sample_images(n: int) -> list[bytes]:
    """n different JPEGs cut from the scikit-image samples (random crops, 256-480 px)."""
    from skimage import data

    bases = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        base = bases[i % len(bases)]
        h, w = base.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        img = Image.fromarray(base[top : top + ch, left : left + cw])
        img.thumbnail((480, 480))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)

    async def __aenter__(self) -> Bench:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.runtime = self.app.state.runtime
        user = await get_or_create_user("bench@labelstream.invalid", "Bench")
        _, secret = await create_api_key(user.id, "bench")
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://bench",
            headers={"Authorization": f"Key {secret}"},
            timeout=600,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        body = (await self.client.post("/graphql", json={"query": query, "variables": variables})).json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    def worker(self, *, polling: bool = False, **options: Any) -> Any:
        """The deployed worker class (``WakingWorker``; in burst mode it is arq's loop), or with
        ``polling`` arq's own ``Worker`` (reads the queue every ``poll_delay``)."""
        from arq.worker import Worker

        from app.core.waking import WakingWorker

        assert self.settings.redis_url
        waking = {} if polling else {"idle_wait_s": self.settings.worker_idle_wait_s}
        kwargs = (
            {
                "poll_delay": self.settings.worker_poll_delay_s,
                "max_jobs": self.settings.worker_max_jobs,
                "handle_signals": False,
                "burst": True,
            }
            | waking
            | options
        )
        return (Worker if polling else WakingWorker)(
            functions=[*FUNCTIONS, ping],
            queue_name=QUEUE_NAME,
            redis_settings=redis_settings(self.settings.redis_url),
            ctx={"runtime": self.runtime},
            **kwargs,
        )

    async def app_with_dataset(self, items: list[dict[str, Any]]) -> tuple[str, str]:
        app_id = (
            await self.gql(
                'mutation { createApp(input: {name: "bench"}) { ... on AppSuccess { app { id } } } }'
            )
        )["createApp"]["app"]["id"]
        ds = (
            await self.gql(
                'mutation($a: ID!) { createDataset(input: {appId: $a, name: "d"}) { '
                "... on DatasetSuccess { dataset { id } } } }",
                a=app_id,
            )
        )["createDataset"]["dataset"]["id"]
        for k in range(0, len(items), 100):
            chunk = [dict(i, datasetIds=[ds]) for i in items[k : k + 100]]
            res = (
                await self.gql(
                    "mutation($a: ID!, $i: [AddInputItem!]!) { addInputs(appId: $a, inputs: $i) { "
                    "... on AddInputsSuccess { errors { message } } } }",
                    a=app_id,
                    i=chunk,
                )
            )["addInputs"]
            assert not res["errors"], res
        return app_id, ds

    async def concept(self, app_id: str, name: str) -> str:
        made = await self.gql(
            "mutation($a: ID!, $n: String!) { createConcept(input: {appId: $a, name: $n}) { "
            "... on ConceptSuccess { concept { id } } } }",
            a=app_id,
            n=name,
        )
        concept_id: str = made["createConcept"]["concept"]["id"]
        return concept_id

    async def run_task(self, fields: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Seconds from createLabelingTask until the task is DONE (read every 50 ms, the same
        way with the search embeddings on or off); ``task["drained_s"]``: until the worker has
        also run every job the task left behind (search embeddings), i.e. until it is idle.

        The worker runs as deployed (``WakingWorker``: it sleeps until an enqueue notifies it
        or one of its jobs ends), started before the task is made; it is idle once it runs no
        job and the queue is empty (read every 50 ms too). With ``BURST_WORKER`` (``--burst``,
        the figures before 2026-11-30 evening) arq's burst loop instead, which also reads the
        queue every ``poll_delay`` (10 ms) while jobs run and stops once it is empty."""
        from app.tasks.models import LabelingTask

        worker = self.worker(burst=BURST_WORKER)
        running = None if BURST_WORKER else asyncio.create_task(worker.async_run())
        await asyncio.sleep(0.1)  # subscribed to its wake channel, as a running worker is
        cpu_before = cpu_split() if CPU else {}
        start = time.perf_counter()
        made = await self.gql(
            "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { "
            "... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code message } } }",
            i=fields,
        )
        task_id = made["createLabelingTask"]["labelingTask"]["id"]
        tasks = LabelingTask.get_pymongo_collection()

        async def done_at() -> float:
            while True:
                doc = await tasks.find_one({"_id": task_id}, {"status": 1})
                if doc is not None and doc.get("status") in ("DONE", "FAILED", "CANCELLED"):
                    return time.perf_counter() - start
                await asyncio.sleep(0.05)

        async def idle_at() -> float:
            assert self.runtime.redis is not None
            while True:
                await asyncio.sleep(0.05)
                running_jobs = any(not t.done() for t in worker.tasks.values())
                if not running_jobs and not await self.runtime.redis.zcard(QUEUE_NAME):
                    return time.perf_counter() - start

        watching = asyncio.create_task(done_at())
        if running is None:
            await worker.async_run()
            drained = time.perf_counter() - start
        else:
            drained = await idle_at()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        elapsed = await asyncio.wait_for(watching, 5)
        if CPU:
            spent = {k: v - cpu_before[k] for k, v in cpu_split().items()}
            print(
                f"cpu seconds until drained ({drained:.2f} s): "
                + " ".join(f"{k}={v:.2f}" for k, v in spent.items()),
                flush=True,
            )
        await worker.close()
        task = (
            await self.gql(
                "query($id: ID!) { labelingTask(id: $id) { status metrics { inputsTotal processed "
                "failed approved awaitingReview discarded } } }",
                id=task_id,
            )
        )["labelingTask"]
        task["drained_s"] = drained
        return elapsed, task


async def overhead(settings: Settings) -> dict[str, float]:
    from app.models.adapters import AdapterInput, get_adapter

    images = sample_images(IMAGES)
    adapter = get_adapter("general-image-classifier")
    adapter.predict([AdapterInput(image=np.zeros((224, 224, 3), np.uint8))])  # load once, untimed

    def plain_loop() -> float:
        start = time.perf_counter()
        for k in range(0, len(images), BATCH):
            batch = [
                AdapterInput(image=np.asarray(Image.open(io.BytesIO(b)).convert("RGB")))
                for b in images[k : k + BATCH]
            ]
            adapter.predict(batch)
        return time.perf_counter() - start

    async with Bench(settings.model_copy(update={"task_batch_size": BATCH})) as bench:
        app_id, ds = await bench.app_with_dataset(
            [{"imageBase64": base64.b64encode(b).decode()} for b in images]
        )
        models = {
            m["name"]: m["id"]
            for m in (
                await bench.gql(
                    "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
                )
            )["models"]["nodes"]
        }
        cat = await bench.concept(app_id, "cat")
        plain = [plain_loop()]
        pipeline, task = await bench.run_task(
            {
                "appId": app_id,
                "name": "overhead",
                "datasetId": ds,
                "modelId": models["general-image-classifier"],
                "conceptIds": [cat],
                "conceptMapping": [{"modelConceptId": "n02124075", "conceptId": cat}],
            }
        )
        plain.append(plain_loop())
        assert task["status"] == "DONE" and task["metrics"]["processed"] == IMAGES, task
    plain_s = statistics.mean(plain)
    return {
        "images": IMAGES,
        "batch": BATCH,
        "plain_s": plain_s,
        "pipeline_s": pipeline,
        "ratio": pipeline / plain_s,
        "drained_s": task["drained_s"],
        "ratio_drained": task["drained_s"] / plain_s,
    }


class CommandCounter(monitoring.CommandListener):
    """Counts the commands this process sends to MongoDB, by (command, collection), with the
    time each kind took from send to reply (the server's work, and its queue when busy)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.docs: collections.Counter[tuple[str, str]] = collections.Counter()
        self.micros: collections.Counter[tuple[str, str]] = collections.Counter()
        self._keys: dict[int, tuple[str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in {"hello", "isMaster", "ismaster", "ping", "endSessions"}:
            return
        # A getMore names its collection in a field of its own.
        target = event.command.get("collection" if name == "getMore" else name)
        key = (name, target if isinstance(target, str) else "")
        self.counts[key] += 1
        self._keys[event.request_id] = key
        for field in ("documents", "updates", "deletes"):
            if field in event.command:
                self.docs[key] += len(event.command[field])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        key = self._keys.pop(event.request_id, None)
        if key is not None:
            self.micros[key] += event.duration_micros

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.succeeded(event)  # type: ignore[arg-type]

    def report(self, batches: int) -> str:
        lines = [f"mongodb commands ({batches} batches): command collection count per-batch docs ms"]
        for (name, coll), n in sorted(self.counts.items(), key=lambda kv: -self.micros[kv[0]]):
            docs = self.docs.get((name, coll), 0)
            ms = self.micros[(name, coll)] / 1000
            lines.append(f"  {name:<14} {coll:<22} {n:>7} {n / max(batches, 1):>8.2f} {docs:>8} {ms:>8.0f}")
        lines.append(f"  total {sum(self.counts.values())}, {sum(self.micros.values()) / 1000:.0f} ms")
        return "\n".join(lines)


COUNTER: CommandCounter | None = None


async def throughput(settings: Settings) -> dict[str, float]:
    items = [{"text": f"text number {i}"} for i in range(NULL_INPUTS)]
    async with Bench(settings.model_copy(update={"task_batch_size": NULL_BATCH})) as bench:
        app_id, ds = await bench.app_with_dataset(items)
        names = ["null-a", "null-b", "null-c"]
        concepts = [await bench.concept(app_id, n) for n in names]
        model = (
            await bench.gql(
                "mutation($i: CreateModelInput!) { createModel(input: $i) { ... on ModelSuccess { "
                "model { id } } } }",
                i={
                    "appId": app_id,
                    "name": "null",
                    "kind": "TEXT_CLASSIFIER",
                    "adapter": "null",
                    "concepts": [{"id": n, "name": n} for n in names],
                },
            )
        )["createModel"]["model"]["id"]
        if COUNTER is not None:
            COUNTER.counts.clear()
            COUNTER.docs.clear()
        elapsed, task = await bench.run_task(
            {"appId": app_id, "name": "null", "datasetId": ds, "modelId": model, "conceptIds": concepts}
        )
        if COUNTER is not None:
            print(COUNTER.report(-(-NULL_INPUTS // NULL_BATCH)), flush=True)
        assert task["status"] == "DONE" and task["metrics"]["processed"] == NULL_INPUTS, task
    return {
        "inputs": NULL_INPUTS,
        "predictions_per_input": 3,
        "batch": NULL_BATCH,
        "seconds": elapsed,
        "inputs_per_s": NULL_INPUTS / elapsed,
        "drained_s": task["drained_s"],
        "inputs_per_s_drained": NULL_INPUTS / task["drained_s"],
        "annotations": task["metrics"]["approved"] + task["metrics"]["awaitingReview"],
    }


async def latency(settings: Settings, jobs: int = 300, polling: bool = False) -> dict[str, float]:
    """Enqueue-to-start delays of ``jobs`` pings to an idle worker (``polling``: arq's loop)."""
    async with Bench(settings) as bench:
        worker = bench.worker(burst=False, polling=polling)
        running = asyncio.create_task(worker.async_run())
        await asyncio.sleep(0.3)
        handles = []
        rng = np.random.default_rng(1)
        for i in range(jobs):
            handles.append(
                await bench.runtime.redis.enqueue_job("ping", _job_id=f"bench-ping-{time.time_ns()}-{i}")
            )
            await asyncio.sleep(float(rng.uniform(0.005, 0.03)))  # arrivals at random moments
        delays = []
        for job in handles:
            await job.result(timeout=30, poll_delay=0.01)
            info = await job.result_info()
            delays.append((info.start_time - info.enqueue_time).total_seconds() * 1000)
        running.cancel()
        await worker.close()
    delays.sort()
    return {
        "jobs": jobs,
        "worker": "polling" if polling else "waking",
        "poll_delay_ms": settings.worker_poll_delay_s * 1000,
        "idle_wait_ms": settings.worker_idle_wait_s * 1000,
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[int(len(delays) * 0.99) - 1],
        "max_ms": delays[-1],
    }


async def main(which: list[str], engine: str) -> None:
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        mongodb_url = None
        if engine == "ferretdb2":
            from tests.ferretdb import FerretDBServer, find_ferretdb_binary

            binary = find_ferretdb_binary()
            if binary is None:
                raise SystemExit("no ferretdb binary: run .ci/build-ferretdb2.sh first")
            mongodb_url = stack.enter_context(FerretDBServer(binary, Path(tmp) / "ferretdb")).url
        servers = stack.enter_context(EmbeddedServers(Path(tmp), mongodb_url, None))
        settings = bench_settings(servers, Path(tmp), search_embed_on_change=SEARCH_EMBED)
        from bench.calibrate import calibration

        print(f"engine: {engine}, search embeddings {'on' if SEARCH_EMBED else 'off'}", flush=True)
        print(calibration(), flush=True)
        for name in which:
            result = await {"overhead": overhead, "throughput": throughput, "latency": latency}[name](
                settings
            )
            print(
                name,
                " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()),
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["nx-27017", "ferretdb2"], default="nx-27017")
    parser.add_argument("which", nargs="*", metavar="figure")
    parser.add_argument("--null-inputs", type=int, default=NULL_INPUTS, help="inputs of the throughput task")
    parser.add_argument(
        "--commands", action="store_true", help="count the MongoDB commands of the throughput task"
    )
    parser.add_argument(
        "--no-embed", action="store_true", help="search embeddings off (search_embed_on_change=false)"
    )
    parser.add_argument(
        "--burst", action="store_true", help="run tasks with arq's burst loop, not the deployed worker"
    )
    parser.add_argument("--cpu", action="store_true", help="print the CPU seconds of each task, per part")
    args = parser.parse_args()
    NULL_INPUTS = args.null_inputs
    SEARCH_EMBED = not args.no_embed
    BURST_WORKER = args.burst
    CPU = args.cpu
    if args.commands:
        COUNTER = CommandCounter()
        monitoring.register(COUNTER)
    unknown = set(args.which) - {"overhead", "throughput", "latency"}
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    asyncio.run(main(args.which or ["overhead", "throughput", "latency"], args.engine))
