"""The one place configuration comes from.

Every setting can be given as an environment variable with the ``LABELSTREAM_`` prefix
(``LABELSTREAM_PORT=9000``); ``MONGODB_URL`` and ``REDIS_URL`` are also accepted as they are,
because that is what hosting platforms set. With no URL configured, ``labelstream up`` starts
embedded servers whose data lives under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELSTREAM_", extra="ignore")

    mongodb_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LABELSTREAM_MONGODB_URL", "MONGODB_URL")
    )
    mongodb_db: str = "labelstream"
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LABELSTREAM_REDIS_URL", "REDIS_URL")
    )
    data_dir: Path = Path(".labelstream")
    blob_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    # API limits: each is enforced with a typed error, never silently.
    max_page_size: int = Field(default=100, ge=1)
    default_page_size: int = Field(default=20, ge=1)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # an uploaded ONNX model file (multipart or URL); a multipart one is also bounded by
    # max_request_bytes
    max_model_bytes: int = Field(default=60 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=80_000_000, ge=1)
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_bulk_items: int = Field(default=128, ge=1)
    # importPredictions: the file (a YOLO zip: what it unpacks to) and the predictions in it
    max_import_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_import_predictions: int = Field(default=500_000, ge=1)
    max_text_chars: int = Field(default=100_000, ge=1)
    max_metadata_bytes: int = Field(default=64 * 1024, ge=1)
    max_query_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=1)
    # GraphQL document limits, checked before validation with typed errors (app/graphql/limits.py);
    # max_query_depth above is checked there too
    max_query_bytes: int = Field(default=32 * 1024, ge=1)
    max_query_tokens: int = Field(default=2_000, ge=1)
    max_fragment_spreads: int = Field(default=500, ge=0)
    max_query_complexity: int = Field(default=2_000, ge=1)  # expanded fields; k merged count k^2
    # images within a memory budget (issue 11): the API reads headers only and refuses from
    # them; workers decode one image at a time, shrunk at once to what the models need
    max_image_side: int = Field(default=30_000, ge=1)
    max_image_pixels_per_byte: int = Field(default=4096, ge=1)  # above 16 MP: bomb check
    image_decode_max_side: int = Field(default=2048, ge=64)  # >= every built-in model's input
    image_batch_pixel_budget: int = Field(default=64_000_000, ge=1)  # decoded pixels per batch
    graphiql: bool = True
    # labeling engine
    task_batch_size: int = Field(default=32, ge=1, le=1024)
    worker_max_jobs: int = Field(default=2, ge=1, le=64)
    worker_poll_delay_s: float = Field(default=0.01, gt=0, le=5)
    # an idle worker blocks on the queue's wake channel (app/core/waking.py) instead of
    # polling; it reads the queue anyway every worker_idle_wait_s (a lost notification)
    worker_idle_wait_s: float = Field(default=1.0, gt=0, le=60)
    # a worker unloads a model nobody used for this long (0: never); the next batch reloads it
    model_idle_unload_s: float = Field(default=300.0, ge=0, le=86_400)
    # glibc malloc arenas of a worker process (0: glibc's default, 8 per core); app/core/heap.py
    worker_malloc_arenas: int = Field(default=2, ge=0, le=64)
    # durable scheduling: MongoDB holds the pending batches, Redis only wakes workers. A worker
    # renews its lease on a batch while it works; a lapsed lease (dead worker) is taken again
    # by the next reconciliation, every reconcile_interval_s (app/tasks/scheduler.py)
    batch_lease_s: float = Field(default=30.0, gt=0, le=3600)
    reconcile_interval_s: float = Field(default=5.0, gt=0, le=600)
    # every worker decides for blobs a dead release left retired, and deletes temporary files
    # of dead writes, at start and then this often (app/blob_refs.py)
    blob_recover_interval_s: float = Field(default=300.0, gt=0, le=86_400)
    batch_max_attempts: int = Field(default=8, ge=1, le=100)
    # background seeding and per-batch bounds (issue 11): a run over more inputs than
    # task_seed_sync_limit is seeded by a worker, chunk by chunk (app/tasks/seeding.py);
    # a batch's inference is terminated after batch_inference_limit_s (INFERENCE_TIME_LIMIT);
    # onnxruntime's CPU memory arena trades peak memory for speed (bench/RESULTS.md)
    task_seed_sync_limit: int = Field(default=1_000, ge=0, le=100_000)
    task_seed_chunk: int = Field(default=1_000, ge=1, le=10_000)
    batch_inference_limit_s: float = Field(default=120.0, gt=0, le=3600)
    onnx_cpu_mem_arena: bool = True
    # with the arena on: give its unused chunks back after every run. Measured worse peaks
    # than a growing arena on this box (bench/RESULTS.md), so off by default
    onnx_arena_shrink: bool = False
    # the most images one onnxruntime run of the built-in classifier takes: a batch runs in
    # chunks of this size (0: all at once). Peak memory follows it (bench/worker_memory.py)
    onnx_run_chunk: int = Field(default=4, ge=0, le=1024)
    # progress while a batch runs: its results are written and announced in chunks sized to
    # take about progress_interval_s each, of at most progress_every_inputs inputs. Every
    # chunk pays ~15 MongoDB commands whatever its size: fast models want large chunks
    # (null model, batches of 250: 437 inputs/s at 50, 556 at 250; bench/progress_chunks.py)
    progress_every_inputs: int = Field(default=250, ge=1, le=1024)
    progress_interval_s: float = Field(default=0.5, gt=0, le=60)
    fetch_timeout_s: float = Field(default=20.0, gt=0, le=300)
    fetch_allow_private_networks: bool = False
    # models on inference servers (kserve-v2, ls-ml-backend): the same address rule as URL
    # inputs, lifted separately (model servers often live on an intranet)
    inference_allow_private_networks: bool = False
    key_last_used_resolution_s: float = 60.0
    # verified API keys and memberships kept in each API process; dropped at once on access
    # events (revocation, membership change) over Redis, bypassed while Redis is unreachable
    auth_cache_ttl_s: float = Field(default=30.0, ge=0, le=600)  # 0 turns the cache off
    auth_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
    # Smart Object Search: embed regions and inputs as annotations change (a worker job per
    # change); off, vectors come only from the backfill and from searches that need them
    search_embed_on_change: bool = True
    # live updates (GraphQL subscriptions over WebSocket)
    max_subscriptions_per_connection: int = Field(default=50, ge=1, le=1000)
    ws_keep_alive_interval_s: float = Field(default=15.0, ge=0)  # server pings; 0 turns them off
    ws_connection_init_timeout_s: float = Field(default=10.0, gt=0)
    # permessage-deflate: live messages are a few hundred bytes, so compressing each one per
    # connection costs more CPU than it saves bandwidth (bench/RESULTS.md); on for slow links
    ws_per_message_deflate: bool = False
    live_progress_interval_s: float = Field(default=0.25, gt=0)  # at most 4 progress updates/s per task
    live_queue_size: int = Field(default=100, ge=1)  # per subscriber; overflow -> fresh snapshot
    live_task_list_limit: int = Field(default=200, ge=1)  # tasks in a labelingTasks snapshot
    # open subscriptions re-check their key and membership this often even without an access
    # event (a lost event never leaves access open for longer)
    live_access_recheck_s: float = Field(default=10.0, gt=0)
    # the API process moves what start-up allocated (schema, modules, clients: most of its
    # objects) out of the garbage collector's sight once serving (gc.freeze), so a collection
    # during a live fan-out only walks what was allocated since (bench/RESULTS.md)
    gc_freeze: bool = True
    # and, with gc_freeze, again once live subscriptions have settled (no subscribe or
    # unsubscribe for this long), so a full collection never walks every subscriber's
    # connection while events fan out (app/live/collector.py)
    live_gc_settle_s: float = Field(default=2.0, gt=0, le=3600)

    # operations (app/observability): logs as JSON lines or text ("auto": text on a terminal,
    # JSON otherwise); a worker's own /metrics endpoint (0: off; give each worker process its
    # own port); the heartbeat workers write to Redis and /readyz looks for
    log_format: Literal["auto", "json", "text"] = "auto"
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    worker_heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    worker_heartbeat_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    readiness_timeout_s: float = Field(default=2.0, gt=0, le=60)

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"
