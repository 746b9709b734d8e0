"""Model registry entries and workflows (the inference adapters live in ``adapters/``)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, field_validator
from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument
from app.models.adapters.base import ModelKind

__all__ = ["ModelConceptEntry", "ModelEntry", "ModelKind", "ModelVersion", "TaskModelVersion", "Workflow"]


class ModelConceptEntry(BaseModel):
    """A concept the model outputs, in the model's own vocabulary (e.g. an ImageNet synset)."""

    id: str
    name: str


class JsonConfig(dict[str, Any]):
    """A model's config: stored as a JSON string (see ``ModelEntry``), read back as a dict."""


class ModelEntry(BaseDocument):
    """A registered model. ``concepts`` is written whole on insert/replace, never ``$push``-ed.

    ``zero_shot`` models score whatever concept names a task gives them (e.g. MiniLM topics),
    so they produce every concept.
    """

    app_id: str
    name: str
    kind: ModelKind
    adapter: str
    config: dict[str, Any] = {}
    concepts: list[ModelConceptEntry] = []
    zero_shot: bool = False
    builtin: bool = False
    # Uploaded models (adapter ``onnx``) have versions: ``config`` and ``concepts`` are those of
    # the active one, so a worker reads a model the same way whatever its origin.
    active_version_id: str | None = None
    version_count: int = 0

    # The config is user JSON (a null model's polygons are lists of [row, col] pairs): stored as
    # one JSON string, because not every MongoDB-wire engine keeps nested arrays (FerretDB 1.24
    # refuses them) and nobody queries inside a config. Documents written before hold a dict.
    @field_validator("config", mode="before")
    @classmethod
    def _load_config(cls, value: Any) -> Any:
        return decode_config(value)

    @field_validator("config", mode="after")
    @classmethod
    def _wrap_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return JsonConfig(value)

    class Settings:
        name = "models"
        bson_encoders = {JsonConfig: lambda value: orjson.dumps(dict(value)).decode()}
        indexes = [IndexModel([("app_id", ASCENDING)])]


class ModelVersion(BaseDocument):
    """One uploaded file of a model, immutable once stored. ``number`` counts from 1 per model
    (unique with ``model_id``); the file is the blob ``blob_key`` (its SHA-256), pinned by
    ``pin_owner`` while the version exists. ``config`` is the checked, resolved adapter config."""

    app_id: str
    model_id: str
    number: int
    blob_key: str
    size_bytes: int
    layout: str
    config: dict[str, Any] = {}
    concepts: list[ModelConceptEntry] = []
    source_url: str | None = None
    created_by: str | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _load_config(cls, value: Any) -> Any:
        return decode_config(value)

    @field_validator("config", mode="after")
    @classmethod
    def _wrap_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return JsonConfig(value)

    @property
    def pin_owner(self) -> str:
        return self.pin_owner_of(self.id)

    @staticmethod
    def pin_owner_of(version_id: str) -> str:
        return f"model-version:{version_id}"

    class Settings:
        name = "model_versions"
        bson_encoders = {JsonConfig: lambda value: orjson.dumps(dict(value)).decode()}
        indexes = [
            IndexModel([("model_id", ASCENDING), ("number", ASCENDING)], unique=True),
            IndexModel([("app_id", ASCENDING)]),
            IndexModel([("blob_key", ASCENDING)]),  # app.blob_refs.named, before a blob goes
        ]


class TaskModelVersion(BaseDocument):
    """The version of a model a task's run used: ``_id = <task>:<run>:<model>``, written once by
    the first batch of the run (a unique id, so every worker of the run agrees on it)."""

    app_id: str
    task_id: str
    run: int
    model_id: str
    version_id: str
    version_number: int

    class Settings:
        name = "task_model_versions"
        indexes = [IndexModel([("task_id", ASCENDING), ("run", ASCENDING)])]


def decode_config(value: Any) -> dict[str, Any]:
    """A stored config (a JSON string, or a dict in documents written before) as a dict."""
    if isinstance(value, str | bytes):
        decoded: dict[str, Any] = orjson.loads(value or b"{}")
        return decoded
    return dict(value or {})


class Workflow(BaseDocument):
    """Models run in order over the same input; their outputs are merged."""

    app_id: str
    name: str
    model_ids: list[str]

    class Settings:
        name = "workflows"
        indexes = [IndexModel([("app_id", ASCENDING)])]
