"""Computing and storing embeddings (the worker's side; no web framework here).

* ``embed_annotations``: the crop of each region annotation (a polygon's bounding box);
* ``embed_inputs``: each whole image, or each text;
* ``run_backfill``: both for every annotation and input of an app, with progress.

Each vector records its ``source`` (the image's content address and the region), so work
whose source did not change is skipped: re-running a job, or a review that only changed a
status, costs a read. Inputs without bytes yet (a URL not fetched) are left for later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from app.annotations.crops import Box, region_of
from app.annotations.models import Annotation
from app.inputs.models import Input, InputKind
from app.search import embed, store
from app.search.models import Backfill, BackfillStatus, RefKind

log = logging.getLogger("labelstream.search")

CHUNK = 64
JOB = "search_embed"
BACKFILL_JOB = "search_backfill"


def _source(blob_key: str, box: Box | None) -> str:
    return blob_key + ("" if box is None else ":" + ",".join(f"{x:.5f}" for x in box))


async def _blobs(runtime: Any, inputs: dict[str, Input]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for doc in inputs.values():
        if doc.kind == InputKind.IMAGE and doc.blob_key:
            data = await runtime.blobs.get(doc.blob_key)
            if data is not None:
                out[doc.id] = data
    return out


async def embed_annotations(runtime: Any, ids: Sequence[str]) -> int:
    """Embed the region crops of ``ids`` that have a region and a changed source."""
    stored = 0
    for k in range(0, len(ids), CHUNK):
        docs = await Annotation.find({"_id": {"$in": list(ids[k : k + CHUNK])}}).to_list()
        stored += await _embed_annotation_docs(runtime, docs)
    return stored


async def _embed_annotation_docs(runtime: Any, docs: Sequence[Annotation]) -> int:
    regions = {d.id: region_of(d.box, d.polygon) for d in docs}
    docs = [d for d in docs if regions[d.id] is not None]
    if not docs:
        return 0
    inputs = {
        i.id: i for i in await Input.find({"_id": {"$in": sorted({d.input_id for d in docs})}}).to_list()
    }
    model = embed.IMAGE_MODEL.key
    by_app: dict[str, list[Annotation]] = {}
    for d in docs:
        by_app.setdefault(d.app_id, []).append(d)
    todo: list[tuple[Annotation, str]] = []
    for app_id, group in by_app.items():
        have = await store.sources(app_id, model, RefKind.ANNOTATION, [d.id for d in group])
        for d in group:
            source_input = inputs.get(d.input_id)
            if source_input is None or not source_input.blob_key:
                continue
            source = _source(source_input.blob_key, regions[d.id])
            if have.get(d.id) != source:
                todo.append((d, source))
    if not todo:
        return 0
    blobs = await _blobs(runtime, {d.input_id: inputs[d.input_id] for d, _ in todo})
    todo = [(d, s) for d, s in todo if d.input_id in blobs]
    items = [(blobs[d.input_id], regions[d.id]) for d, _ in todo]
    vectors = await asyncio.to_thread(embed.embed_images, items)
    await store.put(
        [
            store.Vector(d.app_id, model, RefKind.ANNOTATION, d.id, d.input_id, source, vec)
            for (d, source), vec in zip(todo, vectors, strict=True)
        ]
    )
    return len(todo)


async def embed_inputs(runtime: Any, ids: Sequence[str]) -> int:
    stored = 0
    for k in range(0, len(ids), CHUNK):
        docs = await Input.find({"_id": {"$in": list(ids[k : k + CHUNK])}}).to_list()
        stored += await _embed_input_docs(runtime, docs)
    return stored


def input_source(doc: Input) -> str | None:
    """What an input's vector is made from: its image's content address, or its text's hash."""
    if doc.kind == InputKind.TEXT:
        return None if doc.text is None else "text:" + hashlib.sha1(doc.text.encode()).hexdigest()
    return doc.blob_key


async def _embed_input_docs(runtime: Any, docs: Sequence[Input]) -> int:
    stored = 0
    for kind, model in ((InputKind.IMAGE, embed.IMAGE_MODEL), (InputKind.TEXT, embed.TEXT_MODEL)):
        group = [d for d in docs if d.kind == kind and input_source(d) is not None]
        todo: list[tuple[Input, str]] = []
        for app_id in sorted({d.app_id for d in group}):
            mine = [d for d in group if d.app_id == app_id]
            have = await store.sources(app_id, model.key, RefKind.INPUT, [d.id for d in mine])
            todo += [(d, s) for d in mine if (s := input_source(d)) is not None and have.get(d.id) != s]
        if not todo:
            continue
        if kind == InputKind.TEXT:
            vectors = await asyncio.to_thread(embed.embed_texts, [d.text or "" for d, _ in todo])
        else:
            blobs = await _blobs(runtime, {d.id: d for d, _ in todo})
            todo = [(d, s) for d, s in todo if d.id in blobs]
            vectors = await asyncio.to_thread(embed.embed_images, [(blobs[d.id], None) for d, _ in todo])
        await store.put(
            [
                store.Vector(d.app_id, model.key, RefKind.INPUT, d.id, d.id, source, vec)
                for (d, source), vec in zip(todo, vectors, strict=True)
            ]
        )
        stored += len(todo)
    return stored


REGION = {"$or": [{"box": {"$ne": None}}, {"polygon": {"$ne": None}}]}


async def run_backfill(runtime: Any, backfill_id: str) -> None:
    """Embed every region annotation and input of the backfill's app, counting progress."""
    backfill = await Backfill.get(backfill_id)
    if backfill is None or backfill.status != BackfillStatus.RUNNING:
        return
    coll = Backfill.get_pymongo_collection()
    try:
        for model, query in (
            (Annotation, {"$and": [{"app_id": backfill.app_id}, REGION]}),
            (Input, {"app_id": backfill.app_id}),
        ):
            after = ""
            while True:
                page = (
                    await model.find({"$and": [query, {"_id": {"$gt": after}}]})  # type: ignore[attr-defined]
                    .sort("_id")
                    .limit(CHUNK)
                    .to_list()
                )
                if not page:
                    break
                after = page[-1].id
                if model is Annotation:
                    await _embed_annotation_docs(runtime, page)
                else:
                    await _embed_input_docs(runtime, page)
                await coll.update_one(
                    {"_id": backfill.id}, {"$inc": {"done": len(page)}, "$currentDate": {"updated_at": True}}
                )
        status, error = BackfillStatus.DONE, None
    except Exception as exc:  # recorded for the caller; the job itself ends
        log.exception("search backfill %s failed", backfill.id)
        status, error = BackfillStatus.FAILED, str(exc)[:500]
    await coll.update_one(
        {"_id": backfill.id},
        {"$set": {"status": status.value, "error": error}, "$currentDate": {"updated_at": True}},
    )
