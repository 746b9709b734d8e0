"""Pages of annotations and task creation at 20k inputs, over HTTP, on both engines side by side.

    python bench/pages.py                                  # both engines, default sizes
    python bench/pages.py --engine embedded                # nx-27017 only
    python bench/pages.py --engine ferretdb2 --inputs 2000 --repeats 20   # a short run

For each engine (the embedded nx-27017, and FerretDB 2 + DocumentDB built by
``.ci/build-ferretdb2.sh``), on fresh servers in a temp dir with valkey for Redis:

* seeding (not timed): an app with ``--annotations`` annotations (10 concepts x one box per
  input, ``addAnnotations``), and a second dataset of ``--inputs`` text inputs; done in this
  process over the ASGI transport, with a larger bulk limit to be quick;
* the API under test: one uvicorn process (``create_app(Settings())`` from the environment, as
  ``labelstream serve`` runs it), called over real HTTP on 127.0.0.1 with a keep-alive client.
  The figures are client-observed request times on loopback (server time plus well under a
  millisecond of loopback and client decoding);
* (a) one page of 100 annotations with 5 fields (id, conceptId, status, confidence, box):
  the first page and a page from the middle (after the 500th, i.e. with a cursor), each
  requested ``--repeats`` times: median and p99, and the CPU time the API process (and, on the
  embedded engine, the nx-27017 process) spent per page meanwhile, read from ``/proc``: a
  figure that moves much less than wall time on a shared, busy machine;
* (b) all annotations as pages of 100, following ``endCursor`` (``--walks`` walks: median);
* (c) ``createLabelingTask`` over the ``--inputs`` dataset (people label it, so no model runs):
  time until the mutation returns, and until the task is seeded (``seeding: false``, polled
  every 20 ms over HTTP) with one arq worker in this process doing the seeding.

The machine's calibration figure (bench/calibrate.py) is printed first; bench/RESULTS.md keeps
both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIELDS = "id conceptId status confidence box { top left bottom right }"
PAGE_QUERY = (
    "query($a: ID!, $after: String) { annotations(appId: $a, first: 100, after: $after) { "
    f"nodes {{ {FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }}"
)
CONCEPTS = 10
SEED_CHUNK = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(port: int) -> None:
    """The API under test, configured from the environment like ``labelstream serve``."""
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    uvicorn.run(
        lambda: create_app(Settings()),
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from app.embedded import _die_with_parent

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # the API must not outlive the bench
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited: {log.read_text()[-2000:]}")
        try:
            httpx.post(f"{url}/graphql", json={"query": "{ __typename }"}, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"API did not start: {log.read_text()[-2000:]}")


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Http:
    """A keep-alive client of the API under test that times each request."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Key {key}"}, timeout=600)

    async def gql(self, query: str, **variables: Any) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        resp = await self.client.post("/graphql", json={"query": query, "variables": variables})
        elapsed = time.perf_counter() - t0
        body = resp.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        return elapsed, body["data"]

    async def close(self) -> None:
        await self.client.aclose()


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def seed(bench: Any, annotations: int, inputs: int) -> dict[str, Any]:
    """The app, its annotations and the big dataset, in-process (not timed)."""
    n_inputs = -(-annotations // CONCEPTS)
    app_id, _ = await bench.app_with_dataset([{"text": f"input {i}"} for i in range(n_inputs)])
    concepts = [await bench.concept(app_id, f"c{k}") for k in range(CONCEPTS)]
    input_ids: list[str] = []
    after = None
    while True:
        page = (
            await bench.gql(
                "query($a: ID!, $after: String) { inputs(appId: $a, first: 100, after: $after) { "
                "nodes { id } pageInfo { hasNextPage endCursor } } }",
                a=app_id,
                after=after,
            )
        )["inputs"]
        input_ids += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    items = [
        {
            "inputId": input_ids[i // CONCEPTS],
            "conceptId": concepts[i % CONCEPTS],
            "box": {"top": 0.1, "left": 0.1, "bottom": 0.5 + (i % 7) / 20, "right": 0.6},
            "confidence": (i % 100) / 100,
        }
        for i in range(annotations)
    ]
    for k in range(0, len(items), SEED_CHUNK):
        res = (
            await bench.gql(
                "mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { "
                "... on AddAnnotationsSuccess { errors { message } } ... on Error { message } } }",
                i={"appId": app_id, "annotations": items[k : k + SEED_CHUNK]},
            )
        )["addAnnotations"]
        assert not res.get("errors") and "message" not in res, res
    big = (
        await bench.gql(
            'mutation($a: ID!) { createDataset(input: {appId: $a, name: "big"}) { '
            "... on DatasetSuccess { dataset { id } } } }",
            a=app_id,
        )
    )["createDataset"]["dataset"]["id"]
    for k in range(0, inputs, SEED_CHUNK):
        chunk = [{"text": f"big {i}", "datasetIds": [big]} for i in range(k, min(inputs, k + SEED_CHUNK))]
        res = (
            await bench.gql(
                "mutation($a: ID!, $i: [AddInputItem!]!) { addInputs(appId: $a, inputs: $i) { "
                "... on AddInputsSuccess { errors { message } } } }",
                a=app_id,
                i=chunk,
            )
        )["addInputs"]
        assert not res["errors"], res
    return {"app_id": app_id, "concepts": concepts, "big": big}


async def pages(
    http: Http, app_id: str, annotations: int, repeats: int, walks: int, pids: dict[str, int | None]
) -> dict[str, float]:
    # the cursor of the 500th annotation, for a page from the middle
    middle, cursor = 0, None
    while middle < annotations // 2:
        _, data = await http.gql(PAGE_QUERY, a=app_id, after=cursor)
        cursor = data["annotations"]["pageInfo"]["endCursor"]
        middle += len(data["annotations"]["nodes"])
    for _ in range(5):  # warm-up: caches, connections
        await http.gql(PAGE_QUERY, a=app_id, after=None)
    first: list[float] = []
    mid: list[float] = []
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    for _ in range(repeats):
        t, data = await http.gql(PAGE_QUERY, a=app_id, after=None)
        assert len(data["annotations"]["nodes"]) == min(100, annotations)
        first.append(t)
        t, data = await http.gql(PAGE_QUERY, a=app_id, after=cursor)
        mid.append(t)
    cpu: dict[str, float] = {}
    for name, pid in pids.items():
        before, after = cpu_before[name], cpu_seconds(pid)
        if before is not None and after is not None:
            cpu[f"{name}_cpu_per_page_ms"] = (after - before) / (2 * repeats) * 1000
    walk_times: list[float] = []
    for _ in range(walks):
        seen, after, total = 0, None, 0.0
        while True:
            t, data = await http.gql(PAGE_QUERY, a=app_id, after=after)
            total += t
            seen += len(data["annotations"]["nodes"])
            if not data["annotations"]["pageInfo"]["hasNextPage"]:
                break
            after = data["annotations"]["pageInfo"]["endCursor"]
        assert seen == annotations, (seen, annotations)
        walk_times.append(total)
    return {
        "first_page_p50_ms": statistics.median(first) * 1000,
        "first_page_p99_ms": pct(first, 0.99) * 1000,
        "middle_page_p50_ms": statistics.median(mid) * 1000,
        "middle_page_p99_ms": pct(mid, 0.99) * 1000,
        "all_pages_ms": statistics.median(walk_times) * 1000,
    } | cpu


async def create_task(bench: Any, http: Http, seeded: dict[str, Any], inputs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    _, made = await http.gql(
        "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { "
        "... on LabelingTaskSuccess { labelingTask { id seeding } } ... on Error { code message } } }",
        i={
            "appId": seeded["app_id"],
            "name": "big",
            "datasetId": seeded["big"],
            "conceptIds": seeded["concepts"][:1],
            "autoAnnotation": False,
        },
    )
    returned = time.perf_counter() - t0
    task = made["createLabelingTask"]["labelingTask"]
    worker = bench.worker()
    running = asyncio.create_task(worker.async_run())
    state: dict[str, Any] = {}
    try:
        while True:
            _, data = await http.gql(
                "query($id: ID!) { labelingTask(id: $id) { seeding metrics { inputsTotal inputsSeeded } } }",
                id=task["id"],
            )
            state = data["labelingTask"]
            if not state["seeding"]:
                break
            if running.done():
                running.result()
                raise RuntimeError(f"the worker stopped before the task was seeded: {state}")
            await asyncio.sleep(0.02)
        seeded_s = time.perf_counter() - t0
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 120)
        await worker.close()
    assert state["metrics"]["inputsSeeded"] == inputs, state
    return {"create_returns_ms": returned * 1000, "seeded_s": seeded_s}


async def bench_engine(engine: str, args: argparse.Namespace) -> dict[str, float]:
    from app.embedded import EmbeddedServers
    from bench.pipeline import Bench, bench_settings

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labelstream-pages-")))
        mongodb_url = None
        if engine == "ferretdb2":
            from tests.ferretdb import FerretDBServer, find_ferretdb_binary

            binary = find_ferretdb_binary()
            if binary is None:
                raise SystemExit("no ferretdb binary: run .ci/build-ferretdb2.sh first")
            mongodb_url = stack.enter_context(FerretDBServer(binary, tmp / "ferretdb")).url
        servers = stack.enter_context(EmbeddedServers(tmp, mongodb_url, None))
        settings = bench_settings(servers, tmp, max_bulk_items=SEED_CHUNK)
        async with Bench(settings) as bench:
            for name in ("httpx", "arq.worker", "labelstream.seeding"):
                logging.getLogger(name).setLevel(logging.WARNING)
            t0 = time.perf_counter()
            seeded = await seed(bench, args.annotations, args.inputs)
            drain = bench.worker()  # the jobs seeding queued (e.g. search embeddings), not timed
            await drain.async_run()
            await drain.close()
            print(f"  {engine}: seeded in {time.perf_counter() - t0:.1f} s", flush=True)
            key = bench.client.headers["Authorization"].removeprefix("Key ")
            env = dict(
                os.environ,
                LABELSTREAM_MONGODB_URL=settings.mongodb_url or "",
                LABELSTREAM_REDIS_URL=settings.redis_url or "",
                LABELSTREAM_DATA_DIR=str(tmp),
                LABELSTREAM_MONGODB_DB="bench",
                PYTHONPATH=str(ROOT),
            )
            proc, url = start_api(env, tmp / "api.log")
            http = Http(url, key)
            try:
                mongo = getattr(servers.mongo, "_proc", None)  # the embedded nx-27017, if it runs
                pids = {"api": proc.pid, "db": mongo.pid if mongo is not None else None}
                figures = await pages(
                    http, seeded["app_id"], args.annotations, args.repeats, args.walks, pids
                )
                if args.inputs:
                    figures |= await create_task(bench, http, seeded, args.inputs)
            finally:
                await http.close()
                stop_api(proc)
    return figures


ROWS = [
    ("first page of 100, p50 (ms)", "first_page_p50_ms", "{:.1f}"),
    ("first page of 100, p99 (ms)", "first_page_p99_ms", "{:.1f}"),
    ("middle page of 100, p50 (ms)", "middle_page_p50_ms", "{:.1f}"),
    ("middle page of 100, p99 (ms)", "middle_page_p99_ms", "{:.1f}"),
    ("all as pages of 100 (ms)", "all_pages_ms", "{:.0f}"),
    ("API process CPU per page (ms)", "api_cpu_per_page_ms", "{:.1f}"),
    ("nx-27017 CPU per page (ms)", "db_cpu_per_page_ms", "{:.1f}"),
    ("createLabelingTask returns (ms)", "create_returns_ms", "{:.0f}"),
    ("task seeded (s)", "seeded_s", "{:.2f}"),
]


async def main(args: argparse.Namespace) -> int:
    from bench.calibrate import calibration

    engines = ["embedded", "ferretdb2"] if args.engine == "both" else [args.engine]
    print(calibration(), flush=True)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{args.annotations} annotations ({CONCEPTS} per input), pages of 100 with 5 fields, "
        f"{args.repeats} repeats, {args.walks} walks; createLabelingTask over {args.inputs} inputs",
        flush=True,
    )
    results = {engine: await bench_engine(engine, args) for engine in engines}
    print()
    print(f"{'':34}" + "".join(f"{e:>12}" for e in engines))
    for label, key, fmt in ROWS:
        cells = [fmt.format(results[e][key]) if key in results[e] else "-" for e in engines]
        print(f"{label:34}" + "".join(f"{c:>12}" for c in cells))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["both", "embedded", "ferretdb2"], default="both")
    parser.add_argument("--annotations", type=int, default=1000)
    parser.add_argument("--inputs", type=int, default=20_000, help="0 skips createLabelingTask")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--walks", type=int, default=5)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        sys.exit(0)
    if args.annotations < 200 or args.repeats < 1 or args.walks < 1 or args.inputs < 0:
        parser.error("need --annotations >= 200, --repeats >= 1, --walks >= 1, --inputs >= 0")
    sys.exit(asyncio.run(main(args)))
