"""Model registry entries and workflows (the inference adapters live in ``adapters/``)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, field_validator
from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument
from app.models.adapters.base import ModelKind

__all__ = ["ModelConceptEntry", "ModelEntry", "ModelKind", "Workflow"]


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
