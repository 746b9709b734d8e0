"""Why a call to an inference server failed; the codes a batch's inputs fail with.

    ServerFailure (Exception)              the batch's inputs turn FAILED with ``code``;
    │                                      ``retryFailedInputs`` runs them again
    ├── code INFERENCE_SERVER_UNAVAILABLE  no answer: refused connection, timeout, 502/503/504,
    │                                      429, or a model that says it is not ready
    ├── code INFERENCE_SERVER_ERROR        an answer we cannot use: another HTTP error status,
    │                                      a body that is not the protocol, a tensor of the
    │                                      wrong name or shape
    ├── code INFERENCE_SERVER_FORBIDDEN    the URL's host is a loopback, private or link-local
    │                                      address and the settings do not allow those
    └── PartialFailure                     some requests of the batch failed, others answered:
                                           ``results`` keeps the answered inputs' predictions,
                                           ``failures`` says why each other input failed

It is not a ``ConnectionError``: the task engine re-raises those for the whole job to be
retried, whereas a server that is down for minutes must not hold a task open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

UNAVAILABLE = "INFERENCE_SERVER_UNAVAILABLE"
ERROR = "INFERENCE_SERVER_ERROR"
FORBIDDEN = "INFERENCE_SERVER_FORBIDDEN"
CODES = (UNAVAILABLE, ERROR, FORBIDDEN)


class ServerFailure(Exception):
    """The server could not predict this batch; ``code`` is one of ``CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class PartialFailure(ServerFailure):
    """Part of a batch failed. ``results[i]`` is input ``i``'s predictions, or None when the
    request carrying it failed, with the reason in ``failures[i]`` (code and message of the
    first failure are the exception's own)."""

    def __init__(self, results: Sequence[Any | None], failures: Sequence[ServerFailure | None]) -> None:
        first = next(f for f in failures if f is not None)
        super().__init__(first.code, first.message)
        self.results, self.failures = list(results), list(failures)
