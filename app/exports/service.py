"""Creating dataset versions (snapshots), deleting them, and reading them back page by page.

``create_version`` copies the dataset's inputs and the annotations that match the filter
(default: ``SUCCESS`` only) in pages of ``PAGE`` inputs, so memory stays bounded whatever the
dataset's size; the version turns READY only when every page is written, and an export refuses
a version that is not READY.

Invariants a READY version keeps until it is deleted:
* its copies are never updated, and every image it names is pinned (``blob_pins``), so its
  exports are the same bytes whatever happens later to the inputs, annotations, concepts or tasks;
* one input never holds the same concept with the same region twice (nor the same whole-image
  label twice), however many tasks labeled it; with ``prefer_task_ids`` an input labeled by
  several tasks holds only the first preferred task's annotations (see ``choose``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from app.access import CONTRIBUTORS, MANAGERS, Principal, get_for
from app.annotations.models import Annotation, AnnotationStatus
from app.annotations.service import AnnotationFilter, filter_query
from app.blob_refs import release_unused
from app.concepts.models import Concept
from app.core import blob_pins, validate
from app.core.blobs import BlobStore
from app.core.errors import ErrorCode, NotFound, ValidationFailed
from app.core.pagination import Page, PageArgs, paginate
from app.datasets.models import Dataset
from app.exports.models import (
    DatasetVersion,
    VersionAnnotation,
    VersionConcept,
    VersionInput,
    VersionStatus,
    input_doc_id,
    pin_owner,
)
from app.inputs.models import Input
from app.tasks.models import LabelingTask

PAGE = 500
MAX_PREFERRED_TASKS = 20
DUPLICATE = "DUPLICATE"
NOT_PREFERRED_TASK = "NOT_PREFERRED_TASK"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _filter_query(app_id: str, filt: AnnotationFilter, input_ids: list[str]) -> dict[str, Any]:
    parts = [filter_query(app_id, filt), {"input_id": {"$in": input_ids}}]
    if not filt.statuses:
        parts.append({"status": AnnotationStatus.SUCCESS.value})
    return {"$and": parts}


async def create_version(
    principal: Principal,
    dataset_id: str,
    filt: AnnotationFilter | None = None,
    description: str = "",
    prefer_task_ids: list[str] | None = None,
) -> DatasetVersion:
    dataset = await get_for(
        principal, Dataset, dataset_id, what="dataset", roles=CONTRIBUTORS, field="datasetId"
    )
    filt = filt or AnnotationFilter()
    filter_query(dataset.app_id, filt)  # validates the filter before anything is written
    prefer = await _preferred_tasks(dataset.app_id, prefer_task_ids or [])
    version = DatasetVersion(
        app_id=dataset.app_id,
        dataset_id=dataset.id,
        description=validate.description(description),
        filter={k: (v.value if hasattr(v, "value") else v) for k, v in asdict(filt).items()},
        created_by=principal.user_id,
    )
    version.filter["statuses"] = [str(s) for s in filt.statuses] or [AnnotationStatus.SUCCESS.value]
    version.filter["prefer_task_ids"] = prefer
    await version.insert()
    seq = inputs_count = annotations_count = 0
    left_out: Counter[str] = Counter()
    concept_ids: set[str] = set()
    async for page in _held_inputs(dataset, version.id):
        seqs: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for doc in page:
            seqs[doc["_id"]] = seq
            rows.append(_input_copy(version.id, seq, doc).model_dump(by_alias=True, mode="python"))
            seq += 1
        if not rows:
            continue
        await VersionInput.get_pymongo_collection().insert_many(rows)
        inputs_count += len(rows)
        found = (
            await Annotation.get_pymongo_collection()
            .find(_filter_query(dataset.app_id, filt, list(seqs)))
            .sort("_id", 1)
            .to_list()
        )
        by_input: dict[str, list[dict[str, Any]]] = {}
        for a in found:
            by_input.setdefault(a["input_id"], []).append(a)
        copies: list[dict[str, Any]] = []
        for input_id, anns in by_input.items():
            kept, dropped = choose(anns, prefer)
            left_out.update(dropped)
            for n, a in enumerate(kept):
                concept_ids.add(a["concept_id"])
                copies.append(_annotation_copy(version.id, seqs[input_id], n, a))
        if copies:
            copies.sort(key=lambda c: c["_id"])
            names = await _names(dataset.app_id, {c["concept_id"] for c in copies})
            for c in copies:
                c["concept_name"] = names.get(c["concept_id"], c["concept_id"])
            await VersionAnnotation.get_pymongo_collection().insert_many(copies)
            annotations_count += len(copies)
    names = await _names(dataset.app_id, concept_ids)
    concepts = sorted(
        (VersionConcept(id=c, name=names.get(c, c)) for c in concept_ids), key=lambda c: (c.name, c.id)
    )
    await DatasetVersion.get_pymongo_collection().update_one(
        {"_id": version.id},
        {
            "$set": {
                "status": VersionStatus.READY.value,
                "concepts": [c.model_dump() for c in concepts],
                "inputs_count": inputs_count,
                "annotations_count": annotations_count,
                "left_out": dict(sorted(left_out.items())),
            },
            "$currentDate": {"updated_at": True},
        },
    )
    fresh = await DatasetVersion.get(version.id)
    assert fresh is not None
    return fresh


async def _preferred_tasks(app_id: str, task_ids: list[str]) -> list[str]:
    """The preferred tasks in order, each a task of the dataset's app (else ``NotFound``)."""
    validate.bounded_list(task_ids, "preferTaskIds", max_items=MAX_PREFERRED_TASKS, allow_empty=True)
    unique = list(dict.fromkeys(task_ids))
    docs = (
        await LabelingTask.get_pymongo_collection()
        .find({"_id": {"$in": unique}, "app_id": app_id}, {"_id": 1})
        .to_list()
    )
    known = {d["_id"] for d in docs}
    for k, task_id in enumerate(task_ids):
        if task_id not in known:
            raise NotFound("labeling task", task_id, field=f"preferTaskIds.{k}")
    return unique


async def _held_inputs(dataset: Dataset, version_id: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The dataset's inputs in ``_id`` order, a page at a time, each page's images pinned.

    The pin comes first and the inputs are then looked up again (``blob_pins``' ordering): an
    input deleted meanwhile either left its image pinned or is not in the page any more, so a
    version never names an image the store has dropped.
    """
    inputs = Input.get_pymongo_collection()
    after = ""
    while True:
        query: dict[str, Any] = {"app_id": dataset.app_id, "dataset_ids": {"$in": [dataset.id]}}
        if after:
            query["_id"] = {"$gt": after}
        page = await inputs.find(query).sort("_id", 1).limit(PAGE).to_list()
        if not page:
            return
        after = page[-1]["_id"]
        await blob_pins.pin(pin_owner(version_id), (d["blob_key"] for d in page if d.get("blob_key")))
        still = await inputs.find({"_id": {"$in": [d["_id"] for d in page]}}, {"_id": 1}).to_list()
        present = {d["_id"] for d in still}
        yield [d for d in page if d["_id"] in present]
        if len(page) < PAGE:
            return


def _input_copy(version_id: str, seq: int, doc: dict[str, Any]) -> VersionInput:
    return VersionInput(
        id=input_doc_id(version_id, seq),
        version_id=version_id,
        seq=seq,
        input_id=doc["_id"],
        kind=doc["kind"],
        blob_key=doc.get("blob_key"),
        content_type=doc.get("content_type"),
        width=doc.get("width"),
        height=doc.get("height"),
        url=doc.get("url"),
        text=doc.get("text"),
        metadata=doc.get("metadata") or {},
    )


def _annotation_copy(version_id: str, seq: int, n: int, a: dict[str, Any]) -> dict[str, Any]:
    return VersionAnnotation(
        id=f"{input_doc_id(version_id, seq)}:{n:04d}",
        version_id=version_id,
        input_id=a["input_id"],
        annotation_id=a["_id"],
        concept_id=a["concept_id"],
        concept_name="",
        box=a.get("box"),
        polygon=a.get("polygon"),
        confidence=float(a.get("confidence", 1.0)),
        text=a.get("text"),
        status=a["status"],
        labeled_by_user_id=a.get("labeled_by_user_id"),
        labeled_by_model_id=a.get("labeled_by_model_id"),
        reviewed_by=a.get("reviewed_by"),
        task_id=a.get("task_id"),
    ).model_dump(by_alias=True, mode="python")


def choose(anns: list[dict[str, Any]], prefer: list[str]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """One input's annotations as a version keeps them (in their given order), and how many it
    left out, by reason.

    * ``prefer`` (task ids, in order): the first of them that labeled the input wins, and the
      annotations of every other task are left out (``NOT_PREFERRED_TASK``); annotations made
      outside any task stay. An input none of them labeled keeps every task's annotations.
    * Then one concept with one region (or with none: a whole-image label) is kept once, as the
      most recently updated copy (a review updates it too); the others are ``DUPLICATE``.
    """
    dropped: Counter[str] = Counter()
    labeled_by = {a.get("task_id") for a in anns}
    winner = next((t for t in prefer if t in labeled_by), None)
    if winner is not None:
        mine = [a for a in anns if a.get("task_id") in (None, winner)]
        if len(mine) < len(anns):
            dropped[NOT_PREFERRED_TASK] = len(anns) - len(mine)
        anns = mine
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for a in anns:
        key = _identity(a)
        if key not in best or _recency(a) > _recency(best[key]):
            best[key] = a
    kept = [a for a in anns if best[_identity(a)] is a]
    if len(kept) < len(anns):
        dropped[DUPLICATE] = len(anns) - len(kept)
    return kept, dropped


def _identity(a: dict[str, Any]) -> tuple[Any, ...]:
    return (a["concept_id"], tuple(a.get("box") or ()), tuple(a.get("polygon") or ()))


def _recency(a: dict[str, Any]) -> tuple[datetime, str]:
    when = a.get("updated_at")
    if isinstance(when, str):  # a date some engine stored as text (MONGODB.md)
        when = datetime.fromisoformat(when)
    if not isinstance(when, datetime):
        when = _EPOCH
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when, str(a["_id"])


async def _names(app_id: str, concept_ids: set[str]) -> dict[str, str]:
    docs = (
        await Concept.get_pymongo_collection()
        .find({"_id": {"$in": sorted(concept_ids)}, "app_id": app_id}, {"name": 1})
        .to_list()
    )
    return {d["_id"]: d["name"] for d in docs}


async def get_version(principal: Principal, version_id: str, *, ready: bool = False) -> DatasetVersion:
    version = await get_for(principal, DatasetVersion, version_id, what="dataset version")
    if ready and version.status is not VersionStatus.READY:
        raise ValidationFailed(
            "the version is still being built", field="id", code=ErrorCode.VERSION_NOT_READY
        )
    return version


async def list_versions(principal: Principal, dataset_id: str, args: PageArgs) -> Page[DatasetVersion]:
    dataset = await get_for(principal, Dataset, dataset_id, what="dataset", field="datasetId")
    return await paginate(DatasetVersion, {"dataset_id": dataset.id}, args)


async def delete_version(principal: Principal, version_id: str, blobs: BlobStore) -> str:
    """Delete the version, then each image it held that no input and no other pin still names."""
    version = await get_for(principal, DatasetVersion, version_id, what="dataset version", roles=MANAGERS)
    await version.delete()
    prefix = {"version_id": version.id}
    await VersionInput.get_pymongo_collection().delete_many(prefix)
    await VersionAnnotation.get_pymongo_collection().delete_many(prefix)
    async for keys in blob_pins.unpin(pin_owner(version.id)):
        await release_unused(blobs, keys)
    return version.id


@dataclass
class VersionPage:
    inputs: list[VersionInput]
    annotations: dict[str, list[VersionAnnotation]]  # by input id


async def pages(
    version: DatasetVersion, size: int = PAGE, *, with_annotations: bool = True
) -> AsyncIterator[VersionPage]:
    """The version's inputs in order, with their annotations, ``size`` inputs at a time."""
    # ranges of _id only (ids start with the version id): the primary key answers them, where
    # a version_id filter would make nx-27017 scan the version's documents for every page
    after = version.id + ":"
    while True:
        query: dict[str, Any] = {"_id": {"$gt": after, "$lt": version.id + ";"}}
        raw = await VersionInput.get_pymongo_collection().find(query).sort("_id", 1).limit(size).to_list()
        if not raw:
            return
        inputs = [VersionInput.model_validate(r) for r in raw]
        by_input: dict[str, list[VersionAnnotation]] = {i.input_id: [] for i in inputs}
        if with_annotations:
            lo, hi = inputs[0].id + ":", inputs[-1].id + ";"  # ';' sorts right after ':'
            docs = (
                await VersionAnnotation.get_pymongo_collection()
                .find({"_id": {"$gte": lo, "$lt": hi}})
                .sort("_id", 1)
                .to_list()
            )
            for d in docs:
                by_input.setdefault(d["input_id"], []).append(VersionAnnotation.model_validate(d))
        yield VersionPage(inputs, by_input)
        if len(raw) < size:
            return
        after = raw[-1]["_id"]
