"""Every Beanie document of the application, and opening the database over them."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from app.annotations.models import Annotation
from app.apps.models import App, Membership
from app.concepts.models import Concept
from app.core.blob_pins import BlobPin
from app.core.db import connect, ensure_indexes
from app.datasets.models import Dataset
from app.exports.models import DatasetVersion, VersionAnnotation, VersionInput
from app.inputs.models import Input
from app.models.models import ModelEntry, ModelVersion, TaskModelVersion, Workflow
from app.predictions.models import Prediction
from app.review.models import Assignment, AssignmentCounts, TaskLock
from app.search.models import Backfill, Embedding
from app.tasks.models import LabelingTask, TaskBatch, TaskInput
from app.users.models import ApiKey, User

DOCUMENT_MODELS: list[Any] = [
    User,
    ApiKey,
    App,
    Membership,
    Concept,
    Dataset,
    Input,
    ModelEntry,
    ModelVersion,
    TaskModelVersion,
    Workflow,
    LabelingTask,
    TaskInput,
    TaskBatch,
    Prediction,
    Annotation,
    Assignment,
    AssignmentCounts,
    TaskLock,
    DatasetVersion,
    VersionInput,
    VersionAnnotation,
    BlobPin,
    Embedding,
    Backfill,
]


async def open_database(url: str, db_name: str) -> AsyncMongoClient[Any]:
    return await connect(url, db_name, DOCUMENT_MODELS)


async def create_indexes(database: Any) -> None:
    await ensure_indexes(database, DOCUMENT_MODELS)
