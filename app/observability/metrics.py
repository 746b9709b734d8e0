"""The Prometheus metric families, in the process's default registry.

The API serves them at ``/metrics``; a worker serves its own on ``worker_metrics_port``
(``serve_worker_metrics``). Every family is defined here, so both processes expose the same
names (a family a process never moves stays at zero or has no samples):

    labelstream_graphql_requests_total{operation,type}     GraphQL operations executed
    labelstream_graphql_request_seconds{operation,type}    their latency (parse to result)
    labelstream_graphql_errors_total{code}                 errors in responses, by extensions.code
    labelstream_active_subscriptions                       open subscriptions in this process
    labelstream_jobs_queued                                task batches waiting (API, from MongoDB)
    labelstream_jobs_running                               task batches leased to workers (API, idem)
    labelstream_worker_jobs_running                        jobs running in this worker process
    labelstream_jobs_failed_total                          jobs that raised in a worker (then retried)
    labelstream_inference_seconds{model,adapter}           one model call over a chunk of inputs
    labelstream_inputs_labeled_total{outcome}              inputs done or failed (rate(): per second)

Label values stay bounded: an operation name is kept only if it is a GraphQL name of at most 64
characters and one of the first ``MAX_OPERATION_NAMES`` seen; others count as ``other``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

MAX_OPERATION_NAMES = 500
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_names: set[str] = set()
_names_lock = threading.Lock()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

graphql_requests = Counter(
    "labelstream_graphql_requests", "GraphQL operations executed.", ["operation", "type"]
)
graphql_latency = Histogram(
    "labelstream_graphql_request_seconds",
    "GraphQL operation latency, from parsing to the result (a subscription: until its first result).",
    ["operation", "type"],
    buckets=LATENCY_BUCKETS,
)
graphql_errors = Counter(
    "labelstream_graphql_errors", "Errors in GraphQL responses, by extensions.code.", ["code"]
)
active_subscriptions = Gauge("labelstream_active_subscriptions", "Open GraphQL subscriptions.")
jobs_queued = Gauge(
    "labelstream_jobs_queued", "Task batches waiting for a worker (read from MongoDB by the API at scrape)."
)
jobs_running = Gauge(
    "labelstream_jobs_running", "Task batches a worker holds (read from MongoDB by the API at scrape)."
)
worker_jobs_running = Gauge("labelstream_worker_jobs_running", "Jobs running in this worker process.")
jobs_failed = Counter("labelstream_jobs_failed", "Jobs that raised in this worker (arq retries them).")
inference_latency = Histogram(
    "labelstream_inference_seconds",
    "One model call over a chunk of inputs, by model id and adapter.",
    ["model", "adapter"],
    buckets=LATENCY_BUCKETS,
)
inputs_labeled = Counter(
    "labelstream_inputs_labeled",
    "Inputs a labeling run finished, by outcome (done or failed); rate() gives inputs per second.",
    ["outcome"],
)


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if not _NAME.fullmatch(name):
        return "other"
    if name in _names:
        return name
    with _names_lock:
        if len(_names) >= MAX_OPERATION_NAMES:
            return "other"
        _names.add(name)
    return name


def serve_worker_metrics(port: int, host: str = "127.0.0.1") -> Any:
    """A small HTTP server (a daemon thread) answering ``/metrics`` for a worker process."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return server
