"""The one place configuration comes from.

Every setting can be given as an environment variable with the ``LABELSTREAM_`` prefix
(``LABELSTREAM_PORT=9000``); ``MONGODB_URL`` and ``REDIS_URL`` are also accepted as they are,
because that is what hosting platforms set. With no URL configured, ``labelstream up`` starts
embedded servers whose data lives under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path

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
    # durable scheduling: MongoDB holds the pending batches, Redis only wakes workers. A worker
    # renews its lease on a batch while it works; a lapsed lease (dead worker) is taken again
    # by the next reconciliation, every reconcile_interval_s (app/tasks/scheduler.py)
    batch_lease_s: float = Field(default=30.0, gt=0, le=3600)
    reconcile_interval_s: float = Field(default=5.0, gt=0, le=600)
    batch_max_attempts: int = Field(default=8, ge=1, le=100)
    fetch_timeout_s: float = Field(default=20.0, gt=0, le=300)
    fetch_allow_private_networks: bool = False
    key_last_used_resolution_s: float = 60.0
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

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"
