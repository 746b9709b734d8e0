"""Opening a process's runtime (API or worker): database, job queue, blob store, auth, and the
listeners that keep derived state in step with the annotations.

Both ``app.main`` (the API) and ``app.worker`` call ``open_runtime``; the worker never imports
the API (import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from app.access import AccessCache, Authenticator
from app.annotations import changes, store
from app.core.blobs import LocalBlobStore
from app.core.pagination import backfill_page_keys
from app.core.queue import create_pool
from app.documents import open_database
from app.inputs.models import Input
from app.review import follow
from app.runtime import Runtime
from app.search import follow as search_follow
from app.settings import Settings
from app.tasks import progress


def install_listeners() -> None:
    """Who derives what from annotation change records, in this order: the task's counters
    first (events read them), then review and labeling queues, audit samples and events."""
    changes.subscribe("task counters", progress.on_changes)
    changes.subscribe("review queues", follow.on_changes)
    changes.subscribe("search embeddings", search_follow.on_changes)


async def open_runtime(settings: Settings) -> Runtime:
    if not settings.mongodb_url:
        raise RuntimeError(
            "no MongoDB configured: set MONGODB_URL, or use `labelstream up` (embedded servers)"
        )
    install_listeners()
    mongo = await open_database(settings.mongodb_url, settings.mongodb_db)
    await store.backfill_page_keys()
    await backfill_page_keys(Input.get_pymongo_collection())
    redis = await create_pool(settings.redis_url) if settings.redis_url else None
    runtime = Runtime(
        settings=settings,
        mongo=mongo,
        redis=redis,
        blobs=LocalBlobStore(settings.resolved_blob_dir),
        auth=Authenticator(settings.key_last_used_resolution_s),
    )
    # Cached answers are only trusted while this process hears access events (the live hub is
    # subscribed to Redis); see app.access.AccessCache.
    runtime.auth.cache = AccessCache(
        settings.auth_cache_ttl_s,
        settings.auth_cache_size,
        trusted=lambda: runtime.live is not None and runtime.live.connected.is_set(),
    )
    return runtime


async def close_runtime(runtime: Runtime) -> None:
    if runtime.redis is not None:
        await runtime.redis.aclose()
    await runtime.mongo.close()
