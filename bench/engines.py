"""Side-by-side figures for the two MongoDB-wire test engines: nx-27017 and FerretDB 2 + DocumentDB.

    python bench/engines.py [--docs 20000] [--batch 1000] [--lookups 1000] [--starts 3]

For each engine, on fresh data directories under one temp dir:

* start time: process spawn until a ``ping`` answers (TCP polled every 5 ms, then ping), the
  median of ``--starts`` cold starts (for FerretDB 2: a new PostgreSQL cluster, ``initdb``,
  ``CREATE EXTENSION documentdb``, then FerretDB, as the test fixture does);
* insert throughput: ``insert_many`` of ``--docs`` ~200-byte documents in batches of
  ``--batch`` (docs/s), with the secondary index already in place, as in the app;
* point reads: ``--lookups`` sequential ``find_one`` by ``_id`` (ops/s);
* one indexed range query returning 1,000 documents (ms; median of 5 runs);
* the documents of 50 consecutive ``input_id``s (two each, indexed field) among all: plain
  ``$in`` against ``app.core.db.any_of`` (the same ``$in`` bounded by its values' range), as
  the labeling run reads a chunk's annotations and assignments (ms; median of 5 runs).

All traffic goes through ``pymongo.AsyncMongoClient``, as in the app. FerretDB's binary comes
from ``tests.ferretdb.find_ferretdb_binary`` (build it with ``.ci/build-ferretdb2.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pymongo
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.core.db import any_of  # noqa: E402
from tests.ferretdb import FerretDBServer, find_ferretdb_binary  # noqa: E402

RANGE_DOCS = 1000
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nx_command(data_dir: Path, port: int) -> list[str]:
    exe = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    base = [exe] if Path(exe).exists() else [sys.executable, "-m", "nx_27017.nx_27017"]
    return [
        *base,
        "--data-dir", str(data_dir),
        "--pid-file", str(data_dir / "nx-27017.pid"),
        "--log-file", str(data_dir / "nx-27017.log"),
        "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip


@dataclass
class Running:
    proc: subprocess.Popen[bytes] | None
    url: str
    startup_s: float
    server: FerretDBServer | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def launch_nx(data_dir: Path) -> Running:
    port = free_port()
    return launch(nx_command(data_dir, port), data_dir, port)


def launch(command: list[str], data_dir: Path, port: int, timeout: float = 60) -> Running:
    """Spawn the engine and return once ``ping`` answers, with the elapsed time."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"mongodb://127.0.0.1:{port}/"
    with (data_dir / "bench-stdout.log").open("ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir
        )
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {proc.returncode}; see {data_dir}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.005)
            continue
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=2000, directConnection=True
        )
        try:
            client.admin.command("ping")
        except pymongo.errors.PyMongoError:
            time.sleep(0.005)
            continue
        finally:
            client.close()
        return Running(proc, url, time.perf_counter() - t0)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{command[0]} did not answer ping within {timeout:.0f}s")


def launch_ferretdb(binary: str, data_dir: Path) -> Running:
    """The test fixture's FerretDB 2 + PostgreSQL cluster, timed from spawn to ``ping``."""
    t0 = time.perf_counter()
    server = FerretDBServer(binary, data_dir)
    server.start()
    return Running(None, server.url, time.perf_counter() - t0, server)


def make_docs(n: int) -> list[dict[str, Any]]:
    rng = random.Random(42)
    labels = ["cat", "dog", "car", "person", "tree"]
    return [
        {
            "_id": f"{i:08d}{rng.getrandbits(64):016x}",
            "project_id": "prj_bench_0001",
            "seq": i,
            "label": rng.choice(labels),
            "score": rng.random(),
            "status": "pending",
            "input_id": f"in{i // 2:08d}",
            "created_at": T0 + timedelta(seconds=i),
            "note": "x" * 48,
        }
        for i in range(n)
    ]


async def workload(url: str, docs: list[dict[str, Any]], batch: int, lookups: int) -> dict[str, float]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        coll = client["bench"]["items"]
        await coll.create_index([("project_id", 1), ("seq", 1)], name="project_seq")
        await coll.create_index([("input_id", 1)], name="input_id")

        t0 = time.perf_counter()
        for start in range(0, len(docs), batch):
            await coll.insert_many(docs[start : start + batch], ordered=True)
        insert_s = time.perf_counter() - t0
        stored = await coll.count_documents({})
        if stored != len(docs):
            raise RuntimeError(f"expected {len(docs)} documents, found {stored}")

        ids = [d["_id"] for d in random.Random(7).sample(docs, lookups)]
        t0 = time.perf_counter()
        for _id in ids:
            if await coll.find_one({"_id": _id}) is None:
                raise RuntimeError(f"find_one({_id!r}) found nothing")
        lookup_s = time.perf_counter() - t0

        lo = len(docs) // 2
        query = {"project_id": "prj_bench_0001", "seq": {"$gte": lo, "$lt": lo + RANGE_DOCS}}
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            found = await coll.find(query).sort("seq", 1).to_list()
            timings.append(time.perf_counter() - t0)
            if len(found) != RANGE_DOCS:
                raise RuntimeError(f"range query returned {len(found)} documents")
        chunk = [f"in{k:08d}" for k in range(lo // 2, lo // 2 + 50)]
        shapes = {"in_ms": {"$in": chunk}, "any_of_ms": any_of(chunk)}
        chunk_ms: dict[str, float] = {}
        for key, condition in shapes.items():
            timings = []
            for _ in range(5):
                t0 = time.perf_counter()
                found = await coll.find({"input_id": condition}).to_list()
                timings.append(time.perf_counter() - t0)
                if len(found) != 2 * len(chunk):
                    raise RuntimeError(f"{key}: {len(found)} documents")
            chunk_ms[key] = statistics.median(timings) * 1000
        return {
            **chunk_ms,
            "insert_docs_per_s": len(docs) / insert_s,
            "find_one_ops_per_s": lookups / lookup_s,
            "range_ms": statistics.median(timings) * 1000,
        }
    finally:
        await client.close()


def bench_engine(
    name: str,
    start: Callable[[Path], Running],
    root: Path,
    args: argparse.Namespace,
    docs: list[dict[str, Any]],
) -> dict[str, Any]:
    starts: list[float] = []
    for i in range(args.starts):
        running = start(root / f"{name}-{i}")
        starts.append(running.startup_s)
        if i < args.starts - 1:
            running.stop()
    try:
        figures = asyncio.run(workload(running.url, docs, args.batch, args.lookups))
    finally:
        running.stop()
    return {"starts_s": starts, "start_s": statistics.median(starts), **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    if args.docs < 2 * RANGE_DOCS or args.lookups > args.docs or args.starts < 1:
        parser.error("need --docs >= 2000, --lookups <= --docs, --starts >= 1")

    binary = find_ferretdb_binary()
    if binary is None:
        print("no ferretdb binary: run .ci/build-ferretdb2.sh first", file=sys.stderr)
        return 2

    from bench.calibrate import calibration

    print(calibration(), flush=True)
    docs = make_docs(args.docs)
    size = statistics.mean(len(bson.encode(d)) for d in docs[:1000])
    print(f"{args.docs} docs of ~{size:.0f} bytes BSON, batches of {args.batch}; "
          f"{args.lookups} find_one by _id; range query of {RANGE_DOCS} docs")  # fmt: skip
    print(f"ferretdb: {binary}")

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="labelstream-bench-") as tmp:
        root = Path(tmp)
        engines: list[tuple[str, Callable[[Path], Running]]] = [
            ("nx-27017", launch_nx),
            ("ferretdb2", lambda data_dir: launch_ferretdb(binary, data_dir)),
        ]
        for name, start in engines:
            results[name] = bench_engine(name, start, root, args, docs)

    rows = [
        ("start (median, s)", "start_s", "{:.2f}"),
        ("insert_many (docs/s)", "insert_docs_per_s", "{:,.0f}"),
        ("find_one by _id (ops/s)", "find_one_ops_per_s", "{:,.0f}"),
        (f"range query, {RANGE_DOCS} docs (ms)", "range_ms", "{:.1f}"),
        ("50 input_ids, $in (ms)", "in_ms", "{:.1f}"),
        ("50 input_ids, any_of (ms)", "any_of_ms", "{:.1f}"),
    ]
    names = list(results)
    print()
    print(f"{'':32}" + "".join(f"{n:>14}" for n in names))
    for label, key, fmt in rows:
        print(f"{label:32}" + "".join(f"{fmt.format(results[n][key]):>14}" for n in names))
    for n in names:
        print(f"{n} individual starts (s): " + ", ".join(f"{s:.2f}" for s in results[n]["starts_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
