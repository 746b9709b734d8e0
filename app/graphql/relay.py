"""Relay connections. Every list in the API is one, with a hard cap on ``first``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry

from app.core.pagination import Page, encode_cursor

NodeT = TypeVar("NodeT")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of this page, without edges.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


def _doc_id(doc: Any) -> str:
    return str(doc.id)


def stored_id(doc: Any) -> str:
    """The id of a stored document as read (``paginate_stored``)."""
    return str(doc["_id"])


def connection_from_page(
    page: Page[Any], convert: Callable[[Any], Any], *, cursor_id: Callable[[Any], str] = _doc_id
) -> Any:
    """``cursor_id`` reads an item's id (``stored_id`` for the stored documents of
    ``paginate_stored``)."""
    edges = [Edge(cursor=encode_cursor(cursor_id(doc)), node=convert(doc)) for doc in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


def connection_from_list(items: Sequence[Any], convert: Callable[[Any], Any]) -> Any:
    return connection_from_page(Page(items=list(items), has_next=False, has_previous=False), convert)
