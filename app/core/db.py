"""Opening the database: one PyMongo async client, Beanie initialised over every document."""

from __future__ import annotations

from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from app.annotations.models import Annotation
from app.apps.models import App, Membership
from app.concepts.models import Concept
from app.datasets.models import Dataset
from app.exports.models import DatasetVersion, VersionAnnotation, VersionInput
from app.inputs.models import Input
from app.models.models import ModelEntry, Workflow
from app.predictions.models import Prediction
from app.review.models import Assignment, TaskLock
from app.tasks.models import LabelingTask, TaskInput
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
    Workflow,
    LabelingTask,
    TaskInput,
    Prediction,
    Annotation,
    Assignment,
    TaskLock,
    DatasetVersion,
    VersionInput,
    VersionAnnotation,
]


async def open_database(url: str, db_name: str) -> AsyncMongoClient[Any]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, tz_aware=True, uuidRepresentation="standard")
    await init_beanie(database=client[db_name], document_models=DOCUMENT_MODELS, skip_indexes=True)
    await ensure_indexes(client[db_name])
    return client


async def ensure_indexes(database: Any) -> None:
    """Create every model's indexes, one ``createIndexes`` call per index.

    Idempotent on every engine. (FerretDB 1.24 drops the connection when one call re-creates
    two or more existing indexes, which Beanie's own index set-up does on every restart.)
    """
    for model in DOCUMENT_MODELS:
        collection = database[model.Settings.name]
        for index in getattr(model.Settings, "indexes", []):
            await collection.create_indexes([index])


def is_duplicate_key(exc: BaseException) -> bool:
    """A unique-index violation, however the engine reports it.

    MongoDB and nx-27017 raise ``DuplicateKeyError`` (11000). FerretDB 1.24 does so for inserts
    but reports a violation by an update or replace as ``OperationFailure`` code 1 carrying
    SQLite's "UNIQUE constraint failed" (tests/compat/README.md).
    """
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(e.get("code") == 11000 for e in errors)
    return isinstance(exc, OperationFailure) and (exc.code == 11000 or "UNIQUE constraint failed" in str(exc))
