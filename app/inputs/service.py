"""Inputs: images (uploaded, base64, or a URL fetched later by a worker) and texts.

Invariants:
* An input is stored only after every check passed: a malformed image leaves no document and
  no blob behind. Every item of a call is checked before anything of the call is written;
  cheap checks run first, the image header last (pixels are never decoded here).
* No blob without its input: blobs are put, then the documents inserted in one unordered
  write; an item the database refuses is reported and its blob released, and any other
  failure undoes the call (documents deleted, blobs released) before it propagates.
* ``Dataset.inputs_count`` moves with every write that changes membership: +1 per dataset of
  a new input, -1 per dataset of a deleted one, read from the document as it was deleted
  (``find_one_and_delete``), so a concurrent membership change is never miscounted.
* Deleting an input deletes its annotations; its blob goes when no other input shares it
  (blobs are content-addressed, so two identical uploads share one).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pymongo.errors import BulkWriteError

from app.access import CONTRIBUTORS, Principal, get_for, membership_of, require_app
from app.annotations import store
from app.apps.models import Membership
from app.blob_refs import release_unused
from app.core import validate
from app.core.blobs import BlobStore
from app.core.errors import DomainError, ErrorCode, NotFound, PermissionDenied, ValidationFailed
from app.core.pagination import PAGE_KEY, Page, PageArgs, paginate
from app.datasets.service import adjust_inputs_counts, known_dataset_ids, member_of
from app.inputs import images
from app.inputs.models import Input, InputKind, InputStatus
from app.settings import Settings

log = logging.getLogger("labelstream.inputs")

MAX_URL = 2048
SOURCES = ("image", "imageBase64", "imageUrl", "text")


@dataclass(frozen=True)
class NewInput:
    """One input to add: exactly one of the four sources.

    ``image`` is a file-like object with ``async read(size)`` (a multipart upload); the
    service reads at most ``max_upload_bytes + 1`` bytes of it.
    """

    image: object | None = None
    image_base64: str | None = None
    image_url: str | None = None
    text: str | None = None
    metadata: Any = None
    dataset_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BulkResult:
    inputs: list[Input]
    errors: list[tuple[int, DomainError]]  # (position in the request, error with its path)


@dataclass
class _Ready:
    """A checked input, not yet stored, with the image bytes to put in the blob store."""

    doc: Input
    data: bytes | None


async def add_input(
    principal: Principal, app_id: str, new: NewInput, *, settings: Settings, blobs: BlobStore
) -> Input:
    await require_app(principal, app_id, CONTRIBUTORS)
    known = await known_dataset_ids(app_id, _bounded_ids([new], settings.max_bulk_items))
    ready = await _prepare(app_id, new, known, settings, principal.user_id)
    stored, refused = await _store([ready], blobs)
    if refused:
        raise refused[0][1]
    return stored[0]


async def add_inputs(
    principal: Principal,
    app_id: str,
    items: list[NewInput],
    *,
    settings: Settings,
    blobs: BlobStore,
) -> BulkResult:
    """Add the valid items; each invalid one becomes an error (field ``inputs.<i>.<field>``)
    with nothing of it stored, and does not stop the others. Too many items fails the whole
    call. ``Dataset.inputs_count`` grows by exactly the inputs stored."""
    await require_app(principal, app_id, CONTRIBUTORS)
    validate.bounded_list(items, "inputs", max_items=settings.max_bulk_items)
    known = await known_dataset_ids(app_id, _bounded_ids(items, settings.max_bulk_items))
    ready: list[_Ready] = []
    positions: list[int] = []  # request index of each ready item
    errors: list[tuple[int, DomainError]] = []
    for index, item in enumerate(items):
        try:
            ready.append(await _prepare(app_id, item, known, settings, principal.user_id))
            positions.append(index)
        except DomainError as exc:
            errors.append((index, exc.at(f"inputs.{index}")))
    stored, refused = await _store(ready, blobs)
    for at, error in refused:
        errors.append((positions[at], error.at(f"inputs.{positions[at]}")))
    return BulkResult(inputs=stored, errors=sorted(errors, key=lambda e: e[0]))


async def update_input(principal: Principal, input_id: str, metadata: Any, *, settings: Settings) -> Input:
    """Replace the metadata. A ``$set`` (not a whole-document save), so a concurrent
    membership change to ``dataset_ids`` is never overwritten by a stale copy."""
    doc = await get_for(principal, Input, input_id, what="input", roles=CONTRIBUTORS)
    clean = validate.json_document(metadata, "metadata", max_bytes=settings.max_metadata_bytes)
    await Input.get_pymongo_collection().update_one(
        {"_id": doc.id}, {"$set": {"metadata": clean}, "$currentDate": {"updated_at": True}}
    )
    fresh = await Input.get(doc.id)
    if fresh is None:  # deleted concurrently
        raise NotFound("input", input_id, field="id")
    return fresh


async def delete_input(principal: Principal, input_id: str, *, blobs: BlobStore, runtime: Any = None) -> str:
    doc = await get_for(principal, Input, input_id, what="input", roles=CONTRIBUTORS)
    await _delete(runtime, [doc.id], blobs)
    return doc.id


async def delete_inputs(
    principal: Principal, input_ids: list[str], *, max_items: int, blobs: BlobStore, runtime: Any = None
) -> list[str]:
    """All or nothing: every id must be an input the caller may delete (else the first bad
    one is named as ``ids.<index>`` and nothing is deleted)."""
    validate.bounded_list(input_ids, "ids", max_items=max_items)
    unique = list(dict.fromkeys(input_ids))
    docs = {d.id: d for d in await Input.find({"_id": {"$in": unique}}).to_list()}
    await _require_contributor(principal, input_ids, docs)
    await _delete(runtime, unique, blobs)
    return unique


async def get_input(principal: Principal, input_id: str) -> Input:
    return await get_for(principal, Input, input_id, what="input")


async def list_inputs(
    principal: Principal, app_id: str, dataset_id: str | None, args: PageArgs
) -> Page[Input]:
    await require_app(principal, app_id)
    query: dict[str, object] = {"app_id": app_id}
    if dataset_id is not None:
        if dataset_id not in await known_dataset_ids(app_id, {dataset_id}):
            raise NotFound("dataset", dataset_id, field="datasetId")
        query.update(member_of(dataset_id))
    return await paginate(Input, query, args, key=PAGE_KEY)


# --- checking one new input ---------------------------------------------------------------


async def _prepare(app_id: str, new: NewInput, known: set[str], settings: Settings, user_id: str) -> _Ready:
    source = _only_source(new)
    doc = Input(
        app_id=app_id,
        kind=InputKind.TEXT if source == "text" else InputKind.IMAGE,
        dataset_ids=_dataset_ids(new.dataset_ids, known, settings.max_bulk_items),
        metadata=validate.json_document(new.metadata, "metadata", max_bytes=settings.max_metadata_bytes),
        created_by=user_id,
    )
    if source == "text":
        doc.text = _clean_text(new.text or "", settings.max_text_chars)
        return _Ready(doc=doc, data=None)
    if source == "imageUrl":
        doc.url, doc.status = _clean_url(new.image_url or ""), InputStatus.PENDING_FETCH
        return _Ready(doc=doc, data=None)
    data = await _image_bytes(new, source, settings.max_upload_bytes)
    info = await images.inspect_image(
        data,
        source,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_side=settings.max_image_side,
        max_pixels_per_byte=settings.max_image_pixels_per_byte,
    )
    doc.width, doc.height = info.width, info.height
    doc.content_type, doc.size_bytes = info.content_type, info.size_bytes
    return _Ready(doc=doc, data=data)


def _only_source(new: NewInput) -> str:
    values = (new.image, new.image_base64, new.image_url, new.text)
    given = [name for name, value in zip(SOURCES, values, strict=True) if value is not None]
    if len(given) != 1:
        raise ValidationFailed(
            "give exactly one of image, imageBase64, imageUrl, text",
            field=given[1] if given else "image",
            code=ErrorCode.INVALID,
        )
    return given[0]


def _bounded_ids(items: list[NewInput], max_items: int) -> set[str]:
    """Dataset ids worth looking up: lists over the limit fail their own check later."""
    return {ds for item in items if len(item.dataset_ids) <= max_items for ds in item.dataset_ids}


def _dataset_ids(ids: list[str], known: set[str], max_items: int) -> list[str]:
    validate.bounded_list(ids, "datasetIds", max_items=max_items, allow_empty=True)
    for index, dataset_id in enumerate(ids):
        if dataset_id not in known:
            raise NotFound("dataset", dataset_id, field=f"datasetIds.{index}")
    return list(dict.fromkeys(ids))


def _clean_text(text: str, max_chars: int) -> str:
    if not text.strip():
        raise ValidationFailed("text must not be empty", field="text", code=ErrorCode.EMPTY)
    if len(text) > max_chars:
        raise ValidationFailed(
            f"text may be at most {max_chars} characters", field="text", code=ErrorCode.TOO_LONG
        )
    return validate.unicode_text(text, "text")


def _clean_url(value: str) -> str:
    """An absolute http(s) URL without credentials; where it points is the fetcher's check."""
    url = value.strip()
    if len(url) > MAX_URL:
        raise ValidationFailed(
            f"imageUrl may be at most {MAX_URL} characters",
            field="imageUrl",
            code=ErrorCode.TOO_LONG,
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise _bad_url("is not a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _bad_url("must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        raise _bad_url("must not contain credentials")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise _bad_url("must not contain spaces or control characters")
    return url


def _bad_url(reason: str) -> ValidationFailed:
    return ValidationFailed(f"imageUrl {reason}", field="imageUrl", code=ErrorCode.INVALID_URL)


async def _image_bytes(new: NewInput, source: str, max_bytes: int) -> bytes:
    if source == "imageBase64":
        return images.decode_base64(new.image_base64 or "", source, max_bytes=max_bytes)
    read = getattr(new.image, "read", None)
    if read is None:
        raise ValidationFailed("image must be a file sent with the GraphQL multipart request", field="image")
    data = await read(max_bytes + 1)  # one byte over the limit is enough to refuse it
    return bytes(data)


# --- storing and deleting -----------------------------------------------------------------


async def _store(ready: list[_Ready], blobs: BlobStore) -> tuple[list[Input], list[tuple[int, DomainError]]]:
    """Blobs first, then the documents (a document never points at a missing blob), then the
    dataset counters for exactly the documents stored. Once the documents are in, the bytes
    are stored again if a concurrent release took them (``app.blob_refs``).

    Returns the stored documents and, by position in ``ready``, the items the database
    refused (nothing of them stays). Any other failure undoes the call before propagating.
    """
    put: list[str] = []
    docs = [item.doc for item in ready]
    try:
        for item in ready:
            if item.data is not None:
                item.doc.blob_key = await blobs.put(item.data)
                put.append(item.doc.blob_key)
        refused = await _insert(docs)
        for at, item in enumerate(ready):  # a release of the same bytes meanwhile took them
            if at not in refused and item.data is not None and item.doc.blob_key:
                await blobs.ensure(item.doc.blob_key, item.data)
    except BaseException:
        await _undo([d.id for d in docs], put, blobs)
        raise
    stored = [doc for at, doc in enumerate(docs) if at not in refused]
    await adjust_inputs_counts(Counter(ds for doc in stored for ds in doc.dataset_ids))
    await release_unused(blobs, [docs[at].blob_key for at in refused])
    return stored, sorted(refused.items())


async def _insert(docs: list[Input]) -> dict[int, DomainError]:
    """One unordered insert; what the database refused, by position (the rest is stored)."""
    if not docs:
        return {}
    try:
        await Input.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        # every item was checked, so this is the database's surprise: logged, not shown
        log.warning("inputs refused by the database: %s", exc.details.get("writeErrors"))
        return {
            int(err["index"]): ValidationFailed("the database refused to store this input")
            for err in exc.details.get("writeErrors", [])
        }
    return {}


async def _undo(input_ids: list[str], keys: list[str], blobs: BlobStore) -> None:
    """Best effort after a failed store: our documents go, then blobs nothing else uses."""
    try:
        await Input.get_pymongo_collection().delete_many({"_id": {"$in": input_ids}})
        await release_unused(blobs, keys)
    except Exception:
        log.exception("could not undo a failed store of inputs %s", input_ids)


async def _require_contributor(principal: Principal, input_ids: list[str], docs: dict[str, Input]) -> None:
    memberships: dict[str, Membership | None] = {}
    for app_id in {d.app_id for d in docs.values()}:
        memberships[app_id] = await membership_of(principal, app_id)
    for index, input_id in enumerate(input_ids):
        doc = docs.get(input_id)
        membership = memberships.get(doc.app_id) if doc is not None else None
        if doc is None or membership is None:
            raise NotFound("input", input_id, field=f"ids.{index}")
        if not set(CONTRIBUTORS).intersection(membership.roles):
            names = ", ".join(sorted(r.value for r in CONTRIBUTORS))
            raise PermissionDenied(f"this needs one of the roles {names} in the app", field=f"ids.{index}")


async def _delete(runtime: Any, input_ids: list[str], blobs: BlobStore) -> None:
    collection = Input.get_pymongo_collection()
    gone = [doc for i in input_ids if (doc := await collection.find_one_and_delete({"_id": i}))]
    if not gone:
        return
    counts = Counter(ds for doc in gone for ds in doc.get("dataset_ids", []))
    await adjust_inputs_counts({ds: -n for ds, n in counts.items()})
    await store.delete_for_inputs(runtime, [doc["_id"] for doc in gone])
    await release_unused(blobs, [doc.get("blob_key") for doc in gone])
