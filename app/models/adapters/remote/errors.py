"""Why a call to an inference server failed; the codes a batch's inputs fail with.

    ServerFailure (Exception)              the batch's inputs turn FAILED with ``code``;
    │                                      ``retryFailedInputs`` runs them again
    ├── code INFERENCE_SERVER_UNAVAILABLE  no answer: refused connection, timeout, 502/503/504,
    │                                      429, or a model that says it is not ready
    ├── code INFERENCE_SERVER_ERROR        an answer we cannot use: another HTTP error status,
    │                                      a body that is not the protocol, a tensor of the
    │                                      wrong name or shape
    └── code INFERENCE_SERVER_FORBIDDEN    the URL's host is a loopback, private or link-local
                                           address and the settings do not allow those

It is not a ``ConnectionError``: the task engine re-raises those for the whole job to be
retried, whereas a server that is down for minutes must not hold a task open.
"""

from __future__ import annotations

UNAVAILABLE = "INFERENCE_SERVER_UNAVAILABLE"
ERROR = "INFERENCE_SERVER_ERROR"
FORBIDDEN = "INFERENCE_SERVER_FORBIDDEN"
CODES = (UNAVAILABLE, ERROR, FORBIDDEN)


class ServerFailure(Exception):
    """The server could not predict this batch; ``code`` is one of ``CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
