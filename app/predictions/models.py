"""Raw model outputs, kept so thresholds can be re-applied without running the model again.

One document per prediction (MONGODB.md, contract 2). ``_id`` is deterministic,
``<task>:<input>:<model>:<model concept>:<region key>``, so a job that runs twice writes the
same documents again instead of adding new ones.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class Prediction(BaseDocument):
    app_id: str
    task_id: str
    input_id: str
    model_id: str
    model_version_id: str | None = None  # uploaded models: the version that made it
    model_concept_id: str
    model_concept_name: str = ""
    concept_id: str | None = None  # the task concept it maps to, None when unmapped
    confidence: float
    box: list[float] | None = None
    polygon: list[float] | None = None
    region_key: str = ""
    extra: dict[str, Any] = {}

    class Settings:
        name = "predictions"
        indexes = [
            IndexModel([("task_id", ASCENDING)]),
            IndexModel([("input_id", ASCENDING)]),
            IndexModel([("app_id", ASCENDING)]),
        ]
