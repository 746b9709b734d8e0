"""Adapters whose model runs on an inference server:

* ``kserve-v2`` (``kserve.py``): the Open Inference Protocol over HTTP;
* ``ls-ml-backend`` (``label_studio.py``): Label Studio ML backends.

Both send a batch as requests of ``batch_size`` inputs, at most ``max_concurrency`` in flight
per (server, model) in the process, with timeouts and retries (``client.py``). A server that
cannot be reached, or answers with an error, raises ``ServerFailure``: the batch's inputs turn
FAILED with its code and the task goes on (``errors.py``).
"""

from __future__ import annotations

from .base import RemoteAdapter
from .errors import CODES, PartialFailure, ServerFailure
from .kserve import KServeV2Adapter
from .label_studio import LabelStudioMLAdapter

__all__ = [
    "CODES",
    "KServeV2Adapter",
    "LabelStudioMLAdapter",
    "PartialFailure",
    "RemoteAdapter",
    "ServerFailure",
]
