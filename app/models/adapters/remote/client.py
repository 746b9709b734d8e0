"""One pooled HTTP client per remote model: the address rule, retries with exponential
back-off, and a concurrency limit shared by every thread of the process.

Invariants:
* No request leaves before the URL's host passed the address rule (the one image URLs obey:
  loopback, private and link-local addresses only when the settings allow them). Redirects are
  never followed, so the checked host is the one contacted; proxies from the environment are
  ignored for the same reason.
* At most ``max_concurrency`` requests to one (server, model) are in flight per process, however
  many jobs and threads call it (one semaphore per key, kept for the process's life).
* A request is retried only when the server did not answer it (connection refused or reset,
  timeout, 429, 502, 503, 504); an answer that is an error fails at once.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from .config import RemoteConfig
from .errors import ERROR, FORBIDDEN, UNAVAILABLE, ServerFailure

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 30.0
MAX_RESPONSE_BYTES = 256 * 1024 * 1024

_semaphores: dict[str, threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def semaphore(key: str, limit: int) -> threading.BoundedSemaphore:
    """The process-wide limit of requests in flight for ``key`` (first caller sets it)."""
    with _semaphores_lock:
        sem = _semaphores.get(key)
        if sem is None:
            sem = _semaphores[key] = threading.BoundedSemaphore(limit)
        return sem


def check_address(url: str, allow_private: bool) -> None:
    """Raise ``ServerFailure(FORBIDDEN)`` unless every address of the URL's host is public (or
    ``allow_private``). Resolving happens here, before any connection."""
    host = urlsplit(url).hostname or ""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ServerFailure(UNAVAILABLE, f"cannot resolve the inference server's host {host}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise ServerFailure(
                FORBIDDEN,
                f"the inference server's host {host} is a non-public address; allow it with "
                "LABELSTREAM_INFERENCE_ALLOW_PRIVATE_NETWORKS=true",
            )


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ServerFailure(ERROR, f"the inference server's answer is not JSON: {exc}") from exc


class ServerClient:
    """Sends requests to one server for one model, within its limits; thread-safe."""

    def __init__(self, options: RemoteConfig, limit_key: str) -> None:
        self.options = options
        self.base = options.url
        timeout = httpx.Timeout(options.timeout_s, connect=min(5.0, options.timeout_s))
        limits = httpx.Limits(
            max_connections=options.max_concurrency, max_keepalive_connections=options.max_concurrency
        )
        self._http = httpx.Client(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False)
        self._slots = semaphore(limit_key, options.max_concurrency)
        self.allow_private = False
        self._checked_at: float | None = None

    def close(self) -> None:
        self._http.close()

    def recheck(self) -> None:
        """Check the address again before the next request (the rule changed)."""
        self._checked_at = None

    def _check(self) -> None:
        # Literal addresses cost nothing; host names are re-resolved at most every 10 s.
        now = time.monotonic()
        if self._checked_at is None or now - self._checked_at > 10.0:
            check_address(self.base, self.allow_private)
            self._checked_at = now

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> Reply:
        """The server's answer (any status the caller handles), after the retries; raises
        ``ServerFailure`` when it never answered, or answered 429/5xx-unavailable every time."""
        self._check()
        tries = 1 + (self.options.retries if retries is None else retries)
        wait = self.options.backoff_s
        url = self.base + path
        last = ""
        for attempt in range(tries):
            if attempt:
                time.sleep(min(wait, MAX_BACKOFF_S))
                wait *= 2
            try:
                with self._slots:
                    response = self._http.request(method, url, content=content, headers=headers)
            except httpx.TimeoutException as exc:
                last = f"no answer within {self.options.timeout_s:g} s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"cannot reach {self.base}: {type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"{method} {path} answered HTTP {response.status_code}"
                continue
            if len(response.content) > MAX_RESPONSE_BYTES:
                raise ServerFailure(ERROR, f"the answer to {method} {path} is too large")
            return Reply(response.status_code, response.headers, response.content)
        raise ServerFailure(UNAVAILABLE, f"inference server unavailable after {tries} tries: {last}")

    def ok(self, reply: Reply, what: str) -> Reply:
        """``reply`` if 2xx, else ``ServerFailure(ERROR)`` quoting the start of its body."""
        if 200 <= reply.status < 300:
            return reply
        text = reply.body[:300].decode("utf-8", "replace")
        raise ServerFailure(ERROR, f"{what}: HTTP {reply.status}: {text}")
