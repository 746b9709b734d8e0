"""Base Beanie document: string ids the service generates and real UTC timestamps.

Per MONGODB.md every field is written on insert (models have defaults), ids are strings, and
updates to timestamps go through ``$currentDate`` or a whole-document save.
"""

from __future__ import annotations

from datetime import UTC, datetime

from beanie import Document
from pydantic import Field

from app.core.ids import new_id


def utcnow() -> datetime:
    # MongoDB keeps milliseconds; truncating here keeps in-memory and stored values equal.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class BaseDocument(Document):
    id: str = Field(default_factory=new_id)  # type: ignore[assignment]
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    async def touch_save(self) -> None:
        """Replace the whole document with a fresh ``updated_at`` (a real date on every engine)."""
        self.updated_at = utcnow()
        await self.replace()
