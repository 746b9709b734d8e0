"""Liveness and readiness, and the worker heartbeat readiness looks for.

* Workers write a heartbeat to Redis every ``worker_heartbeat_interval_s``: their identity in
  the sorted set ``HEARTBEATS``, scored with Redis's own clock (``TIME``), so API and worker
  clocks need not agree. Entries older than a day are dropped by the writers.
* Ready means: MongoDB answers a ping, Redis answers a ping, and some worker's heartbeat is at
  most ``worker_heartbeat_timeout_s`` old (by Redis's clock). Each check has a time limit, so
  a server that hangs makes the API not ready, never a hanging probe.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("labelstream.health")

HEARTBEATS = "labelstream:workers:heartbeat"
_FORGET_AFTER_S = 86_400.0


async def redis_now(redis: Any) -> float:
    seconds, micros = await redis.time()
    return float(seconds) + float(micros) / 1e6


async def beat(redis: Any, identity: str) -> None:
    now = await redis_now(redis)
    await redis.zadd(HEARTBEATS, {identity: now})
    await redis.zremrangebyscore(HEARTBEATS, "-inf", now - _FORGET_AFTER_S)


async def heartbeat_forever(redis: Any, identity: str, interval_s: float) -> None:
    """The worker's heartbeat; a failed write (Redis away) is retried at the next beat."""
    while True:
        try:
            await beat(redis, identity)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not write the worker heartbeat: %s", exc)
        await asyncio.sleep(interval_s)


async def forget(redis: Any, identity: str) -> None:
    """A worker that stops cleanly takes its heartbeat with it."""
    try:
        await redis.zrem(HEARTBEATS, identity)
    except Exception:  # Redis gone: the entry ages out
        log.debug("could not remove the heartbeat of %s", identity, exc_info=True)


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)  # name -> "ok" or why not

    @property
    def ready(self) -> bool:
        return all(v == "ok" for v in self.checks.values())


async def _check(checks: dict[str, str], name: str, timeout_s: float, probe: Any) -> Any:
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancellation
            result = await probe
    except TimeoutError:
        checks[name] = f"no answer within {timeout_s:g} s"
        return None
    except Exception as exc:
        checks[name] = f"{type(exc).__name__}: {exc}"[:300]
        return None
    checks[name] = "ok"
    return result


async def readiness(mongo: Any, redis: Any, *, heartbeat_timeout_s: float, timeout_s: float) -> Readiness:
    out = Readiness()
    await _check(out.checks, "mongodb", timeout_s, mongo.admin.command("ping"))
    if redis is None:
        out.checks["redis"] = "not configured (set REDIS_URL)"
        out.checks["worker"] = "no Redis, so no workers"
        return out
    await _check(out.checks, "redis", timeout_s, redis.ping())
    if out.checks["redis"] != "ok":
        out.checks["worker"] = "unknown: Redis unreachable"
        return out

    async def recent_workers() -> int:
        now = await redis_now(redis)
        return int(await redis.zcount(HEARTBEATS, now - heartbeat_timeout_s, "+inf"))

    workers = await _check(out.checks, "worker", timeout_s, recent_workers())
    if workers == 0:
        out.checks["worker"] = f"no worker heartbeat in the last {heartbeat_timeout_s:g} s"
    return out
