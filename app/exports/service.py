"""Creating dataset versions (snapshots) and reading them back page by page.

``create_version`` copies the dataset's inputs and the annotations that match the filter
(default: ``SUCCESS`` only) in pages of ``PAGE`` inputs, so memory stays bounded whatever the
dataset's size; the version turns READY only when every page is written, and an export refuses
a version that is not READY.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from app.annotations.models import Annotation, AnnotationStatus
from app.annotations.service import AnnotationFilter, filter_query
from app.concepts.models import Concept
from app.core import validate
from app.core.auth import CONTRIBUTORS, MANAGERS, Principal, get_for
from app.core.errors import ErrorCode, ValidationFailed
from app.core.pagination import Page, PageArgs, paginate
from app.datasets.models import Dataset
from app.exports.models import (
    DatasetVersion,
    VersionAnnotation,
    VersionConcept,
    VersionInput,
    VersionStatus,
    input_doc_id,
)
from app.inputs.models import Input

PAGE = 500


def _filter_query(app_id: str, filt: AnnotationFilter, input_ids: list[str]) -> dict[str, Any]:
    parts = [filter_query(app_id, filt), {"input_id": {"$in": input_ids}}]
    if not filt.statuses:
        parts.append({"status": AnnotationStatus.SUCCESS.value})
    return {"$and": parts}


async def create_version(
    principal: Principal, dataset_id: str, filt: AnnotationFilter | None = None, description: str = ""
) -> DatasetVersion:
    dataset = await get_for(
        principal, Dataset, dataset_id, what="dataset", roles=CONTRIBUTORS, field="datasetId"
    )
    filt = filt or AnnotationFilter()
    filter_query(dataset.app_id, filt)  # validates the filter before anything is written
    version = DatasetVersion(
        app_id=dataset.app_id,
        dataset_id=dataset.id,
        description=validate.description(description),
        filter={k: (v.value if hasattr(v, "value") else v) for k, v in asdict(filt).items()},
        created_by=principal.user_id,
    )
    version.filter["statuses"] = [str(s) for s in filt.statuses] or [AnnotationStatus.SUCCESS.value]
    await version.insert()
    seq = inputs_count = annotations_count = 0
    concept_ids: set[str] = set()
    after = ""
    inputs = Input.get_pymongo_collection()
    while True:
        query: dict[str, Any] = {"app_id": dataset.app_id, "dataset_ids": {"$in": [dataset.id]}}
        if after:
            query["_id"] = {"$gt": after}
        page = await inputs.find(query).sort("_id", 1).limit(PAGE).to_list()
        if not page:
            break
        after = page[-1]["_id"]
        seqs: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for doc in page:
            seqs[doc["_id"]] = seq
            rows.append(
                VersionInput(
                    id=input_doc_id(version.id, seq),
                    version_id=version.id,
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
                ).model_dump(by_alias=True, mode="python")
            )
            seq += 1
        await VersionInput.get_pymongo_collection().insert_many(rows)
        inputs_count += len(rows)
        anns = (
            await Annotation.get_pymongo_collection()
            .find(_filter_query(dataset.app_id, filt, list(seqs)))
            .sort("_id", 1)
            .to_list()
        )
        counters: dict[str, int] = {}
        copies: list[dict[str, Any]] = []
        for a in anns:
            n = counters.get(a["input_id"], 0)
            counters[a["input_id"]] = n + 1
            concept_ids.add(a["concept_id"])
            copies.append(
                VersionAnnotation(
                    id=f"{input_doc_id(version.id, seqs[a['input_id']])}:{n:04d}",
                    version_id=version.id,
                    input_id=a["input_id"],
                    annotation_id=a["_id"],
                    concept_id=a["concept_id"],
                    concept_name="",
                    box=a.get("box"),
                    polygon=a.get("polygon"),
                    confidence=float(a.get("confidence", 1.0)),
                    status=a["status"],
                    labeled_by_user_id=a.get("labeled_by_user_id"),
                    labeled_by_model_id=a.get("labeled_by_model_id"),
                    reviewed_by=a.get("reviewed_by"),
                    task_id=a.get("task_id"),
                ).model_dump(by_alias=True, mode="python")
            )
        if copies:
            names = await _names(dataset.app_id, {c["concept_id"] for c in copies})
            for c in copies:
                c["concept_name"] = names.get(c["concept_id"], c["concept_id"])
            await VersionAnnotation.get_pymongo_collection().insert_many(copies)
            annotations_count += len(copies)
        if len(page) < PAGE:
            break
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
            },
            "$currentDate": {"updated_at": True},
        },
    )
    fresh = await DatasetVersion.get(version.id)
    assert fresh is not None
    return fresh


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


async def delete_version(principal: Principal, version_id: str) -> str:
    version = await get_for(principal, DatasetVersion, version_id, what="dataset version", roles=MANAGERS)
    await version.delete()
    prefix = {"version_id": version.id}
    await VersionInput.get_pymongo_collection().delete_many(prefix)
    await VersionAnnotation.get_pymongo_collection().delete_many(prefix)
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
