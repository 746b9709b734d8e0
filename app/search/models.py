"""Stored embeddings: one document per (app, embedding model, annotation or input).

``_id`` is ``<app>:<model>:<kind>:<ref id>``, so re-embedding the same object overwrites its
vector. Vectors are int8 with a per-vector scale (``vector * scale`` is the L2-normalised
float vector; BSON binary, 1 byte a dimension). A removed object keeps a tombstone
(``deleted``, no vector) with a fresh ``rev``, so an index that catches up by ``rev`` also
learns of removals (``app/search/index.py``). ``rev`` is a sortable time-based string.
"""

from __future__ import annotations

import enum

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class RefKind(enum.StrEnum):
    ANNOTATION = "ANNOTATION"  # the crop of a region annotation
    INPUT = "INPUT"  # a whole image, or a text


class Embedding(BaseDocument):
    app_id: str
    model: str  # embedding model name@version: vectors of different models are never compared
    kind: RefKind
    ref_id: str
    input_id: str
    vector: bytes | None = None  # int8, ``dim`` bytes; None for a tombstone
    scale: float = 0.0
    dim: int = 0
    source: str = ""  # what was embedded (input blob + region): unchanged source, no new work
    deleted: bool = False
    rev: str = ""

    class Settings:
        name = "embeddings"
        indexes = [
            IndexModel(
                [("app_id", ASCENDING), ("model", ASCENDING), ("kind", ASCENDING), ("rev", ASCENDING)]
            ),
            IndexModel([("input_id", ASCENDING)]),
            IndexModel([("ref_id", ASCENDING)]),  # tombstones of removed annotations and inputs
        ]


class BackfillStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class Backfill(BaseDocument):
    """A backfill of an app's embeddings; progress is ``done / total`` (maintained counters)."""

    app_id: str
    status: BackfillStatus = BackfillStatus.RUNNING
    total: int = 0
    done: int = 0
    failed: int = 0
    created_by: str | None = None
    error: str | None = None

    class Settings:
        name = "search_backfills"
        indexes = [IndexModel([("app_id", ASCENDING)])]
