"""A trivial authenticated query against raw Starlette, side by side, under the same uvicorn.

    python bench/auth.py [--runs 3] [--seconds 10] [--connections 16]

Three servers, each one uvicorn process with the same settings (one worker, no access log,
``httptools``/``uvloop`` when installed, as uvicorn picks them), on the embedded nx-27017 +
valkey:

* ``raw``: a bare Starlette app answering ``POST /graphql`` with a constant JSON body (it reads
  the request body, like any JSON endpoint);
* ``cached``: Labelstream, ``{ me { user { email } } }`` with a key (default settings: verified
  keys cached per process, see ``app/access.py``);
* ``uncached``: the same with ``LABELSTREAM_AUTH_CACHE_TTL_S=0`` (the key and its user are read
  from MongoDB on every request).

``wrk`` (Debian's package) is the load generator: one thread, ``--connections`` connections,
``--seconds`` per run; the servers are measured in turn, ``--runs`` rounds. Printed: req/s of
each run, the medians, and each Labelstream figure as a share of raw Starlette's. A calibration
figure of the machine comes first: the plain inference loop of bench/calibrate.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = "{ me { user { email } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the servers (run in child processes: `python bench/auth.py --serve NAME --port P`) ----------


def raw_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def graphql(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"data": {"me": {"user": {"email": "bench@example.com"}}}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


def labelstream_app() -> object:
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings())


def serve(name: str, port: int) -> None:
    import uvicorn

    factory = raw_app if name == "raw" else labelstream_app
    uvicorn.run(
        factory,
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# -- the driver -----------------------------------------------------------------------------------


async def make_key(mongodb_url: str, db: str) -> str:
    from app.documents import open_database
    from app.users.service import create_api_key, get_or_create_user

    client = await open_database(mongodb_url, db)
    try:
        user = await get_or_create_user("bench@example.com")
        _, secret = await create_api_key(user.id, "bench")
        return secret
    finally:
        await client.close()


def start(name: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", name, "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            httpx.post(f"{url}/graphql", json={"query": "{ __typename }"}, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")


def wrk(url: str, key: str, seconds: int, connections: int, script_dir: Path) -> float:
    script = script_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps({'query': QUERY}))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Key {key}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{url}/graphql"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(out)
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", choices=["raw", "cached", "uncached"])
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    from app.embedded import EmbeddedServers
    from bench.calibrate import calibration

    print(calibration(), flush=True)
    with tempfile.TemporaryDirectory(prefix="labelstream-bench-auth-") as tmp:
        root = Path(tmp)
        with EmbeddedServers(root, None, None) as servers:
            assert servers.mongodb_url and servers.redis_url
            db = "bench_auth"
            key = asyncio.run(make_key(servers.mongodb_url, db))
            base = dict(os.environ)
            base.update(
                MONGODB_URL=servers.mongodb_url,
                REDIS_URL=servers.redis_url,
                LABELSTREAM_MONGODB_DB=db,
                LABELSTREAM_DATA_DIR=str(root / "data"),
                PYTHONPATH=str(ROOT),
            )
            envs = {
                "raw": base,
                "cached": base,
                "uncached": base | {"LABELSTREAM_AUTH_CACHE_TTL_S": "0"},
            }
            figures: dict[str, list[float]] = {name: [] for name in envs}
            procs = {}
            try:
                for name, env in envs.items():
                    procs[name] = start(name, env, root / f"{name}.log")
                # warm up each (first requests load the schema, caches, connections)
                for _, url in procs.values():
                    wrk(url, key, 2, args.connections, root)
                for run in range(args.runs):
                    for name, (_, url) in procs.items():
                        rate = wrk(url, key, args.seconds, args.connections, root)
                        figures[name].append(rate)
                        print(f"run {run + 1} {name:9} {rate:8.0f} req/s", flush=True)
            finally:
                for proc, _ in procs.values():
                    proc.terminate()
                    proc.wait(timeout=20)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    raw = medians["raw"]
    print()
    for name, value in medians.items():
        share = f"{value / raw * 100:5.1f} % of raw" if name != "raw" else ""
        print(f"median {name:9} {value:8.0f} req/s  {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
