from __future__ import annotations

import enum
from typing import Any

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class InputKind(enum.StrEnum):
    IMAGE = "IMAGE"
    TEXT = "TEXT"


class InputStatus(enum.StrEnum):
    READY = "READY"  # bytes stored (or text), dimensions known
    PENDING_FETCH = "PENDING_FETCH"  # an image URL, fetched by a worker later
    FETCH_FAILED = "FETCH_FAILED"


class Input(BaseDocument):
    app_id: str
    kind: InputKind
    status: InputStatus = InputStatus.READY
    dataset_ids: list[str] = []
    # image inputs
    blob_key: str | None = None  # content address in the blob store
    content_type: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    url: str | None = None
    # text inputs
    text: str | None = None
    metadata: dict[str, Any] = {}
    created_by: str | None = None

    class Settings:
        name = "inputs"
        indexes = [
            IndexModel([("app_id", ASCENDING)]),
            IndexModel([("dataset_ids", ASCENDING)]),
            IndexModel([("blob_key", ASCENDING)]),
        ]
