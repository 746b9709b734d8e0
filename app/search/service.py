"""Similarity search over stored embeddings, and bulk actions on its results.

Queries: annotations like an annotation (its region crop), inputs like an input (the whole
image, or a text), and both like an example image or like a box drawn on an input. Scores
are cosine similarities of L2-normalised vectors of one embedding model. Filters are read
from the annotations (or inputs) themselves and handed to the index as the set of allowed
ids, so they apply inside the search, never to a fixed top-k afterwards.

Results are ranked; a cursor is a rank, so pages are stable while the index does not change.
At most ``MAX_RESULTS`` results are reachable (a search is not a listing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.access import MANAGERS, Principal, get_for, require_app
from app.annotations import geometry
from app.annotations.crops import Box, region_of
from app.annotations.models import Annotation, AnnotationStatus
from app.annotations.service import AnnotationFilter, FilterOperator, filter_query
from app.core import validate
from app.core.errors import Conflict, ErrorCode, ValidationFailed
from app.core.pagination import decode_cursor, encode_cursor
from app.inputs import images
from app.inputs.models import Input, InputKind
from app.search import embed, store
from app.search.embed import EmbeddingModel
from app.search.models import Backfill, BackfillStatus, RefKind
from app.search.registry import Registry
from app.search.work import BACKFILL_JOB
from app.search.work import JOB as EMBED_JOB

MAX_RESULTS = 1000
REGION = {"$or": [{"box": {"$ne": None}}, {"polygon": {"$ne": None}}]}

_registries: dict[Path, Registry] = {}


def registry(runtime: Any) -> Registry:
    """The process's indexes for this data directory (derived state, rebuilt on demand)."""
    root = Path(runtime.settings.data_dir) / "search"
    found = _registries.get(root)
    if found is None:
        found = _registries[root] = Registry(root)
    return found


@dataclass
class SearchFilter:
    """Annotations: every given list narrows (AND). Inputs: ``dataset_ids`` and ``concept_ids``
    (inputs with an annotation of one of them) apply."""

    concept_ids: list[str] = field(default_factory=list)
    statuses: list[AnnotationStatus] = field(default_factory=list)
    dataset_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    labeled_by: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.concept_ids or self.statuses or self.dataset_ids or self.task_ids or self.labeled_by)


@dataclass
class Hit:
    score: float
    rank: int
    annotation: Annotation | None = None
    input: Input | None = None

    @property
    def cursor(self) -> str:
        return encode_cursor(f"r{self.rank}")


@dataclass
class Results:
    hits: list[Hit]
    has_next: bool
    has_previous: bool
    model: str


def _offset(after: str | None) -> int:
    if not after:
        return 0
    raw = decode_cursor(after)
    if not raw.startswith("r") or not raw[1:].isdigit():
        raise ValidationFailed("malformed cursor", code=ErrorCode.INVALID_CURSOR, field="after")
    return int(raw[1:]) + 1


def _window(first: int | None, after: str | None, cap: int) -> tuple[int, int]:
    first = 20 if first is None else first
    if first < 0 or first > cap:
        raise ValidationFailed(
            f"first must be between 0 and {cap}", field="first", code=ErrorCode.OUT_OF_RANGE
        )
    offset = _offset(after)
    if offset + first > MAX_RESULTS:
        raise ValidationFailed(
            f"a search reaches its {MAX_RESULTS} best results only",
            field="after",
            code=ErrorCode.OUT_OF_RANGE,
        )
    return offset, first


# --- filters -> allowed ids ------------------------------------------------------------------


async def _allowed_annotations(app_id: str, filt: SearchFilter) -> set[str] | None:
    if filt.empty:
        return None
    query = filter_query(
        app_id,
        AnnotationFilter(
            operator=FilterOperator.AND,
            labeled_by=filt.labeled_by,
            statuses=filt.statuses,
            concept_ids=filt.concept_ids,
            task_ids=filt.task_ids,
            dataset_ids=filt.dataset_ids,
        ),
    )
    docs = await Annotation.get_pymongo_collection().find({"$and": [query, REGION]}, {"_id": 1}).to_list()
    return {d["_id"] for d in docs}


async def _allowed_inputs(app_id: str, filt: SearchFilter) -> set[str] | None:
    if filt.statuses or filt.task_ids or filt.labeled_by:
        raise ValidationFailed(
            "inputs are filtered by datasetIds and conceptIds only", field="filter", code=ErrorCode.INVALID
        )
    for name, values in (("conceptIds", filt.concept_ids), ("datasetIds", filt.dataset_ids)):
        validate.bounded_list(values, f"filter.{name}", max_items=100, allow_empty=True)
    allowed: set[str] | None = None
    if filt.dataset_ids:
        docs = (
            await Input.get_pymongo_collection()
            .find({"app_id": app_id, "dataset_ids": {"$in": filt.dataset_ids}}, {"_id": 1})
            .to_list()
        )
        allowed = {d["_id"] for d in docs}
    if filt.concept_ids:
        docs = (
            await Annotation.get_pymongo_collection()
            .find({"app_id": app_id, "concept_id": {"$in": filt.concept_ids}}, {"input_id": 1})
            .to_list()
        )
        with_concept = {d["input_id"] for d in docs}
        allowed = with_concept if allowed is None else allowed & with_concept
    return allowed


# --- running a search ------------------------------------------------------------------------


async def _ranked(
    runtime: Any,
    app_id: str,
    model: EmbeddingModel,
    kind: RefKind,
    vector: np.ndarray,
    allowed: set[str] | None,
    offset: int,
    first: int,
    exclude: str | None,
) -> tuple[list[tuple[str, float]], bool]:
    live = await registry(runtime).get(app_id, model.key, kind, model.dim)
    want = offset + first + 1 + (1 if exclude else 0)
    found = await asyncio.to_thread(live.index.search, vector, want, allowed)
    found = [(i, s) for i, s in found if i != exclude]
    return found[offset : offset + first], len(found) > offset + first


async def _annotation_results(
    runtime: Any,
    app_id: str,
    vector: np.ndarray,
    filt: SearchFilter,
    offset: int,
    first: int,
    exclude: str | None,
) -> Results:
    allowed = await _allowed_annotations(app_id, filt)
    ranked, more = await _ranked(
        runtime, app_id, embed.IMAGE_MODEL, RefKind.ANNOTATION, vector, allowed, offset, first, exclude
    )
    docs = {
        d.id: d
        for d in await Annotation.find({"_id": {"$in": [i for i, _ in ranked]}, "app_id": app_id}).to_list()
    }
    hits = [Hit(score=s, rank=offset + n, annotation=docs[i]) for n, (i, s) in enumerate(ranked) if i in docs]
    return Results(hits, more, offset > 0, embed.IMAGE_MODEL.key)


async def _input_results(
    runtime: Any,
    app_id: str,
    model: EmbeddingModel,
    vector: np.ndarray,
    filt: SearchFilter,
    offset: int,
    first: int,
    exclude: str | None,
) -> Results:
    allowed = await _allowed_inputs(app_id, filt)
    ranked, more = await _ranked(
        runtime, app_id, model, RefKind.INPUT, vector, allowed, offset, first, exclude
    )
    docs = {
        d.id: d
        for d in await Input.find({"_id": {"$in": [i for i, _ in ranked]}, "app_id": app_id}).to_list()
    }
    hits = [Hit(score=s, rank=offset + n, input=docs[i]) for n, (i, s) in enumerate(ranked) if i in docs]
    return Results(hits, more, offset > 0, model.key)


async def _pending(runtime: Any, kind: RefKind, ident: str, field: str) -> Conflict:
    """The object is not embedded yet: ask a worker for it now (the change records only see
    inputs once a task or a person labels them), and say so."""
    if runtime.redis is not None:
        ids = ([ident], []) if kind == RefKind.ANNOTATION else ([], [ident])
        await runtime.redis.enqueue_job(EMBED_JOB, *ids)
    what = "annotation" if kind == RefKind.ANNOTATION else "input"
    return Conflict(
        f"{what} {ident!r} has no embedding yet (it is computed in the background; try again shortly, "
        "or run backfillSearchEmbeddings)",
        field=field,
        code=ErrorCode.EMBEDDING_PENDING,
    )


async def similar_annotations(
    runtime: Any,
    principal: Principal,
    annotation_id: str,
    first: int | None,
    after: str | None,
    filt: SearchFilter,
) -> Results:
    offset, first = _window(first, after, runtime.settings.max_page_size)
    doc = await get_for(principal, Annotation, annotation_id, what="annotation", field="annotationId")
    if region_of(doc.box, doc.polygon) is None:
        raise ValidationFailed(
            "the annotation has no region: only region annotations are compared",
            field="annotationId",
            code=ErrorCode.NO_REGION,
        )
    vector = await store.get_vector(doc.app_id, embed.IMAGE_MODEL.key, RefKind.ANNOTATION, doc.id)
    if vector is None:
        raise await _pending(runtime, RefKind.ANNOTATION, doc.id, "annotationId")
    return await _annotation_results(runtime, doc.app_id, vector, filt, offset, first, doc.id)


async def similar_inputs(
    runtime: Any,
    principal: Principal,
    input_id: str,
    first: int | None,
    after: str | None,
    filt: SearchFilter,
) -> Results:
    offset, first = _window(first, after, runtime.settings.max_page_size)
    doc = await get_for(principal, Input, input_id, what="input", field="inputId")
    model = embed.TEXT_MODEL if doc.kind == InputKind.TEXT else embed.IMAGE_MODEL
    vector = await store.get_vector(doc.app_id, model.key, RefKind.INPUT, doc.id)
    if vector is None:
        raise await _pending(runtime, RefKind.INPUT, doc.id, "inputId")
    return await _input_results(runtime, doc.app_id, model, vector, filt, offset, first, doc.id)


async def _image_vector(data: bytes, box: Box | None) -> np.ndarray:
    vectors = await asyncio.to_thread(embed.embed_images, [(data, box)])
    return vectors[0]


async def _search_vector(
    runtime: Any,
    app_id: str,
    vector: np.ndarray,
    target: RefKind,
    filt: SearchFilter,
    offset: int,
    first: int,
) -> Results:
    if target == RefKind.ANNOTATION:
        return await _annotation_results(runtime, app_id, vector, filt, offset, first, None)
    return await _input_results(runtime, app_id, embed.IMAGE_MODEL, vector, filt, offset, first, None)


async def search_by_image(
    runtime: Any,
    principal: Principal,
    app_id: str,
    data: bytes,
    target: RefKind,
    first: int | None,
    after: str | None,
    filt: SearchFilter,
) -> Results:
    offset, first = _window(first, after, runtime.settings.max_page_size)
    await require_app(principal, app_id)
    settings = runtime.settings
    await images.inspect_image(
        data,
        "image",
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_side=settings.max_image_side,
        max_pixels_per_byte=settings.max_image_pixels_per_byte,
    )
    try:
        vector = await _image_vector(data, None)
    except (OSError, ValueError) as exc:
        raise ValidationFailed("image does not decode", field="image", code=ErrorCode.INVALID_IMAGE) from exc
    return await _search_vector(runtime, app_id, vector, target, filt, offset, first)


async def search_by_region(
    runtime: Any,
    principal: Principal,
    input_id: str,
    box: tuple[float, float, float, float],
    target: RefKind,
    first: int | None,
    after: str | None,
    filt: SearchFilter,
) -> Results:
    offset, first = _window(first, after, runtime.settings.max_page_size)
    top, left, bottom, right = geometry.check_box(*box, field="box")
    doc = await get_for(principal, Input, input_id, what="input", field="inputId")
    data = await runtime.blobs.get(doc.blob_key) if doc.kind == InputKind.IMAGE and doc.blob_key else None
    if data is None:
        raise ValidationFailed(
            "the input has no image to cut a region from", field="inputId", code=ErrorCode.INVALID
        )
    vector = await _image_vector(data, (top, left, bottom, right))
    return await _search_vector(runtime, doc.app_id, vector, target, filt, offset, first)


# --- index and backfill ----------------------------------------------------------------------


async def rebuild_index(runtime: Any, principal: Principal, app_id: str) -> dict[str, int]:
    """Rebuild this process's indexes of the app from MongoDB; returns their sizes."""
    await require_app(principal, app_id, MANAGERS)
    reg = registry(runtime)
    sizes = {}
    for model, kind in (
        (embed.IMAGE_MODEL, RefKind.ANNOTATION),
        (embed.IMAGE_MODEL, RefKind.INPUT),
        (embed.TEXT_MODEL, RefKind.INPUT),
    ):
        sizes[f"{model.key}:{kind.value}"] = await reg.rebuild(app_id, model.key, kind, model.dim)
    return sizes


async def start_backfill(runtime: Any, principal: Principal, app_id: str) -> Backfill:
    await require_app(principal, app_id, MANAGERS)
    running = await Backfill.find_one({"app_id": app_id, "status": BackfillStatus.RUNNING.value})
    if running is not None:
        raise Conflict(
            f"backfill {running.id!r} of this app is still running", field="appId", code=ErrorCode.BUSY
        )
    total_annotations = len(
        await Annotation.get_pymongo_collection()
        .find({"$and": [{"app_id": app_id}, REGION]}, {"_id": 1})
        .to_list()
    )
    total_inputs = len(await Input.get_pymongo_collection().find({"app_id": app_id}, {"_id": 1}).to_list())
    backfill = Backfill(app_id=app_id, total=total_annotations + total_inputs, created_by=principal.user_id)
    if backfill.total == 0:
        backfill.status = BackfillStatus.DONE
    await backfill.insert()
    if backfill.status == BackfillStatus.RUNNING:
        if runtime.redis is None:
            raise Conflict("no job queue configured", field="appId", code=ErrorCode.NO_QUEUE)
        await runtime.redis.enqueue_job(BACKFILL_JOB, backfill.id)
    return backfill


async def get_backfill(principal: Principal, backfill_id: str) -> Backfill:
    return await get_for(principal, Backfill, backfill_id, what="backfill", field="id")


def ids_of(hits: Sequence[Hit]) -> list[str]:
    return [h.annotation.id if h.annotation else h.input.id if h.input else "" for h in hits]
