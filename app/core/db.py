"""Opening the database: one PyMongo async client, Beanie initialised over every document."""

from __future__ import annotations

from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

from app.annotations.models import Annotation
from app.apps.models import App, Membership
from app.concepts.models import Concept
from app.datasets.models import Dataset
from app.inputs.models import Input
from app.models.models import ModelEntry, Workflow
from app.tasks.models import LabelingTask
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
    Annotation,
]


async def open_database(url: str, db_name: str) -> AsyncMongoClient[Any]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        url, tz_aware=True, uuidRepresentation="standard"
    )
    await init_beanie(database=client[db_name], document_models=DOCUMENT_MODELS)
    return client
