"""Annotations: one document per label (MONGODB.md, contract 2).

Geometry is stored flat so that every engine keeps it exactly: a box as four numbers and a
polygon as ``[row0, col0, row1, col1, ...]``, all normalised to 0..1.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import model_validator
from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument
from app.core.pagination import PAGE_KEY


class AnnotationStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    PENDING = "PENDING"
    AWAITING_REVIEW = "AWAITING_REVIEW"
    AWAITING_CONSENSUS_REVIEW = "AWAITING_CONSENSUS_REVIEW"
    REVIEW_DENIED = "REVIEW_DENIED"


class Annotation(BaseDocument):
    app_id: str
    input_id: str
    concept_id: str
    dataset_ids: list[str] = []  # copied from the input, kept in step with dataset membership
    box: list[float] | None = None  # [top, left, bottom, right]
    polygon: list[float] | None = None  # [row0, col0, row1, col1, ...]
    confidence: float = 1.0
    # The recognised text of a text region (a text-region model's OCR, or a person's edit);
    # None for every other annotation.
    text: str | None = None
    status: AnnotationStatus = AnnotationStatus.SUCCESS
    labeled_by_user_id: str | None = None
    labeled_by_model_id: str | None = None
    # The version of an uploaded model that made (or last re-routed) it; None otherwise.
    model_version_id: str | None = None
    task_id: str | None = None
    reviewed_by: str | None = None
    edited_by: str | None = None  # the person who last changed its concept or region
    # Set by review actions (app/review/actions.py): when, and which action, last decided it.
    reviewed_at: datetime | None = None
    review_action: str | None = None
    # Consensus: the reviewers who approved so far (scalars, grown with $addToSet).
    approved_by: list[str] = []
    # Sent to review by audit sampling although the model was confident enough.
    audit: bool = False
    # Unique. A model's annotation is keyed by task, input, concept and region, so a job that
    # runs twice upserts the same one; a person's annotation is keyed by its own id.
    key: str = ""
    # A copy of ``_id`` that pages range over (``paginate(..., key=PAGE_KEY)``): nx-27017 answers
    # a range on ``_id`` by decoding every document in Python, but a range on a plain field
    # through its SQL path and the (app_id, page_key) index; MongoDB and FerretDB use that
    # index too. Always equal to ``_id`` (written on insert; older documents get it from
    # ``store.backfill_page_keys`` at start-up).
    page_key: str = ""

    @model_validator(mode="after")
    def _default_key(self) -> Annotation:
        if not self.key:
            self.key = self.id
        if not self.page_key:
            self.page_key = self.id
        return self

    class Settings:
        name = "annotations"
        indexes = [
            IndexModel([("key", ASCENDING)], unique=True),
            # app_id alone as well: nx-27017 keeps an equality on an unindexed (by name) field
            # out of its indexes, as it might be an array
            IndexModel([("app_id", ASCENDING)]),
            IndexModel([("app_id", ASCENDING), (PAGE_KEY, ASCENDING)]),
            IndexModel([("input_id", ASCENDING)]),
            IndexModel([("task_id", ASCENDING), ("status", ASCENDING)]),
            IndexModel([("dataset_ids", ASCENDING)]),
        ]
