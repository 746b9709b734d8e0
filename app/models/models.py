"""Model registry entries and workflows (the inference adapters live in ``adapters/``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument
from app.models.adapters.base import ModelKind

__all__ = ["ModelConceptEntry", "ModelEntry", "ModelKind", "Workflow"]


class ModelConceptEntry(BaseModel):
    """A concept the model outputs, in the model's own vocabulary (e.g. an ImageNet synset)."""

    id: str
    name: str


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

    class Settings:
        name = "models"
        indexes = [IndexModel([("app_id", ASCENDING)])]


class Workflow(BaseDocument):
    """Models run in order over the same input; their outputs are merged."""

    app_id: str
    name: str
    model_ids: list[str]

    class Settings:
        name = "workflows"
        indexes = [IndexModel([("app_id", ASCENDING)])]
