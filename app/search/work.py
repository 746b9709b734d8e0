"""Computing and storing embeddings (the worker's side; no web framework here).

* ``embed_annotations``: the crop of each region annotation (a polygon's bounding box);
* ``embed_inputs``: each whole image, or each text;
* ``embed_pending``: both for the ids waiting in Redis (``app.search.pending``), once the
  labeling tasks' batches are done;
* ``run_backfill``: both for every annotation and input of an app, with progress.

Ids are read ``READ`` at a time (only the fields needed); images are embedded ``CHUNK`` at a
time (their bytes fetched for that many), texts all at once.

Each vector records its ``source`` (the image's content address and the region), so work
whose source did not change is skipped: re-running a job, or a review that only changed a
status, costs a read. Inputs without bytes yet (a URL not fetched) are left for later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.annotations.crops import Box, region_of
from app.annotations.models import Annotation
from app.core.db import one_reply
from app.inputs.models import Input, InputKind
from app.search import embed, pending, store
from app.search.models import Backfill, BackfillStatus, RefKind

log = logging.getLogger("labelstream.search")

CHUNK = 64
READ = 500
JOB = pending.JOB
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


class Region(Protocol):
    """What embedding a region reads of an annotation (a document, or a projection of one)."""

    @property
    def id(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def input_id(self) -> str: ...
    @property
    def box(self) -> list[float] | None: ...
    @property
    def polygon(self) -> list[float] | None: ...


@dataclass(frozen=True)
class RegionRow:
    id: str
    app_id: str
    input_id: str
    box: list[float] | None
    polygon: list[float] | None


REGION_FIELDS = {"app_id": 1, "input_id": 1, "box": 1, "polygon": 1}


async def embed_annotations(runtime: Any, ids: Sequence[str]) -> int:
    """Embed the region crops of ``ids`` that have a region and a changed source."""
    stored = 0
    for k in range(0, len(ids), READ):
        chunk = {"_id": {"$in": list(ids[k : k + READ])}}
        rows = await Annotation.get_pymongo_collection().find(chunk, REGION_FIELDS).to_list()
        regions = [
            RegionRow(r["_id"], r["app_id"], r["input_id"], r.get("box"), r.get("polygon"))
            for r in rows
            if region_of(r.get("box"), r.get("polygon")) is not None
        ]
        for j in range(0, len(regions), CHUNK):
            stored += await _embed_annotation_docs(runtime, regions[j : j + CHUNK])
    return stored


async def _embed_annotation_docs(runtime: Any, docs: Sequence[Region]) -> int:
    regions = {d.id: region_of(d.box, d.polygon) for d in docs}
    docs = [d for d in docs if regions[d.id] is not None]
    if not docs:
        return 0
    inputs = {
        i.id: i for i in await Input.find({"_id": {"$in": sorted({d.input_id for d in docs})}}).to_list()
    }
    model = embed.IMAGE_MODEL.key
    by_app: dict[str, list[Region]] = {}
    for d in docs:
        by_app.setdefault(d.app_id, []).append(d)
    todo: list[tuple[Region, str]] = []
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
    for k in range(0, len(ids), READ):
        chunk = {"_id": {"$in": list(ids[k : k + READ])}}
        docs = await Input.find(chunk, batch_size=one_reply(READ)).to_list()
        stored += await _embed_input_docs(runtime, docs)
    return stored


async def embed_pending(runtime: Any) -> dict[str, int]:
    """Embed the waiting ids, ``pending.TAKE`` of each kind at a time, unless task batches are
    waiting or running (then the job is put back: ``pending.should_wait``). Ids taken and not
    embedded because of an error go back to wait."""
    redis = runtime.redis
    done = {"annotations": 0, "inputs": 0, "deferred": 0}
    if await pending.should_wait(runtime):
        done["deferred"] = 1
        return done
    while True:
        annotation_ids = await pending.take(redis, pending.ANNOTATIONS)
        input_ids = await pending.take(redis, pending.INPUTS)
        if not (annotation_ids or input_ids):
            break
        try:
            done["annotations"] += await embed_annotations(runtime, annotation_ids)
            done["inputs"] += await embed_inputs(runtime, input_ids)
        except BaseException:
            await pending.put_back(redis, annotation_ids, input_ids)
            raise
        if await pending.should_wait(runtime):  # a task started meanwhile: it goes first
            done["deferred"] = 1
            return done
    await pending.done_if_empty(redis)
    return done


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
        if kind == InputKind.TEXT and todo:
            vectors = await asyncio.to_thread(embed.embed_texts, [d.text or "" for d, _ in todo])
            await _put_inputs(model, todo, vectors)
            stored += len(todo)
            continue
        for k in range(0, len(todo), CHUNK):  # image bytes fetched and decoded CHUNK at a time
            part = todo[k : k + CHUNK]
            blobs = await _blobs(runtime, {d.id: d for d, _ in part})
            part = [(d, s) for d, s in part if d.id in blobs]
            items = [(blobs[d.id], None) for d, _ in part]
            del blobs
            vectors = await asyncio.to_thread(embed.embed_images, items)
            await _put_inputs(model, part, vectors)
            stored += len(part)
    return stored


async def _put_inputs(model: embed.EmbeddingModel, todo: Sequence[tuple[Input, str]], vectors: Any) -> None:
    await store.put(
        [
            store.Vector(d.app_id, model.key, RefKind.INPUT, d.id, d.id, source, vec)
            for (d, source), vec in zip(todo, vectors, strict=True)
        ]
    )


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
