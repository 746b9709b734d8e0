"""Concepts: label names, unique per app ignoring case."""

from __future__ import annotations

from pymongo.errors import PyMongoError

from app.access import CONTRIBUTORS, MANAGERS, Principal, get_for, require_app
from app.annotations.models import Annotation
from app.concepts.models import Concept
from app.core import validate
from app.core.db import is_duplicate_key
from app.core.errors import Conflict, ErrorCode, NotFound
from app.core.pagination import Page, PageArgs, paginate
from app.tasks.models import LabelingTask


def name_key(name: str) -> str:
    return name.casefold()


def _duplicate(name: str) -> Conflict:
    return Conflict(f"a concept named {name!r} exists already", field="name", code=ErrorCode.DUPLICATE)


async def create_concept(principal: Principal, app_id: str, name: str) -> Concept:
    await require_app(principal, app_id, CONTRIBUTORS)
    clean = validate.name(name)
    concept = Concept(app_id=app_id, name=clean, name_key=name_key(clean))
    try:
        await concept.insert()
    except PyMongoError as exc:
        if is_duplicate_key(exc):
            raise _duplicate(clean) from exc
        raise
    return concept


async def update_concept(principal: Principal, concept_id: str, name: str) -> Concept:
    concept = await get_for(principal, Concept, concept_id, what="concept", roles=MANAGERS)
    clean = validate.name(name)
    concept.name, concept.name_key = clean, name_key(clean)
    try:
        await concept.touch_save()
    except PyMongoError as exc:
        if is_duplicate_key(exc):
            raise _duplicate(clean) from exc
        raise
    return concept


async def delete_concept(principal: Principal, concept_id: str) -> str:
    concept = await get_for(principal, Concept, concept_id, what="concept", roles=MANAGERS)
    if await LabelingTask.find_one({"app_id": concept.app_id, "concept_ids": concept.id}):
        raise Conflict("a labeling task uses this concept", field="id", code=ErrorCode.IN_USE)
    if await Annotation.find_one({"app_id": concept.app_id, "concept_id": concept.id}):
        raise Conflict("annotations use this concept", field="id", code=ErrorCode.IN_USE)
    await concept.delete()
    return concept.id


async def get_concept(principal: Principal, concept_id: str) -> Concept:
    return await get_for(principal, Concept, concept_id, what="concept")


async def list_concepts(
    principal: Principal, app_id: str, args: PageArgs, name_prefix: str | None = None
) -> Page[Concept]:
    await require_app(principal, app_id)
    query: dict[str, object] = {"app_id": app_id}
    if name_prefix:
        import re

        query["name_key"] = {"$regex": "^" + re.escape(name_key(name_prefix))}
    return await paginate(Concept, query, args)


async def concepts_of_app(app_id: str, concept_ids: list[str], field: str) -> list[Concept]:
    """The given concepts, all of ``app_id``, in the given order (NotFound names the first
    missing one with its index)."""
    found = await Concept.find({"_id": {"$in": concept_ids}, "app_id": app_id}).to_list()
    by_id = {c.id: c for c in found}
    for index, cid in enumerate(concept_ids):
        if cid not in by_id:
            raise NotFound("concept", cid, field=f"{field}.{index}")
    return [by_id[cid] for cid in concept_ids]
