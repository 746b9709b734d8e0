"""Live updates to 1,000 subscribers: Labelstream's subscription vs a plain Starlette broadcast.

    python bench/subscriptions.py [--clients 1000] [--events 20] [--cycles 10000]
                                  [--client go|python] [--deflate]
                                  [--compare NAME=PATH] [--variant NAME:VAR=VALUE,...]

Starts its own servers on 127.0.0.1 (embedded MongoDB-wire and Redis, unless MONGODB_URL /
REDIS_URL are set), then two server processes, measured side by side in the same run, both
under the same uvicorn set-up as ``labelstream serve`` (websockets-sansio, permessage-deflate
off unless ``--deflate``):

* ``labelstream``: one API process (uvicorn, the real app); N graphql-transport-ws clients all
  subscribed to ``labelingTaskProgress`` of one task.
* ``baseline``: a plain Starlette app with one Redis subscription that sends every message it
  receives, as it is, to N raw WebSocket clients. It is sent the very message a labelstream
  subscriber receives, so both servers write frames of the same bytes.

Receivers: by default ``bench/wsclients`` (Go, built here with the Go toolchain), one process
per server, so that 1,000 receivers cost the two-core box little (real subscribers sit on other
machines); ``--client python`` runs them as asyncio clients in this process instead, which
mostly measures the receivers (RESULTS.md keeps both figures).

For each event the driver writes the task's new state to MongoDB, reads it back, stamps the
publish time (wall clock, shared with the Go clients) and publishes the engine's progress
payload (``progress_payload``) on the task's channel; 0.4 s later it publishes the same message
to the baseline, so the two never compete for the CPU. Events are 0.4 s apart, longer than the 0.25 s coalescing window, so each
one is delivered (no coalescing is measured).

``--compare NAME=PATH`` runs one more labelstream server from another source tree (e.g. the main
branch, the code before a change) and ``--variant NAME:VAR=VALUE`` one from this tree with a
setting changed, each with its own N receivers and task, measured in the same run, one server
at a time per event in a rotating order: variants are compared side by side, under the same
load, which on a shared machine says more than two runs minutes apart.

Figures: p50 / p99 / max publish-to-receipt latency over all clients and events for each, the
p99 ratio to the baseline (target <= 1.3, and labelstream's p99 <= 100 ms), each server's CPU time per event,
the API process's memory per idle subscriber connection (RSS growth / N), and optionally
connect-subscribe-disconnect cycles with the Redis pattern subscriptions before and after.
Then the machine's calibration figure (``bench/calibrate.py``). Everything is bounded: it stops
by itself (timeouts everywhere) and cleans up its processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import EmbeddedMongo, EmbeddedRedis, free_port  # noqa: E402

BASELINE_CHANNEL = "bench:broadcast"

BASELINE_APP = """
import asyncio, contextlib, os
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

clients: set[WebSocket] = set()

async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    clients.add(ws)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(ws)

async def pump() -> None:
    client = aioredis.from_url(os.environ["REDIS_URL"])
    ps = client.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("CHANNEL")
    while True:
        msg = await ps.get_message(timeout=None)
        if msg is None:
            continue
        text = msg["data"].decode()
        for ws in list(clients):
            try:
                await ws.send_text(text)
            except Exception:
                clients.discard(ws)

@contextlib.asynccontextmanager
async def lifespan(app):
    task = asyncio.create_task(pump())
    yield
    task.cancel()

app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
""".replace("CHANNEL", BASELINE_CHANNEL)

QUERY = """subscription($t: ID!) { labelingTaskProgress(taskId: $t) {
  taskId status final snapshot metrics { inputsTotal processed labelingPercent } } }"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# server name -> pid, and CPU seconds spent during the measured events
PIDS: dict[str, int] = {}
CPU: dict[str, float] = {}


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


async def setup_data(mongodb_url: str, db: str, tasks: int = 1) -> tuple[str, str, list[str]]:
    """A user with a key, an app and ``tasks`` tasks (one per labelstream server), straight
    through the services."""
    from beanie import init_beanie
    from pymongo import AsyncMongoClient

    from app.apps.models import App, Membership, Role
    from app.documents import DOCUMENT_MODELS
    from app.tasks.models import LabelingTask, TaskStatus
    from app.users.service import create_api_key, get_or_create_user

    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_url)
    await init_beanie(database=client[db], document_models=DOCUMENT_MODELS)
    user = await get_or_create_user(f"bench-{secrets.token_hex(3)}@example.com")
    _, key = await create_api_key(user.id, "bench")
    app = App(name="bench", created_by=user.id)
    await app.insert()
    await Membership(app_id=app.id, user_id=user.id, roles=[Role.OWNER]).insert()
    task_ids = []
    for _ in range(tasks):
        task = LabelingTask(
            app_id=app.id,
            name="bench",
            dataset_id="none",
            concept_ids=[],
            created_by=user.id,
            status=TaskStatus.IN_PROGRESS,
        )
        task.metrics.inputs_total = 1000
        await task.insert()
        task_ids.append(task.id)
    await client.close()
    return key, app.id, task_ids


class Receiver:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_event: dict[int, list[float]] = {}
        self.received = 0


async def gql_client(
    url: str, key: str, task_id: str, receiver: Receiver, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, subprotocols=["graphql-transport-ws"], max_queue=None, compression=None) as ws:  # type: ignore[list-item]
        await ws.send(
            orjson.dumps({"type": "connection_init", "payload": {"Authorization": f"Key {key}"}}).decode()
        )
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            orjson.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"t": task_id}}}
            ).decode()
        )
        first = orjson.loads(await ws.recv())
        assert first["type"] == "next" and first["payload"]["data"]["labelingTaskProgress"]["snapshot"], first
        ready.set()
        await _receive(
            ws,
            receiver,
            stop,
            SENT["gql"],
            processed_of,
        )


async def raw_client(url: str, receiver: Receiver, ready: asyncio.Event, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_queue=None, compression=None) as ws:
        ready.set()
        await _receive(ws, receiver, stop, SENT["raw"], processed_of)


def processed_of(message: dict[str, Any]) -> Any:  # the message's event number
    return message["payload"]["data"]["labelingTaskProgress"]["metrics"]["processed"]


# event number -> publish time (wall clock, same host: the Go clients stamp with it too), per server
SENT: dict[str, dict[int, float]] = {"gql": {}, "raw": {}}
BASELINE_TASK = [""]  # the task id in the baseline's message (the first server's: same bytes)


async def _receive(
    ws: Any, receiver: Receiver, stop: asyncio.Event, sent: dict[int, float], number: Any
) -> None:
    while not stop.is_set():
        try:
            raw = await asyncio.wait_for(ws.recv(), 1.0)
        except TimeoutError:
            continue
        now = time.time()
        message = orjson.loads(raw)
        if message.get("type") in ("ping", "pong", "ka"):
            continue
        n = number(message)
        if n in sent:
            receiver.latencies.append(now - sent[n])
            receiver.by_event.setdefault(n, []).append(now - sent[n])
            receiver.received += 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def graphql_message(task_id: str, n: int) -> bytes:
    """The very message a labelstream subscriber receives for event ``n``: the baseline
    broadcasts the same bytes, so both servers send frames of the same size."""
    progress = {
        "taskId": task_id,
        "status": "IN_PROGRESS",
        "final": False,
        "snapshot": False,
        "metrics": {"inputsTotal": 1000, "processed": n, "labelingPercent": n / 10},
    }
    return orjson.dumps({"id": "1", "type": "next", "payload": {"data": {"labelingTaskProgress": progress}}})


async def measure(
    redis_url: str, mongodb_url: str, db: str, app_id: str, tasks: dict[str, str], events: int, clients: int
) -> None:
    """``tasks``: labelstream server name -> the task its subscribers follow."""
    import redis.asyncio as aioredis
    from beanie import init_beanie
    from pymongo import AsyncMongoClient

    from app.core import pubsub
    from app.documents import DOCUMENT_MODELS
    from app.tasks.models import LabelingTask
    from app.tasks.progress import progress_payload

    r = aioredis.from_url(redis_url)
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_url, tz_aware=True)  # as the app's
    await init_beanie(database=mongo[db], document_models=DOCUMENT_MODELS)
    collection = LabelingTask.get_pymongo_collection()
    await asyncio.sleep(1.0)
    cpu_before = {name: cpu_s(pid) for name, pid in PIDS.items()}
    names = [*tasks, "raw"]
    for n in range(1, events + 1):
        # one server at a time (the client process shares the 2 cores), in a rotating order
        for name in names[n % len(names) :] + names[: n % len(names)]:
            if name == "raw":
                SENT["raw"][n] = time.time()
                await r.publish(BASELINE_CHANNEL, graphql_message(BASELINE_TASK[0], n))
            else:
                # what the engine does: write, read the task back, publish its progress payload
                await collection.update_one(
                    {"_id": tasks[name]},
                    {"$set": {"metrics.inputs_processed": n}, "$currentDate": {"updated_at": True}},
                )
                task = await LabelingTask.get(tasks[name])
                assert task is not None
                payload = progress_payload(task)
                SENT[name][n] = time.time()
                await pubsub.publish_task(r, app_id, tasks[name], payload)
            await asyncio.sleep(0.4)
    await asyncio.sleep(1.0)
    CPU.update({name: cpu_s(pid) - cpu_before[name] for name, pid in PIDS.items()})
    await r.aclose()
    await mongo.close()


async def run_clients(
    gql_url: str, raw_url: str, key: str, task_id: str, n: int, api_pid: int, args: Any, urls: Any
) -> dict[str, Any]:
    stop = asyncio.Event()
    gql, raw = Receiver(), Receiver()
    rss_before = rss_kb(api_pid)
    readies: list[asyncio.Event] = []
    runners: list[asyncio.Task[None]] = []
    for k in range(n):  # connect in small waves: the 2-core box shares CPU with the servers
        for target in ("gql", "raw"):
            ready = asyncio.Event()
            readies.append(ready)
            coro = (
                gql_client(gql_url, key, task_id, gql, ready, stop)
                if target == "gql"
                else raw_client(raw_url, raw, ready, stop)
            )
            runners.append(asyncio.create_task(coro))
        if k % 50 == 49:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    await asyncio.sleep(2.0)
    rss_after = rss_kb(api_pid)
    await asyncio.wait_for(measure(*urls, {"gql": task_id}, args.events, n), 120)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*runners, return_exceptions=True), 60)
    return {"gql": gql, "raw": raw, "rss_per_conn_kb": {"gql": (rss_after - rss_before) / n}}


def build_go_clients(out_dir: Path) -> Path | None:
    """Build bench/wsclients (Go, gorilla/websocket); None when Go is not installed."""
    import shutil

    if shutil.which("go") is None:
        return None
    binary = out_dir / "wsclients"
    subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=ROOT / "bench" / "wsclients", check=True, timeout=600
    )
    return binary


async def go_clients(
    binary: Path,
    servers: dict[str, tuple[str, str, int]],
    raw_url: str,
    key: str,
    n: int,
    args: Any,
    urls: Any,
) -> dict[str, Any]:
    """The receivers in a separate Go process per server: they cost the box little.
    ``servers``: labelstream server name -> (its URL, the task its subscribers follow, pid)."""
    init = orjson.dumps({"type": "connection_init", "payload": {"Authorization": f"Key {key}"}}).decode()
    rss_before = {name: rss_kb(pid) for name, (_, _, pid) in servers.items()}
    number = ["-number", '"processed":([0-9]+)']
    commands = []
    for name, (url, task_id, _) in servers.items():
        sub = orjson.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"t": task_id}}}
        ).decode()
        cmd = ["-url", url, "-protocol", "graphql-transport-ws", "-init", init, "-subscribe", sub]
        commands.append((name, [*cmd, *number]))
    commands.append(("raw", ["-url", raw_url, *number]))
    procs = {}
    for name, cmd in commands:
        procs[name] = await asyncio.create_subprocess_exec(
            str(binary),
            "-n",
            str(n),
            *(["-compress"] if args.deflate else []),
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert procs[name].stdout is not None
        line = (await asyncio.wait_for(procs[name].stdout.readline(), 180)).decode().split()
        if line[:1] != ["ready"] or int(line[1]) != n:
            raise RuntimeError(f"{name} clients: {line}")
    await asyncio.sleep(2.0)
    rss = {name: (rss_kb(pid) - rss_before[name]) / n for name, (_, _, pid) in servers.items()}
    tasks = {name: task_id for name, (_, task_id, _) in servers.items()}
    await asyncio.wait_for(measure(*urls, tasks, args.events, n), 60 + 2 * len(procs) * args.events)
    receivers = {}
    for name, proc in procs.items():
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        out = orjson.loads(await asyncio.wait_for(proc.stdout.read(), 60))
        await proc.wait()
        if out["errors"]:
            raise RuntimeError(f"{name} clients: {out['errors'][:3]}")
        rec = receivers[name] = Receiver()
        for number_, ns in out["received"]:
            if number_ in SENT[name]:
                latency = ns / 1e9 - SENT[name][number_]
                rec.latencies.append(latency)
                rec.by_event.setdefault(number_, []).append(latency)
                rec.received += 1
    return {**receivers, "rss_per_conn_kb": rss}


async def cycles(gql_url: str, key: str, task_id: str, count: int, api_url: str, redis_url: str) -> None:
    import redis.asyncio as aioredis
    from websockets.asyncio.client import connect

    r = aioredis.from_url(redis_url)

    async def one() -> None:
        async with connect(gql_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(
                orjson.dumps({"type": "connection_init", "payload": {"Authorization": f"Key {key}"}}).decode()
            )
            await ws.recv()
            await ws.send(
                orjson.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"t": task_id}}}
                ).decode()
            )
            await ws.recv()

    numpat_before = await r.execute_command("PUBSUB", "NUMPAT")
    started = time.perf_counter()
    done = 0
    while done < count:
        batch = min(50, count - done)
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(batch))), 120)
        done += batch
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)
    numpat_after = await r.execute_command("PUBSUB", "NUMPAT")
    await r.aclose()
    print(
        f"cycles: {count} connect/subscribe/disconnect in {elapsed:.1f} s; "
        f"Redis pattern subscriptions {numpat_before} -> {numpat_after}"
    )


def parse_servers(args: Any) -> dict[str, tuple[Path, dict[str, str]]]:
    """Labelstream servers to measure side by side: name -> (source tree, extra environment).
    "labelstream" is this tree; ``--compare`` adds another tree (e.g. /work/main, the code
    before a change), ``--variant`` this tree with settings changed."""
    servers: dict[str, tuple[Path, dict[str, str]]] = {"gql": (ROOT, {})}
    for spec in args.compare:
        name, _, path = spec.partition("=")
        servers[name] = (Path(path).resolve(), {})
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        env = dict(a.split("=", 1) for a in assignments.split(",") if a)
        servers[name] = (ROOT, env)
    return servers


def label(name: str) -> str:
    return {"gql": "labelstream", "raw": "baseline"}.get(name, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=0, help="connect/disconnect cycles (e.g. 10000)")
    parser.add_argument(
        "--client", choices=("go", "python"), default="go", help="receivers: bench/wsclients (Go) or asyncio"
    )
    parser.add_argument("--deflate", action="store_true", help="permessage-deflate on (both servers)")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run labelstream from the source tree PATH (e.g. the main branch), side by side",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="also run this tree with these environment variables (settings), side by side",
    )
    parser.add_argument("--no-calibration", action="store_true", help="skip the calibration figure")
    args = parser.parse_args()
    servers = parse_servers(args)
    if args.client == "python" and len(servers) > 1:
        parser.error("--compare/--variant need the Go receivers")

    with tempfile.TemporaryDirectory(prefix="labelstream-bench-") as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        mongodb_url = os.environ.get("MONGODB_URL")
        redis_url = os.environ.get("REDIS_URL")
        if not mongodb_url:
            mongo = EmbeddedMongo(tmp / "mongo")
            mongo.start()
            stack.callback(mongo.stop)
            mongodb_url = mongo.url
        if not redis_url:
            redis = EmbeddedRedis(tmp / "redis", persist=False)
            redis.start()
            stack.callback(redis.stop)
            redis_url = redis.url
        db = f"bench_{secrets.token_hex(3)}"
        key, app_id, task_ids = asyncio.run(setup_data(mongodb_url, db, len(servers)))
        BASELINE_TASK[0] = task_ids[0]
        env = dict(
            os.environ,
            MONGODB_URL=mongodb_url,
            REDIS_URL=redis_url,
            LABELSTREAM_MONGODB_DB=db,
            LABELSTREAM_DATA_DIR=str(tmp / "data"),
            LABELSTREAM_WS_KEEP_ALIVE_INTERVAL_S="0",
        )
        # every server runs the same uvicorn set-up as `labelstream serve` (permessage-deflate off
        # by default: LABELSTREAM_WS_PER_MESSAGE_DEFLATE)
        deflate = "true" if args.deflate else "false"

        def uvicorn(
            target: str, port: int, cwd: Path, extra_env: dict[str, str], *extra: str
        ) -> subprocess.Popen[bytes]:
            cmd = [sys.executable, "-m", "uvicorn", target, *extra, "--host", "127.0.0.1"]
            cmd += ["--port", str(port), "--ws", "websockets-sansio", "--ws-per-message-deflate", deflate]
            proc_env = {**env, "PYTHONPATH": str(cwd), **extra_env}
            proc = subprocess.Popen([*cmd, "--log-level", "warning"], cwd=cwd, env=proc_env)
            stack.callback(lambda: (proc.terminate(), proc.wait(10)))
            return proc

        ports = {name: free_port() for name in servers}
        procs = {
            name: uvicorn("app.main:create_app", ports[name], tree, extra_env, "--factory")
            for name, (tree, extra_env) in servers.items()
        }
        raw_port = free_port()
        (tmp / "baseline.py").write_text(BASELINE_APP)
        raw = uvicorn("baseline:app", raw_port, tmp, {})
        PIDS.update({name: proc.pid for name, proc in procs.items()}, raw=raw.pid)
        for name, proc in procs.items():
            wait_http(f"http://127.0.0.1:{ports[name]}/health", proc)
        wait_http(f"http://127.0.0.1:{raw_port}/", raw)
        urls_of = {name: f"ws://127.0.0.1:{port}/graphql" for name, port in ports.items()}
        gql_url, raw_url = urls_of["gql"], f"ws://127.0.0.1:{raw_port}/ws"
        api, task_id = procs["gql"], task_ids[0]
        for name in servers:
            SENT.setdefault(name, {})

        binary = build_go_clients(tmp) if args.client == "go" else None
        if args.client == "go" and binary is None:
            print("no Go toolchain: falling back to --client python")
        urls = (redis_url, mongodb_url, db, app_id)
        if binary is not None:
            targets = {name: (urls_of[name], task_ids[k], procs[name].pid) for k, name in enumerate(servers)}
            coro = go_clients(binary, targets, raw_url, key, args.clients, args, urls)
        else:
            coro = run_clients(gql_url, raw_url, key, task_id, args.clients, api.pid, args, urls)
        out = asyncio.run(coro)
        base = out["raw"]
        expected = args.clients * args.events
        print(
            f"subscribers: {args.clients} per server, {args.events} events, 0.4 s apart (127.0.0.1, one process "
            f"each; {'Go' if binary else 'Python'} clients; permessage-deflate {deflate}; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})"
        )
        for name, (tree, extra_env) in servers.items():
            if name != "gql":
                what = f"source tree {tree}" if tree != ROOT else f"this tree with {extra_env}"
                print(f"{label(name)}: {what}")
        for name in [*servers, "raw"]:
            rec = out[name]
            print(
                f"{label(name):12s} received {rec.received}/{expected}  p50 {pct(rec.latencies, 0.5):6.1f} ms  "
                f"p99 {pct(rec.latencies, 0.99):6.1f} ms  max {pct(rec.latencies, 1.0):6.1f} ms"
            )
        print(
            "server CPU per event (all subscribers): "
            + ", ".join(
                f"{label(name)} {CPU[name] / args.events * 1000:.1f} ms" for name in [*servers, "raw"]
            )
        )
        if os.environ.get("BENCH_VERBOSE"):
            for name in [*servers, "raw"]:
                worst = {n: round(max(v) * 1000) for n, v in sorted(out[name].by_event.items())}
                print(f"{label(name)} max per event (ms): {worst}")
        for name in servers:
            p99 = pct(out[name].latencies, 0.99)
            print(
                f"p99 ratio {label(name)} / baseline: {p99 / pct(base.latencies, 0.99):.2f} (target <= 1.3); "
                f"{label(name)} p99 <= 100 ms: {p99 <= 100}"
            )
        for name, kib in out["rss_per_conn_kb"].items():
            print(f"memory per idle subscriber connection ({label(name)} RSS growth / N): {kib:.1f} KiB")
        if args.cycles:
            asyncio.run(
                cycles(gql_url, key, task_id, args.cycles, f"http://127.0.0.1:{ports['gql']}", redis_url)
            )
            print(f"API process RSS after cycles: {rss_kb(api.pid) / 1024:.1f} MiB")
    if not args.no_calibration:
        from bench.calibrate import calibration

        print(calibration(), flush=True)


if __name__ == "__main__":
    main()
