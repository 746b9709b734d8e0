"""What the lifespan owns: settings, the database client, Redis pool, blob store, auth, live hub.

Created once per process by ``app.bootstrap.open_runtime`` (API lifespan, worker startup); nothing is
opened at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.access import Authenticator
from app.core.blobs import BlobStore
from app.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    mongo: Any  # pymongo.AsyncMongoClient
    redis: Any  # arq.ArqRedis or None before the queue exists
    blobs: BlobStore
    auth: Authenticator
    live: Any = None  # app.live.hub.Hub in an API process with Redis; None otherwise
