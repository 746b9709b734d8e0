"""Per-request context: who is calling, settings, services, and request-scoped DataLoaders.

Loaders live in the context (never app-wide), so one user's cached objects never reach another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from app.access import Principal
from app.apps.models import Membership
from app.core.errors import Unauthenticated
from app.core.pagination import PageArgs, page_args
from app.runtime import Runtime
from app.settings import Settings

D = TypeVar("D")


@dataclass
class Context:
    request: Request | WebSocket
    runtime: Runtime
    principal_or_none: Principal | None
    request_id: str
    _loaders: dict[type, DataLoader[str, Any]] = field(default_factory=dict)
    _memberships: dict[str, list[Any]] | None = None

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def principal(self) -> Principal:
        if self.principal_or_none is None:
            raise Unauthenticated("authentication required")
        return self.principal_or_none

    def page(self, first: int | None, after: str | None) -> PageArgs:
        """Validated pagination arguments (``first`` capped by ``max_page_size``)."""
        return page_args(
            first, after, default=self.settings.default_page_size, cap=self.settings.max_page_size
        )

    async def my_roles(self, app_id: str) -> list[Any]:
        """The caller's roles in ``app_id``; all their memberships are read once per request."""
        if self._memberships is None:
            docs = await Membership.find({"user_id": self.principal.user_id}).to_list()
            self._memberships = {m.app_id: list(m.roles) for m in docs}
        return self._memberships.get(app_id, [])

    def loader(self, model: type[D]) -> DataLoader[str, D | None]:
        """Batch ``model.get`` calls of one request into a single ``$in`` query."""
        if model not in self._loaders:

            async def load(ids: list[str]) -> Sequence[Any]:
                docs = await model.find({"_id": {"$in": list(set(ids))}}).to_list()  # type: ignore[attr-defined]
                by_id = {doc.id: doc for doc in docs}
                return [by_id.get(i) for i in ids]

            self._loaders[model] = DataLoader(load_fn=load)
        return self._loaders[model]


Info = StrawberryInfo[Context, None]
