"""GraphQL document limits: req/s with the limits on and off, the same caches, in one run.

    python bench/graphql_limits.py [--seconds 2] [--rounds 5] [--concurrency 8] [--queries me,dashboard,components]

Starts an embedded MongoDB-wire server on 127.0.0.1 (unless MONGODB_URL is set), opens the
real app (``create_app`` and its lifespan; no Redis, nothing here needs it) and serves it with
uvicorn on a free 127.0.0.1 port, in this process. Between phases the GraphQL view's schema is
swapped, so both configurations share everything else (process, server, database, connections):

* ``limited``: ``build_schema(settings)``, what the app runs: document limits checked before
  validation, ``CheckedParserCache`` + ``OffloadedValidation`` + ``ValidationCache``;
* ``unlimited``: ``build_schema(settings, document_limits=False)``, the configuration before the
  limits: Strawberry's ``ParserCache`` + ``ValidationCache``, its depth and alias rules.

Queries, each authenticated with an API key (the view needs one for every operation, and
checking it reads the key and its user from MongoDB):

* ``me``: ``{ me { user { email } } }``, the cheapest: where the limits' share is largest;
* ``dashboard``: an app page: the app with the caller's roles, 20 concepts, the caller; it also
  reads the membership and the concepts, as real requests do;
* ``components``: a big legal document as a client app writes it (1.2 KB, a fragment per
  component, complexity ~1,400): the limited configuration parsed and validated it off the
  event loop the first time, then serves it from the same caches.

Load comes from another process (this script with ``--load``): N keep-alive HTTP/1.1
connections written with asyncio streams (the request pre-encoded, the response read by its
Content-Length), so the client costs little of the two cores. Phases are short and alternate
(limited, unlimited, unlimited, limited, ...; ``--rounds`` each per query) because the load
other work puts on a shared box swings by tens of percent within a minute; every response is
checked to carry no ``errors``. Then, in process: how long refusing each abusive document of issue 11 takes;
the documents the default limits accept that cost the most for their size, how long checking and validating each takes, and where (event loop or worker
thread); and ``schema.execute`` of ``{ __typename }`` and of the introspection query, limited
against unlimited in alternating batches: the per-request cost of the limits with neither HTTP
nor MongoDB around it.

Figures: req/s per configuration and query (each round; the median and range of the rounds),
and the ratio of the medians unlimited / limited (target <= 1.2). Bounded: under two minutes
with the defaults (about 100 s on the shared two-core box); everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphql import get_introspection_query  # noqa: E402

ME = "{ me { user { email } } }"
DASHBOARD = """query Dashboard($a: ID!) {
  app(id: $a) { id name description myRoles }
  concepts(appId: $a, first: 20) { nodes { id name } pageInfo { hasNextPage endCursor } }
  me { user { email name } }
}"""
INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
)
COMPONENTS = (
    "query Components($a: ID!) {\n"
    "  me { user { " + " ".join(f"...User{i}" for i in range(16)) + " } }\n"
    "  app(id: $a) { id name description myRoles }\n"
    "  apps(first: 10) { nodes { id name description createdAt } pageInfo { hasNextPage endCursor } }\n"
    "}\n" + "\n".join(f"fragment User{i} on User {{ id email name createdAt }}" for i in range(16))
)
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


# ---------------------------------------------------------------- the load process (--load)


async def _connection(port: int, request: bytes, deadline: float) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = bad = 0
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            found = CONTENT_LENGTH.search(head)
            body = await reader.readexactly(int(found.group(1)) if found else 0)
            done += 1
            if head[9:12] != b"200" or b'"errors":[{"message"' in body:
                bad += 1
    finally:
        writer.close()
    return done, bad


async def _load(port: int, body: bytes, key: str, seconds: float, concurrency: int) -> None:
    request = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Key {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    started = time.monotonic()
    results = await asyncio.gather(
        *(_connection(port, request, started + seconds) for _ in range(concurrency))
    )
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {"requests": sum(r[0] for r in results), "bad": sum(r[1] for r in results), "seconds": elapsed}
        )
    )


# ---------------------------------------------------------------- the server side


async def _phase(port: int, body_path: Path, key: str, seconds: float, concurrency: int) -> float:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--load",
        str(port),
        str(body_path),
        key,
        str(seconds),
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    result = json.loads(out)
    if result["bad"]:
        raise RuntimeError(f"{result['bad']} of {result['requests']} responses failed")
    return float(result["requests"] / result["seconds"])


def _worst_accepted() -> list[tuple[str, str]]:
    """Documents the default limits accept, made as costly as we could for their size."""

    def arguments(n: int) -> str:
        return '{ __type(name: "x"' + "".join(f", a{i}: 1" for i in range(n)) + ") { name } }"

    return [
        ("98 tokens of unknown arguments", arguments(29)),
        ("32 aliases (99 tokens)", "{ " + " ".join(f"a{i}: __typename" for i in range(32)) + " }"),
        ("17 merged fields (complexity 291)", "{ me { user { " + "email " * 17 + "} } }"),
        ("1 KB of unknown arguments", arguments(110)),
        ("2,000 tokens of unknown arguments", arguments(660)),
        ("a 32 KB string", '{ __type(name: "' + "x" * 32_000 + '") { name } }'),
        ("44 merged fields (complexity 1,936)", "{ " + "__typename " * 44 + "}"),
    ]


def _abuses() -> list[tuple[str, str]]:
    doubling = "{ ...F30 }\nfragment F0 on Query { __typename }\n" + "\n".join(
        f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 31)
    )
    chain = "{ ...F5000 }\nfragment F0 on Query { __typename }\n" + "\n".join(
        f"fragment F{i} on Query {{ ...F{i - 1} }}" for i in range(1, 5001)
    )
    return [
        ("2^30 fragment spreads", doubling),
        ("6,000 repeated fields", "{ me { user { " + "id " * 6000 + "} } }"),
        ("1,000 repeated fields", "{ me { user { " + "id " * 1000 + "} } }"),
        ("30 MB comment", "#" + "x" * 30_000_000 + "\n{ __typename }"),
        ("5,000 chained fragments", chain),
        (
            "deep introspection",
            "{ __schema { types { fields { type { " + "ofType { name " * 40 + "}" * 40 + " } } } } }",
        ),
    ]


def _refusals(schema: Any) -> None:
    limits = schema.documents.limits
    print("time to refuse, best of 3 (where it runs: worker thread above 1 KB)")
    for name, query in _abuses():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            refusal = limits.too_large(query) or limits.parse(query)
            times.append(time.perf_counter() - started)
        print(
            f"{name:38} {len(query):9} chars  {min(times) * 1e3:7.2f} ms  {getattr(refusal, 'code', refusal)}"
        )


def _worst_cases(schema: Any) -> None:
    from strawberry.schema.schema import validate_document

    from app.graphql.document_cache import HEAVY_CHARS, HEAVY_COMPLEXITY, HEAVY_TOKENS
    from app.graphql.limits import Accepted

    limits = schema.documents.limits
    print("worst accepted documents at the default limits: check (parse + measure) / validate, best of 3")
    for name, query in _worst_accepted():
        checks, validations = [], []
        for _ in range(3):
            started = time.perf_counter()
            accepted = limits.parse(query)
            checks.append(time.perf_counter() - started)
            assert isinstance(accepted, Accepted), accepted
            started = time.perf_counter()
            validate_document(schema._schema, accepted.document, schema.validation_rules)
            validations.append(time.perf_counter() - started)
        heavy = (
            len(query) > HEAVY_CHARS
            or accepted.tokens > HEAVY_TOKENS
            or accepted.complexity > HEAVY_COMPLEXITY
        )
        print(
            f"{name:38} {len(query):6} chars  {min(checks) * 1e3:6.1f} / {min(validations) * 1e3:6.1f} ms"
            f"  {'worker thread' if heavy else 'event loop'}"
        )


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({values[0]:.0f}-{values[-1]:.0f})"


async def _per_call_us(schema: Any, query: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        result = await schema.execute(query)
        assert not result.errors, result.errors
    return (time.perf_counter() - started) / n * 1e6


async def _seed(base: str, key: str) -> str:
    headers = {"Authorization": f"Key {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:

        async def gql(query: str, **variables: Any) -> dict[str, Any]:
            body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
            assert "errors" not in body, body
            data: dict[str, Any] = body["data"]
            return data

        created = await gql(
            'mutation { createApp(input: {name: "Bench", description: "limits"}) { ... on AppSuccess { app { id } } } }'
        )
        app_id: str = created["createApp"]["app"]["id"]
        for i in range(20):
            await gql(
                "mutation($a: ID!, $n: String!) { createConcept(input: {appId: $a, name: $n}) { __typename } }",
                a=app_id,
                n=f"concept-{i}",
            )
    return app_id


async def run(seconds: float, rounds: int, concurrency: int, queries: list[str]) -> None:
    # imported here, not at the top: the load processes need none of the app
    import uvicorn

    from app.embedded import EmbeddedMongo, free_port
    from app.graphql.schema import build_schema
    from app.live import execution as live_execution
    from app.main import create_app
    from app.settings import Settings
    from app.users.service import create_api_key, get_or_create_user

    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        mongodb_url = os.environ.get("MONGODB_URL")
        if not mongodb_url:
            mongo = EmbeddedMongo(tmp / "mongo")
            mongo.start()
            stack.callback(mongo.stop)
            mongodb_url = mongo.url
        settings = Settings(
            mongodb_url=mongodb_url,
            redis_url=None,
            mongodb_db=f"bench_limits_{secrets.token_hex(4)}",
            data_dir=tmp / "data",
        )
        # built first: on this box the schema built first ran a few % slower in process
        unlimited = build_schema(settings, document_limits=False)
        live_execution.install(unlimited)
        app = create_app(settings)
        view = next(route.endpoint for route in app.routes if getattr(route, "path", "") == "/graphql")
        schemas = {"limited": view.schema, "unlimited": unlimited}
        async with app.router.lifespan_context(app):
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
                await asyncio.sleep(0.02)
            try:
                user = await get_or_create_user("bench@example.com")
                _, key = await create_api_key(user.id, "bench")
                app_id = await _seed(f"http://127.0.0.1:{port}", key)
                every = {
                    "me": {"query": ME},
                    "dashboard": {"query": DASHBOARD, "variables": {"a": app_id}},
                    "components": {"query": COMPONENTS, "variables": {"a": app_id}},
                }
                bodies = {name: every[name] for name in queries}
                rates: dict[tuple[str, str], list[float]] = {}
                for name, body in bodies.items():
                    body_path = tmp / f"{name}.json"
                    body_path.write_text(json.dumps(body))
                    for schema in schemas.values():  # warm: caches filled, first parse done
                        view.schema = schema
                        await _phase(port, body_path, key, 0.5, concurrency)
                    for r in range(rounds):
                        order = list(schemas.items())  # alternating which one goes first
                        for config, schema in order if r % 2 == 0 else order[::-1]:
                            view.schema = schema
                            rate = await _phase(port, body_path, key, seconds, concurrency)
                            rates.setdefault((name, config), []).append(rate)
                            print(f"{name:13} {config:9} round {r + 1}: {rate:8.0f} req/s", flush=True)
                view.schema = schemas["limited"]
            finally:
                server.should_exit = True
                await serving
        print()
        print(f"HTTP, uvicorn on 127.0.0.1, {concurrency} keep-alive connections, {seconds:g} s phases")
        print("req/s, median of the rounds (lowest-highest)")
        print(f"{'query':13} {'limited':>22} {'unlimited':>22} {'unlimited/limited':>18}")
        for name in queries:
            limited, unlimited = sorted(rates[(name, "limited")]), sorted(rates[(name, "unlimited")])
            print(
                f"{name:13} {_spread(limited):>22} {_spread(unlimited):>22}"
                f" {statistics.median(unlimited) / statistics.median(limited):17.2f}x"
            )
        print()
        _refusals(schemas["limited"])
        print()
        _worst_cases(schemas["limited"])
        print()
        print("in process, schema.execute, microseconds per call over 10 alternating batches: best / median")
        for name, query, n in (
            ("{ __typename }", "{ __typename }", 1000),
            ("introspection", INTROSPECTION, 3),
        ):
            per_call: dict[str, list[float]] = {"limited": [], "unlimited": []}
            for batch in range(10):
                order = list(schemas.items())
                for config, schema in order if batch % 2 == 0 else order[::-1]:
                    per_call[config].append(await _per_call_us(schema, query, n))
            limited_us, unlimited_us = sorted(per_call["limited"]), sorted(per_call["unlimited"])
            print(
                f"{name:15} limited {limited_us[0]:9.1f} / {statistics.median(limited_us):9.1f}"
                f"   unlimited {unlimited_us[0]:9.1f} / {statistics.median(unlimited_us):9.1f}"
                f"   ratio of medians {statistics.median(limited_us) / statistics.median(unlimited_us):.2f}x"
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, body_path, key, seconds, concurrency = sys.argv[2:7]
        body = Path(body_path).read_bytes()
        asyncio.run(_load(int(port), body, key, float(seconds), int(concurrency)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measured phase")
    parser.add_argument("--rounds", type=int, default=5, help="measured phases per configuration and query")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    parser.add_argument(
        "--queries", default="me,dashboard,components", help="comma-separated, of those three"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    started = time.monotonic()
    asyncio.run(run(args.seconds, args.rounds, args.concurrency, args.queries.split(",")))
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
