from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class Concept(BaseDocument):
    app_id: str
    name: str
    name_key: str  # casefolded name: concept names are unique per app, ignoring case

    class Settings:
        name = "concepts"
        indexes = [
            IndexModel([("app_id", ASCENDING), ("name_key", ASCENDING)], unique=True),
            IndexModel([("app_id", ASCENDING)]),
        ]
