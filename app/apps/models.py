from __future__ import annotations

import enum

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class Role(enum.StrEnum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    LABELER = "LABELER"
    REVIEWER = "REVIEWER"


class App(BaseDocument):
    name: str
    description: str = ""
    created_by: str

    class Settings:
        name = "apps"


class Membership(BaseDocument):
    """A user's roles in one app; one document per (app, user)."""

    app_id: str
    user_id: str
    roles: list[Role]

    class Settings:
        name = "memberships"
        indexes = [
            IndexModel([("app_id", ASCENDING), ("user_id", ASCENDING)], unique=True),
            IndexModel([("user_id", ASCENDING)]),
        ]
