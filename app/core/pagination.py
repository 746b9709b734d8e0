"""Cursor pagination over ``_id`` (ids sort by creation time, see ids.py).

``first`` is capped: asking for more than ``max_page_size`` is a typed error rather than a
silently shorter page, so scripts notice.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pymongo import UpdateOne

from app.core.errors import ErrorCode, ValidationFailed

T = TypeVar("T")
_PREFIX = "c:"
# The field a collection's pages range over when it is not ``_id``: a stored copy of ``_id``.
# nx-27017 answers any range on ``_id`` by decoding every document in Python, but a range on a
# plain field through its SQL path and a compound index (scope, page_key); MongoDB and FerretDB
# use that index the same way. Cursors stay ids, as the two are equal.
PAGE_KEY = "page_key"
BACKFILL_CHUNK = 1000


def encode_cursor(doc_id: str) -> str:
    return base64.urlsafe_b64encode((_PREFIX + doc_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationFailed("malformed cursor", code=ErrorCode.INVALID_CURSOR, field="after") from exc
    if not raw.startswith(_PREFIX) or len(raw) <= len(_PREFIX):
        raise ValidationFailed("malformed cursor", code=ErrorCode.INVALID_CURSOR, field="after")
    return raw[len(_PREFIX) :]


@dataclass(frozen=True)
class PageArgs:
    first: int
    after: str | None


def page_args(first: int | None, after: str | None, *, default: int, cap: int) -> PageArgs:
    if first is None:
        first = default
    if first < 0:
        raise ValidationFailed("first must not be negative", code=ErrorCode.OUT_OF_RANGE, field="first")
    if first > cap:
        raise ValidationFailed(f"first may be at most {cap}", code=ErrorCode.OUT_OF_RANGE, field="first")
    return PageArgs(first=first, after=decode_cursor(after) if after else None)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    has_previous: bool

    def cursor(self, item: Any) -> str:
        return encode_cursor(item.id)


def after_filter(query: dict[str, Any], key: str, after: str) -> dict[str, Any]:
    """``query`` and ``key > after``, with the range at the top level when it can be.

    Equality plus a range on the sort key, with no ``$and``, is the shape every engine answers
    from a compound index (equality fields first, then the key): MongoDB and FerretDB bound the
    index scan with it, and nx-27017 answers it through its SQL path (it falls back to decoding
    every document in Python for ``$and``/``$or`` and for any range on ``_id``).
    """
    existing = query.get(key)
    if existing is None and key not in query:
        return {**query, key: {"$gt": after}}
    if (
        isinstance(existing, dict)
        and existing
        and "$gt" not in existing
        and all(k.startswith("$") for k in existing)
    ):
        return {**query, key: {**existing, "$gt": after}}
    return {"$and": [query, {key: {"$gt": after}}]}


async def paginate(model: type[T], query: dict[str, Any], args: PageArgs, *, key: str = "_id") -> Page[T]:
    """One page of ``model`` matching ``query`` after the cursor, in ``key`` order: ``_id``, or
    a field always equal to it (e.g. ``Annotation.page_key``), so cursors stay ids."""
    if args.first == 0:
        return Page(items=[], has_next=False, has_previous=args.after is not None)
    filt = after_filter(query, key, args.after) if args.after is not None else dict(query)
    docs = await model.find(filt).sort(key).limit(args.first + 1).to_list()  # type: ignore[attr-defined]
    return _page(docs, args)


async def paginate_stored(
    find: Any, query: dict[str, Any], args: PageArgs, *, key: str = "_id"
) -> Page[dict[str, Any]]:
    """``paginate`` through a PyMongo collection's ``find``: the stored documents as read, one
    query, no model validation. For hot read paths over a collection the application alone
    writes (its documents have the model's shape); the caller maps them (``Page.cursor`` does
    not apply: the id is ``item["_id"]``)."""
    if args.first == 0:
        return Page(items=[], has_next=False, has_previous=args.after is not None)
    filt = after_filter(query, key, args.after) if args.after is not None else dict(query)
    docs = await find(filt).sort(key, 1).limit(args.first + 1).to_list()
    return _page(docs, args)


def _page(docs: list[T], args: PageArgs) -> Page[T]:
    return Page(
        items=docs[: args.first],
        has_next=len(docs) > args.first,
        has_previous=args.after is not None,
    )


async def backfill_page_keys(collection: Any) -> int:
    """Give documents stored before ``page_key`` existed their copy of ``_id``; idempotent,
    and one read once all have one. Returns how many it set."""
    done = 0
    while True:
        # null matches a missing field on every engine (MONGODB.md, contract 8: no $exists)
        docs = await collection.find({PAGE_KEY: None}, {"_id": 1}).limit(BACKFILL_CHUNK).to_list()
        if not docs:
            return done
        await collection.bulk_write(
            [UpdateOne({"_id": d["_id"]}, {"$set": {PAGE_KEY: d["_id"]}}) for d in docs], ordered=False
        )
        done += len(docs)
