"""Dataset versions: immutable snapshots, one document per input and per annotation.

A version's inputs and annotations are copies (not references), written once while the version
is BUILDING and never updated, so later edits, reviews, removals or renames do not change it;
the image bytes it names are pinned (app/core/blob_pins.py, owner ``pin_owner(id)``) until the
version is deleted, so deleting an input does not take its image out of the version.
Ids encode the order: ``<version>:<seq:08d>`` for an input and ``<version>:<seq:08d>:<n:04d>``
for its annotations, so an export pages through a version by ``_id`` ranges with no extra index.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class VersionStatus(enum.StrEnum):
    BUILDING = "BUILDING"
    READY = "READY"


class VersionConcept(BaseModel):
    id: str
    name: str


class DatasetVersion(BaseDocument):
    app_id: str
    dataset_id: str
    description: str = ""
    status: VersionStatus = VersionStatus.BUILDING
    # the annotation filter the snapshot was taken with, and ``prefer_task_ids``: when several
    # tasks labeled one input, only the first of these that labeled it gives its annotations
    filter: dict[str, Any] = {}
    concepts: list[VersionConcept] = []  # written whole once; export category order
    inputs_count: int = 0
    annotations_count: int = 0
    # matching annotations the snapshot did not take, by reason (DUPLICATE, NOT_PREFERRED_TASK)
    left_out: dict[str, int] = {}
    created_by: str

    class Settings:
        name = "dataset_versions"
        indexes = [IndexModel([("dataset_id", ASCENDING)]), IndexModel([("app_id", ASCENDING)])]


class VersionInput(BaseDocument):
    version_id: str
    seq: int
    input_id: str
    kind: str
    blob_key: str | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    url: str | None = None
    text: str | None = None
    metadata: dict[str, Any] = {}

    class Settings:
        name = "dataset_version_inputs"
        indexes = [IndexModel([("version_id", ASCENDING)])]


class VersionAnnotation(BaseDocument):
    version_id: str
    input_id: str
    annotation_id: str
    concept_id: str
    concept_name: str
    box: list[float] | None = None
    polygon: list[float] | None = None
    confidence: float = 1.0
    text: str | None = None  # a text region's recognised text
    status: str
    labeled_by_user_id: str | None = None
    labeled_by_model_id: str | None = None
    reviewed_by: str | None = None
    task_id: str | None = None

    class Settings:
        name = "dataset_version_annotations"
        indexes = [IndexModel([("version_id", ASCENDING)])]


def pin_owner(version_id: str) -> str:
    return f"dataset-version/{version_id}"


def input_doc_id(version_id: str, seq: int) -> str:
    return f"{version_id}:{seq:08d}"
