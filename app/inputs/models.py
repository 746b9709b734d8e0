from __future__ import annotations

import enum
from typing import Any

from pydantic import model_validator
from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument
from app.core.pagination import PAGE_KEY


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
    # A copy of ``_id`` that pages and the task seeding cursor range over (see
    # app/core/pagination.py, PAGE_KEY): always equal to ``_id``.
    page_key: str = ""

    @model_validator(mode="after")
    def _default_page_key(self) -> Input:
        if not self.page_key:
            self.page_key = self.id
        return self

    class Settings:
        name = "inputs"
        indexes = [
            IndexModel([("app_id", ASCENDING)]),
            IndexModel([("app_id", ASCENDING), (PAGE_KEY, ASCENDING)]),
            IndexModel([("dataset_ids", ASCENDING)]),
            IndexModel([("blob_key", ASCENDING)]),
        ]
