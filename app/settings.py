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
    max_text_chars: int = Field(default=100_000, ge=1)
    max_metadata_bytes: int = Field(default=64 * 1024, ge=1)
    max_query_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=1)
    graphiql: bool = True
    # labeling engine
    task_batch_size: int = Field(default=32, ge=1, le=1024)
    worker_max_jobs: int = Field(default=2, ge=1, le=64)
    worker_poll_delay_s: float = Field(default=0.01, gt=0, le=5)
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

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"
