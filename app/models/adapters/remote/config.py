"""Config keys every remote adapter shares: where the server is and how hard to try."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..config import AdapterConfig

MAX_URL = 2_000
MAX_BATCH = 256
MAX_CONCURRENCY = 16
MAX_RETRIES = 5


class RemoteConfig(AdapterConfig):
    url: str = Field(
        min_length=1, max_length=MAX_URL, description="the server's base URL, http(s), no credentials"
    )
    timeout_s: float = Field(30.0, gt=0.0, le=600.0, description="per request")
    retries: int = Field(
        2, ge=0, le=MAX_RETRIES, description="extra tries of a request the server did not answer"
    )
    backoff_s: float = Field(0.5, ge=0.0, le=30.0, description="first wait before a retry; doubles")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="inputs per request")
    max_concurrency: int = Field(
        2, ge=1, le=MAX_CONCURRENCY, description="requests in flight to this model per worker process"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not hold credentials")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")
