from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class User(BaseDocument):
    email: str  # stored lower-case; unique
    name: str = ""

    class Settings:
        name = "users"
        indexes = [IndexModel([("email", ASCENDING)], unique=True)]


class ApiKey(BaseDocument):
    """An API key: the secret is shown once at creation; only its SHA-256 is stored."""

    user_id: str
    secret_hash: str
    prefix: str  # the first characters of the secret, to tell keys apart in listings
    description: str = ""
    revoked: bool = False
    last_used_at: datetime | None = None

    class Settings:
        name = "api_keys"
        indexes = [
            IndexModel([("secret_hash", ASCENDING)], unique=True),
            IndexModel([("user_id", ASCENDING)]),
        ]
