"""Running a labeling task over a batch of inputs (what one arq job does).

    load task + inputs  ->  skip inputs already DONE (a re-run changes nothing)
    fetch / decode       ->  failures become FAILED task inputs with a code, never a failed task
    predict              ->  each model of the model/workflow, in a thread (off the event loop)
    store predictions    ->  deterministic ids: the same prediction is written again, not added
    route + annotate     ->  per-concept or global ThresholdRange; upsert by a unique key;
                             annotations a person already reviewed are never touched
    count + publish      ->  $inc on the task's metrics, an event on Redis; the last batch
                             recounts the metrics from the documents and closes the task

Nothing here imports GraphQL; ``app.tasks.jobs`` wraps these functions for arq.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from app.annotations.models import Annotation, AnnotationStatus
from app.concepts.models import Concept
from app.core import pubsub
from app.core.documents import utcnow
from app.core.runtime import Runtime
from app.inputs.models import Input, InputKind, InputStatus
from app.models.adapters import AdapterInput, Box, Polygon, get_adapter
from app.models.adapters import Prediction as RawPrediction
from app.models.models import ModelEntry, Workflow
from app.predictions.models import Prediction
from app.review import queue as review_queue
from app.tasks.fetch import FetchFailed, fetch_image
from app.tasks.models import InputState, LabelingTask, TaskInput, TaskStatus
from app.tasks.routing import Route, Router, build_router

log = logging.getLogger("labelstream.engine")

ACTIVE = (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS, TaskStatus.IDLE)
# Annotations the engine may rewrite; anything else was decided by a person.
MACHINE_STATUSES = (AnnotationStatus.SUCCESS, AnnotationStatus.AWAITING_REVIEW)


class InputFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Loaded:
    """An input ready for the models: a text, or image bytes decoded just before predicting."""

    doc: Input
    adapter_input: AdapterInput | None = None
    raw: bytes | None = None


@dataclass
class Outcome:
    """What one input contributed: counts, and the writes that record it."""

    approved: int = 0
    awaiting_review: int = 0
    discarded: int = 0


@dataclass
class BatchResult:
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    outcomes: dict[str, Outcome] = field(default_factory=dict)


def task_input_id(task_id: str, input_id: str) -> str:
    return f"{task_id}:{input_id}"


def region_key(box: Sequence[float] | None, polygon: Sequence[float] | None) -> str:
    """Identifies a region across runs: coordinates rounded to 1e-4 of the image."""
    if box is not None:
        return "b:" + ",".join(f"{v:.4f}" for v in box)
    if polygon is not None:
        digest = hashlib.sha1(",".join(f"{v:.4f}" for v in polygon).encode()).hexdigest()
        return "p:" + digest[:16]
    return ""


def annotation_key(task_id: str, input_id: str, concept_id: str, region: str) -> str:
    return f"{task_id}|{input_id}|{concept_id}|{region}"


def _flat_region(region: Box | Polygon | None) -> tuple[list[float] | None, list[float] | None]:
    if isinstance(region, Box):
        return [region.top, region.left, region.bottom, region.right], None
    if isinstance(region, Polygon):
        return None, [coord for point in region.points for coord in point]
    return None, None


# ---------------------------------------------------------------------------------------------
# loading


def _decode(data: bytes, max_pixels: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > max_pixels:
            raise InputFailure("TOO_LARGE", f"image has {img.width * img.height} pixels")
        return np.asarray(img.convert("RGB"))


async def _load_one(runtime: Runtime, doc: Input) -> Loaded:
    settings = runtime.settings
    if doc.kind == InputKind.TEXT:
        return Loaded(doc, AdapterInput(text=doc.text or ""))
    data: bytes | None
    if doc.blob_key is None and doc.url:
        try:
            data, info = await fetch_image(doc.url, settings)
        except FetchFailed as exc:
            await Input.get_pymongo_collection().update_one(
                {"_id": doc.id}, {"$set": {"status": InputStatus.FETCH_FAILED.value}}
            )
            raise InputFailure(exc.code, exc.message) from exc
        key = await runtime.blobs.put(data)
        await Input.get_pymongo_collection().update_one(
            {"_id": doc.id},
            {
                "$set": {
                    "blob_key": key,
                    "status": InputStatus.READY.value,
                    "width": info.width,
                    "height": info.height,
                    "content_type": info.content_type,
                    "size_bytes": info.size_bytes,
                },
                "$currentDate": {"updated_at": True},
            },
        )
    else:
        data = await runtime.blobs.get(doc.blob_key) if doc.blob_key else None
        if data is None:
            raise InputFailure("INPUT_MISSING", "the input's image bytes are missing")
    return Loaded(doc, raw=data)


async def load_inputs(
    runtime: Runtime, task: LabelingTask, input_ids: Sequence[str]
) -> tuple[list[Loaded], dict[str, InputFailure]]:
    docs = await Input.find({"_id": {"$in": list(input_ids)}, "app_id": task.app_id}).to_list()
    by_id = {d.id: d for d in docs}
    failures: dict[str, InputFailure] = {}
    loaded: list[Loaded] = []
    for input_id in input_ids:
        doc = by_id.get(input_id)
        if doc is None:
            failures[input_id] = InputFailure("INPUT_MISSING", "the input no longer exists")
            continue
        try:
            loaded.append(await _load_one(runtime, doc))
        except InputFailure as exc:
            failures[input_id] = exc
    return loaded, failures


def decode_all(loaded: Sequence[Loaded], max_pixels: int) -> tuple[list[Loaded], dict[str, InputFailure]]:
    """Decode the images (CPU-bound: called in a thread, right before the model runs)."""
    ready: list[Loaded] = []
    failures: dict[str, InputFailure] = {}
    for item in loaded:
        if item.raw is None:
            ready.append(item)
            continue
        try:
            array = _decode(item.raw, max_pixels)
        except InputFailure as exc:
            failures[item.doc.id] = exc
            continue
        except Exception as exc:  # Pillow raises many types for corrupt data
            failures[item.doc.id] = InputFailure("IMAGE_UNDECODABLE", f"cannot decode the image: {exc}")
            continue
        ready.append(Loaded(item.doc, AdapterInput(image=array)))
    return ready, failures


# ---------------------------------------------------------------------------------------------
# prediction


@dataclass(frozen=True)
class RunModel:
    """What a job needs of a model entry: not its (possibly 1,000) concepts as pydantic objects."""

    id: str
    kind: str
    adapter: str
    config: dict[str, Any]
    zero_shot: bool
    concept_names: dict[str, str]


_models_of_run: dict[tuple[str, int], list[RunModel]] = {}


async def task_models(task: LabelingTask) -> list[RunModel]:
    """The task's models, read once per run and worker process (a run uses one configuration)."""
    key = (task.id, task.run)
    cached = _models_of_run.get(key)
    if cached is None:
        if len(_models_of_run) > 256:
            _models_of_run.clear()
        cached = _models_of_run[key] = await _load_models(task)
    return cached


async def _load_models(task: LabelingTask) -> list[RunModel]:
    if task.model_id:
        ids = [task.model_id]
    else:
        workflow = await Workflow.get(task.workflow_id or "")
        ids = list(workflow.model_ids) if workflow else []
    docs = (
        await ModelEntry.get_pymongo_collection().find({"_id": {"$in": ids}, "app_id": task.app_id}).to_list()
    )
    by_id = {
        d["_id"]: RunModel(
            id=d["_id"],
            kind=d["kind"],
            adapter=d["adapter"],
            config=d.get("config") or {},
            zero_shot=bool(d.get("zero_shot")),
            concept_names={c["id"]: c["name"] for c in d.get("concepts") or []},
        )
        for d in docs
    }
    return [by_id[i] for i in ids if i in by_id]


_inference_locks: dict[int, asyncio.Lock] = {}


def _inference_lock() -> asyncio.Lock:
    """One model call at a time per process: onnxruntime already uses every core for one batch,
    so two at once only fight over the CPU while the other job's I/O could run instead."""
    loop_id = id(asyncio.get_running_loop())
    lock = _inference_locks.get(loop_id)
    if lock is None:
        lock = _inference_locks[loop_id] = asyncio.Lock()
    return lock


def _accepts(model: RunModel, item: AdapterInput | None) -> bool:
    if item is None:
        return False
    wants_text = model.kind == "TEXT_CLASSIFIER"
    return (item.text is not None) if wants_text else (item.image is not None)


async def predict(
    models: Sequence[RunModel], loaded: Sequence[Loaded], concept_names: Sequence[str]
) -> tuple[dict[str, list[tuple[RunModel, RawPrediction]]], dict[str, InputFailure]]:
    """Every model over the inputs it can read; outputs merged per input (workflows)."""
    merged: dict[str, list[tuple[RunModel, RawPrediction]]] = {x.doc.id: [] for x in loaded}
    served: set[str] = set()
    for model in models:
        batch = [x for x in loaded if _accepts(model, x.adapter_input)]
        if not batch:
            continue
        adapter = get_adapter(model.adapter, model.config)
        names = list(concept_names) if model.zero_shot else None
        items = [x.adapter_input for x in batch if x.adapter_input is not None]
        outputs = await asyncio.to_thread(adapter.predict, items, names)
        for item, preds in zip(batch, outputs, strict=True):
            served.add(item.doc.id)
            merged[item.doc.id].extend((model, p) for p in preds)
    failures = {
        x.doc.id: InputFailure(
            "UNSUPPORTED_INPUT", f"no model of this task reads {x.doc.kind.value.lower()} inputs"
        )
        for x in loaded
        if x.doc.id not in served
    }
    for input_id in failures:
        merged.pop(input_id, None)
    return merged, failures


# ---------------------------------------------------------------------------------------------
# writing


def prediction_docs(
    task: LabelingTask,
    input_id: str,
    outputs: Iterable[tuple[RunModel, RawPrediction]],
    router: Router,
) -> list[Prediction]:
    docs: list[Prediction] = []
    now = utcnow()
    for model, raw in outputs:
        box, polygon = _flat_region(raw.region)
        rkey = region_key(box, polygon)
        name = model.concept_names.get(raw.concept) or str(raw.extra.get("name", raw.concept))
        docs.append(
            # model_construct: these are built by the thousand on the hot path, from values
            # that are already the right types, so pydantic validation would only cost time
            Prediction.model_construct(
                id=f"{task.id}:{input_id}:{model.id}:{raw.concept}:{rkey}",
                created_at=now,
                updated_at=now,
                app_id=task.app_id,
                task_id=task.id,
                input_id=input_id,
                model_id=model.id,
                model_concept_id=raw.concept,
                model_concept_name=name,
                concept_id=router.concept_for(raw.concept, name),
                confidence=float(raw.confidence),
                box=box,
                polygon=polygon,
                region_key=rkey,
                extra={k: v for k, v in raw.extra.items() if isinstance(v, str | int | float)},
            )
        )
    return docs


@dataclass
class Candidate:
    """The best prediction for one (input, task concept, region)."""

    prediction: Prediction
    route: Route


def candidates(predictions: Iterable[Prediction], router: Router) -> dict[str, Candidate]:
    """Keyed by annotation key; many-to-one mapping keeps the most confident prediction."""
    best: dict[str, Candidate] = {}
    for p in predictions:
        if p.concept_id is None:
            continue
        key = annotation_key(p.task_id, p.input_id, p.concept_id, p.region_key)
        current = best.get(key)
        if current is None or p.confidence > current.prediction.confidence:
            best[key] = Candidate(p, router.route(p.concept_id, p.confidence))
    return best


async def write_annotations(
    task: LabelingTask,
    input_docs: dict[str, Input],
    chosen: dict[str, Candidate],
    input_ids: Sequence[str],
) -> dict[str, Outcome]:
    """Make the task's machine annotations on ``input_ids`` equal ``chosen``.

    Existing annotations are matched by key; ones a person reviewed are left alone.
    """
    existing = await Annotation.find({"task_id": task.id, "input_id": {"$in": list(input_ids)}}).to_list()
    by_key = {a.key: a for a in existing}
    outcomes = {i: Outcome() for i in input_ids}
    ops: list[Any] = []
    now = utcnow()
    for key, cand in chosen.items():
        p = cand.prediction
        outcome = outcomes[p.input_id]
        current = by_key.get(key)
        if current is not None and current.status not in MACHINE_STATUSES:
            continue  # reviewed or sent back by a person: theirs now
        if cand.route is Route.DISCARD:
            outcome.discarded += 1
            if current is not None and current.reviewed_by is None:
                ops.append(DeleteOne({"_id": current.id}))
            continue
        status = AnnotationStatus.SUCCESS if cand.route is Route.APPROVE else AnnotationStatus.AWAITING_REVIEW
        if status is AnnotationStatus.SUCCESS:
            outcome.approved += 1
        else:
            outcome.awaiting_review += 1
        if current is not None:
            if current.reviewed_by is None:
                ops.append(
                    UpdateOne(
                        {"_id": current.id},
                        {
                            "$set": {
                                "status": status.value,
                                "confidence": p.confidence,
                                "labeled_by_model_id": p.model_id,
                            },
                            "$currentDate": {"updated_at": True},
                        },
                    )
                )
            continue
        source = input_docs.get(p.input_id)
        # model_construct: every field gets its default (all are written, MONGODB.md rule 8)
        # without validating values that are already the right types
        doc = Annotation.model_construct(
            app_id=task.app_id,
            input_id=p.input_id,
            concept_id=p.concept_id or "",
            dataset_ids=list(source.dataset_ids) if source else [],
            box=p.box,
            polygon=p.polygon,
            confidence=p.confidence,
            status=status,
            labeled_by_model_id=p.model_id,
            task_id=task.id,
            key=key,
            created_at=now,
            updated_at=now,
        )
        ops.append(InsertOne(doc.model_dump(by_alias=True, mode="python")))
    # machine annotations of these inputs that no prediction supports any more
    for key, current in by_key.items():
        if key not in chosen and current.status in MACHINE_STATUSES and current.reviewed_by is None:
            if current.labeled_by_model_id is not None:
                ops.append(DeleteOne({"_id": current.id}))
    await _bulk(Annotation, ops)
    return outcomes


async def _bulk(model: Any, ops: list[Any]) -> None:
    """Unordered bulk write; a duplicate key means a concurrent run wrote the same thing."""
    if not ops:
        return
    try:
        await model.get_pymongo_collection().bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise


PREDICTION_FIELDS = (
    "app_id", "task_id", "input_id", "model_id", "model_concept_id", "model_concept_name", "concept_id",
    "confidence", "box", "polygon", "region_key", "extra", "created_at", "updated_at",
)  # fmt: skip


async def write_predictions(predictions: Sequence[Prediction]) -> None:
    """Insert; a prediction that exists already (same deterministic id: a re-run of the same
    model on the same input) is a duplicate-key error that is ignored."""
    if not predictions:
        return
    docs = [{"_id": p.id, **{f: getattr(p, f) for f in PREDICTION_FIELDS}} for p in predictions]
    try:
        await Prediction.get_pymongo_collection().insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
            raise


# ---------------------------------------------------------------------------------------------
# state and metrics


async def create_pending(task: LabelingTask, input_ids: Sequence[str]) -> None:
    """A PENDING TaskInput per input of a run (existing ones are left as they are)."""
    now = utcnow()
    for k in range(0, len(input_ids), 1000):
        docs = [
            {
                "_id": task_input_id(task.id, i), "app_id": task.app_id, "task_id": task.id, "input_id": i,
                "state": InputState.PENDING.value, "code": None, "message": None, "attempts": 0,
                "approved": 0, "awaiting_review": 0, "discarded": 0, "created_at": now, "updated_at": now,
            }
            for i in input_ids[k : k + 1000]
        ]  # fmt: skip
        try:
            await TaskInput.get_pymongo_collection().insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise


async def _pending(task: LabelingTask, input_ids: Sequence[str], retry: bool) -> tuple[list[str], set[str]]:
    """The inputs this job still has to do, and which of them had failed before (one query)."""
    ids = [task_input_id(task.id, i) for i in input_ids]
    states = (
        await TaskInput.get_pymongo_collection()
        .find({"_id": {"$in": ids}}, {"input_id": 1, "state": 1})
        .to_list()
    )
    done = {s["input_id"] for s in states if s["state"] == InputState.DONE.value}
    failed = {s["input_id"] for s in states if s["state"] == InputState.FAILED.value}
    skip = done | (set() if retry else failed)
    return [i for i in input_ids if i not in skip], failed - skip


async def _record(
    task: LabelingTask,
    outcomes: dict[str, Outcome],
    failures: dict[str, InputFailure],
    previously_failed: set[str],
) -> None:
    ops: list[Any] = []
    for input_id, out in outcomes.items():
        ops.append(
            UpdateOne(
                {"_id": task_input_id(task.id, input_id)},
                {
                    "$set": {
                        "state": InputState.DONE.value,
                        "code": None,
                        "message": None,
                        "approved": out.approved,
                        "awaiting_review": out.awaiting_review,
                        "discarded": out.discarded,
                        "app_id": task.app_id,
                        "task_id": task.id,
                        "input_id": input_id,
                    },
                    "$inc": {"attempts": 1},
                    "$currentDate": {"updated_at": True},
                    "$setOnInsert": {"created_at": utcnow()},
                },
                upsert=True,
            )
        )
    for input_id, failure in failures.items():
        ops.append(
            UpdateOne(
                {"_id": task_input_id(task.id, input_id)},
                {
                    "$set": {
                        "state": InputState.FAILED.value,
                        "code": failure.code,
                        "message": failure.message[:500],
                        "approved": 0,
                        "awaiting_review": 0,
                        "discarded": 0,
                        "app_id": task.app_id,
                        "task_id": task.id,
                        "input_id": input_id,
                    },
                    "$inc": {"attempts": 1},
                    "$currentDate": {"updated_at": True},
                    "$setOnInsert": {"created_at": utcnow()},
                },
                upsert=True,
            )
        )
    await _bulk(TaskInput, ops)
    newly_failed = len(set(failures) - previously_failed)
    recovered = len(set(outcomes) & previously_failed)
    inc = {
        "metrics.inputs_processed": len(outcomes),
        "metrics.inputs_failed": newly_failed - recovered,
        "metrics.annotations_approved": sum(o.approved for o in outcomes.values()),
        "metrics.annotations_awaiting_review": sum(o.awaiting_review for o in outcomes.values()),
        "metrics.annotations_discarded": sum(o.discarded for o in outcomes.values()),
    }
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id}, {"$inc": inc, "$currentDate": {"updated_at": True}}
    )


async def recount(task_id: str) -> dict[str, int]:
    """The task's metrics recomputed from its documents (exact, whatever happened before)."""
    states = (
        await TaskInput.get_pymongo_collection()
        .find(
            {"task_id": task_id},
            {"state": 1, "approved": 1, "awaiting_review": 1, "discarded": 1},
        )
        .to_list()
    )
    annotations = (
        await Annotation.get_pymongo_collection().find({"task_id": task_id}, {"status": 1}).to_list()
    )
    by_status: dict[str, int] = {}
    for a in annotations:
        by_status[a["status"]] = by_status.get(a["status"], 0) + 1
    return {
        "metrics.inputs_processed": sum(1 for s in states if s["state"] == InputState.DONE.value),
        "metrics.inputs_failed": sum(1 for s in states if s["state"] == InputState.FAILED.value),
        "metrics.annotations_approved": by_status.get(AnnotationStatus.SUCCESS.value, 0),
        "metrics.annotations_awaiting_review": by_status.get(AnnotationStatus.AWAITING_REVIEW.value, 0),
        "metrics.annotations_discarded": sum(int(s.get("discarded") or 0) for s in states),
    }


async def finish_if_complete(
    runtime: Runtime, task_id: str, *, force_recount: bool = False
) -> LabelingTask | None:
    """Close the task when none of its inputs is PENDING any more.

    Every input of a run gets a PENDING TaskInput when the run starts, so "is the task done?"
    is one indexed look-up, exact whatever happened to the running ``$inc`` counters (a crash
    between two writes, a repeated job, or an engine that loses concurrent increments, like
    FerretDB 1.24). Closing recounts the metrics from the documents. ``force_recount`` also
    refreshes the counters of a task that is not finished yet.
    """
    task = await LabelingTask.get(task_id)
    if task is None or task.status not in (TaskStatus.IN_PROGRESS, TaskStatus.QUEUED):
        return task
    waiting = await TaskInput.get_pymongo_collection().find_one(
        {"task_id": task_id, "state": InputState.PENDING.value}, {"_id": 1}
    )
    if waiting is not None and not force_recount:
        return task
    counts = await recount(task_id)
    update: dict[str, Any] = {"$set": counts, "$currentDate": {"updated_at": True}}
    if waiting is None:
        final = TaskStatus.IDLE if task.watch_dataset else TaskStatus.DONE
        update["$set"] = {**counts, "status": final.value}
    await LabelingTask.get_pymongo_collection().update_one(
        {
            "_id": task_id,
            "status": {"$in": [TaskStatus.IN_PROGRESS.value, TaskStatus.QUEUED.value]},
        },
        update,
    )
    return await LabelingTask.get(task_id)


def progress_payload(task: LabelingTask) -> dict[str, Any]:
    m = task.metrics
    return {
        "status": task.status.value,
        "metrics": {
            "inputsTotal": m.inputs_total,
            "inputsProcessed": m.inputs_processed,
            "inputsFailed": m.inputs_failed,
            "annotationsApproved": m.annotations_approved,
            "annotationsAwaitingReview": m.annotations_awaiting_review,
            "annotationsDiscarded": m.annotations_discarded,
            "labelingPercent": labeling_percent(task),
        },
    }


def labeling_percent(task: LabelingTask) -> float:
    m = task.metrics
    if m.inputs_total <= 0:
        return 100.0 if task.status in (TaskStatus.DONE, TaskStatus.IDLE) else 0.0
    return round(min(100.0, 100.0 * (m.inputs_processed + m.inputs_failed) / m.inputs_total), 2)


async def publish_progress(runtime: Runtime, task: LabelingTask) -> None:
    await pubsub.publish_task(runtime.redis, task.app_id, task.id, progress_payload(task))


# ---------------------------------------------------------------------------------------------
# the job


async def task_concepts(task: LabelingTask) -> list[Concept]:
    docs = await Concept.find({"_id": {"$in": task.concept_ids}, "app_id": task.app_id}).to_list()
    by_id = {c.id: c for c in docs}
    return [by_id[c] for c in task.concept_ids if c in by_id]


async def run_batch(
    runtime: Runtime, task_id: str, input_ids: Sequence[str], *, run: int, retry: bool = False
) -> BatchResult:
    result = BatchResult()
    task = await LabelingTask.get(task_id)
    if task is None or task.status not in ACTIVE or task.run != run:
        result.skipped = len(input_ids)
        return result  # deleted, cancelled, or superseded by a newer start
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id, "status": TaskStatus.QUEUED.value},
        {"$set": {"status": TaskStatus.IN_PROGRESS.value}, "$currentDate": {"updated_at": True}},
    )
    pending, previously_failed = await _pending(task, input_ids, retry)
    result.skipped = len(input_ids) - len(pending)
    if pending:
        concepts = await task_concepts(task)
        router = build_router(task, [(c.id, c.name) for c in concepts])
        models = await task_models(task)
        loaded, failures = await load_inputs(runtime, task, pending)
        # Decoding and inference form the critical path; one batch at a time per process
        # (onnxruntime already uses every core), while other jobs do their I/O meanwhile.
        async with _inference_lock():
            loaded, undecodable = await asyncio.to_thread(
                decode_all, loaded, runtime.settings.max_image_pixels
            )
            outputs, unsupported = await predict(models, loaded, [c.name for c in concepts])
        failures.update(undecodable)
        failures.update(unsupported)
        predictions = [
            p for input_id, outs in outputs.items() for p in prediction_docs(task, input_id, outs, router)
        ]
        await write_predictions(predictions)
        input_docs = {x.doc.id: x.doc for x in loaded}
        outcomes = await write_annotations(task, input_docs, candidates(predictions, router), list(outputs))
        await _record(task, outcomes, failures, previously_failed)
        result.processed, result.failed, result.outcomes = len(outcomes), len(failures), outcomes
    try:
        if result.outcomes:
            await review_queue.on_batch_routed(runtime, task, list(result.outcomes))
    finally:
        # the inputs are recorded: the task closes and reports even if review routing failed
        updated = await finish_if_complete(runtime, task.id, force_recount=not pending)
        if updated is not None:
            await publish_progress(runtime, updated)
    return result
