"""Types shared by several domains."""

from __future__ import annotations

import strawberry


@strawberry.type(description="The id of what was deleted.")
class DeleteSuccess:
    id: strawberry.ID


@strawberry.type(description="One failed item of a bulk mutation; the other items went through.")
class ItemError:
    index: int = strawberry.field(description="Position of the item in the input list.")
    message: str
    field: str | None
    code: str
