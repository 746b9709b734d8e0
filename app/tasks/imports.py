"""Importing predictions computed elsewhere into a labeling task (``importPredictions``).

The file is parsed (``app.predictions.formats``), then every row is checked against the task
before anything is written: its image must be an input of the task's dataset, its category
must reach a task concept, its region must lie in the image and its score in 0..1. Any
problem rejects the whole file (``ImportRejected``, each problem with its line), so nothing is
half-imported.

Then the rows go down the engine's own path (``app.tasks.run.write``): raw predictions with
deterministic ids, routed by the task's router (thresholds, per-concept ranges, concept
mapping), the annotations written by the one annotation writer (so review and labeling queues,
audit sampling and events follow from its change records), task-input states recorded and the
counters recounted. The predictions of an import carry the model id ``import:<hash>``, a hash
of the file and the request's mappings: importing the same file again writes the same ids and
changes nothing. Like ``reapplyThresholds``, the task's annotations on an imported input are
routed from every prediction the task holds for it (a model run's and earlier imports'), the
most confident per concept and region winning; what people decided is never overwritten.

Resolving images, in order, for each key the file gives (``image_id``, ``file_name``, its base
name and its stem): the request's ``imageMapping``; an input id of the dataset (exports name
images ``<input id>.<ext>``, so an export re-imports as it is); an input of the dataset whose
``metadata.file_name`` is the base name. Categories: the request's ``conceptMapping`` (by the
file's category name, id or class index), then the task's own mapping and concept names, then a
task concept id. Mappings that were needed are saved on the task's ``conceptMapping``, so
re-applying thresholds later routes the stored predictions the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.access import MANAGERS, Principal, get_for
from app.annotations.changes import ChangeSet, Reason, emit
from app.core.db import any_of
from app.core.errors import Conflict, ErrorCode, ValidationFailed
from app.inputs.models import Input
from app.models.adapters import Box, Polygon
from app.models.adapters import Prediction as RawPrediction
from app.predictions import formats
from app.predictions.formats import ImageRef, ImportFormat, Problem, Row
from app.predictions.models import Prediction
from app.tasks import engine, progress
from app.tasks.models import ConceptMapping, InputState, LabelingTask, TaskInput, TaskStatus
from app.tasks.routing import Router, build_router
from app.tasks.run.predict import RunModel
from app.tasks.run.write import Outcome, candidates, prediction_docs, write_annotations, write_predictions

TOLERANCE = 0.01  # a region may overshoot the image by 1% of its side (float noise); it is clamped
CHUNK = 500  # inputs routed per write
QUERY_CHUNK = 1000


@dataclass
class ImportRequest:
    task_id: str
    format: ImportFormat
    data: bytes
    concept_mapping: list[ConceptMapping] = field(default_factory=list)  # file category -> concept
    image_mapping: dict[str, str] = field(default_factory=dict)  # file image reference -> input id
    names: list[str] | None = None  # YOLO class names, when the zip has none
    skip_unknown_categories: bool = False


@dataclass
class ImportSummary:
    task: LabelingTask
    source_id: str
    inputs: int = 0
    predictions: int = 0
    skipped: int = 0
    outcome: Outcome = field(default_factory=Outcome)


class ImportRejected(ValidationFailed):
    """The file has problems; nothing was written. ``problems`` lists the first ones."""

    def __init__(self, problems: Sequence[Problem], total: int | None = None) -> None:
        first = problems[0]
        where = f"{first.file}: " if first.file else ""
        where += f"line {first.line}: " if first.line else ""
        count = total if total is not None else len(problems)
        super().__init__(
            f"{count} problem(s) in the file; {where}{first.message}", field="file", code=first.code
        )
        self.problems = list(problems[: formats.MAX_PROBLEMS])
        self.total = count


def _state_check(task: LabelingTask) -> None:
    """A model run writes the same annotations: no import while one is queued or running (a task
    labeled by people, ``autoAnnotation: false``, runs no model). A cancelled task takes none."""
    running = task.status in (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS) and task.auto_annotation
    if running or task.status is TaskStatus.CANCELLED:
        raise Conflict(
            f"cannot import predictions into a task that is {task.status.value}"
            + (" with a model run" if running else ""),
            field="taskId",
            code=ErrorCode.INVALID_STATE,
        )


# --- images ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    id: str
    width: int | None
    height: int | None
    dataset_ids: tuple[str, ...]


async def _inputs(task: LabelingTask, query: dict[str, Any]) -> list[dict[str, Any]]:
    scope = {"app_id": task.app_id, "dataset_ids": {"$in": [task.dataset_id]}}
    projection = {"_id": 1, "width": 1, "height": 1, "dataset_ids": 1, "metadata": 1}
    docs: list[dict[str, Any]] = (
        await Input.get_pymongo_collection().find({**scope, **query}, projection).to_list()
    )
    return docs


def _target(doc: dict[str, Any]) -> Target:
    return Target(doc["_id"], doc.get("width"), doc.get("height"), tuple(doc.get("dataset_ids") or []))


async def _resolve_images(
    task: LabelingTask, refs: Iterable[ImageRef], mapping: dict[str, str]
) -> dict[ImageRef, Target]:
    unique = list(dict.fromkeys(refs))
    keys = sorted({mapping.get(k, k) for ref in unique for k in ref.keys})
    by_id: dict[str, Target] = {}
    by_name: dict[str, Target | None] = {}  # None: two inputs share the name
    for k in range(0, len(keys), QUERY_CHUNK):
        chunk = keys[k : k + QUERY_CHUNK]
        for doc in await _inputs(task, {"_id": {"$in": chunk}}):
            by_id[doc["_id"]] = _target(doc)
        for doc in await _inputs(task, {"metadata.file_name": {"$in": chunk}}):
            name = (doc.get("metadata") or {}).get("file_name")
            if isinstance(name, str):
                by_name[name] = None if name in by_name else _target(doc)
    found: dict[ImageRef, Target] = {}
    for ref in unique:
        hit: Target | None = None
        for key in ref.keys:
            hit = by_id.get(mapping[key]) if key in mapping else by_id.get(key) or by_name.get(key)
            if hit is not None or key in mapping:
                break
        if hit is not None:
            found[ref] = hit
    return found


# --- categories ------------------------------------------------------------------------------


@dataclass
class Categories:
    router: Router
    task_concepts: dict[str, str]  # id -> name
    given: dict[str, str]  # the request's mapping: file category key -> concept id
    saved: dict[str, str] = field(default_factory=dict)  # entries the task's mapping gains

    def resolve(self, row: Row) -> str | None:
        for key in (row.category, row.category_name, *row.aliases):
            if key and key in self.given:
                return self._save(row.category, self.given[key])
        hit = self.router.concept_for(row.category, row.category_name)
        if hit is not None:
            return hit
        for key in (row.category, *row.aliases):
            if key in self.task_concepts:
                return self._save(row.category, key)
        return None

    def _save(self, label: str, concept_id: str) -> str:
        if self.router.concept_of.get(label) != concept_id:
            self.saved[label] = concept_id
        return concept_id


def _check_mapping(task: LabelingTask, entries: Sequence[ConceptMapping]) -> dict[str, str]:
    existing = {m.model_concept_id: m.concept_id for m in task.concept_mapping}
    given: dict[str, str] = {}
    for k, entry in enumerate(entries):
        where = f"conceptMapping.{k}"
        if entry.concept_id not in task.concept_ids:
            raise ValidationFailed(
                f"concept {entry.concept_id!r} is not one of the task's concepts",
                field=f"{where}.conceptId",
                code=ErrorCode.CONCEPT_NOT_IN_TASK,
            )
        if entry.model_concept_id in given:
            raise Conflict(
                f"category {entry.model_concept_id!r} is mapped twice", field=f"{where}.modelConceptId"
            )
        if existing.get(entry.model_concept_id, entry.concept_id) != entry.concept_id:
            raise Conflict(
                f"the task maps {entry.model_concept_id!r} to another concept already",
                field=f"{where}.modelConceptId",
            )
        given[entry.model_concept_id] = entry.concept_id
    return given


# --- rows ------------------------------------------------------------------------------------


def _in_unit(values: Iterable[float]) -> bool:
    return all(-TOLERANCE <= v <= 1 + TOLERANCE for v in values)


def _clamp(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def region(row: Row, target: Target) -> Box | Polygon | None:
    """The row's region normalised to the image; ``ValueError`` says why it cannot be."""
    if row.box_px is not None:
        if not target.width or not target.height:
            raise ValueError("the image's size is not known yet (a URL input not fetched)")
        x, y, w, h = row.box_px
        box = (y / target.height, x / target.width, (y + h) / target.height, (x + w) / target.width)
        if not _in_unit(box):
            raise ValueError(f"bbox {list(row.box_px)} lies outside the {target.width}x{target.height} image")
    elif row.box is not None:
        box = row.box
        if not _in_unit(box):
            raise ValueError(f"box {[round(v, 4) for v in box]} lies outside the image (0..1)")
    elif row.polygon is not None:
        if not _in_unit(row.polygon):
            raise ValueError("polygon points lie outside the image (0..1)")
        points = [_clamp(v) for v in row.polygon]
        return Polygon(tuple(zip(points[0::2], points[1::2], strict=True)))
    else:
        return None
    top, left, bottom, right = (_clamp(v) for v in box)
    if not (top < bottom and left < right):
        raise ValueError("the region is empty")
    return Box(top, left, bottom, right)


@dataclass
class Checked:
    by_input: dict[str, list[tuple[Row, Box | Polygon | None]]]
    targets: dict[str, Target]
    skipped: int


def _check_rows(
    parsed: formats.Parsed, images: dict[ImageRef, Target], cats: Categories, skip_unknown: bool
) -> tuple[Checked, list[Problem]]:
    problems = list(parsed.problems)
    checked = Checked(by_input={}, targets={}, skipped=0)
    listed = set()
    for ref, line, file in parsed.images:
        listed.add(ref)
        target = images.get(ref)
        if target is None:
            problems.append(Problem(line, ErrorCode.UNKNOWN_IMAGE, _unknown_image(ref), file))
        else:
            checked.targets[target.id] = target
            checked.by_input.setdefault(target.id, [])
    for row in parsed.rows:
        target = images.get(row.image)
        if target is None:
            if row.image not in listed:
                problems.append(
                    Problem(row.line, ErrorCode.UNKNOWN_IMAGE, _unknown_image(row.image), row.file)
                )
            continue
        if cats.resolve(row) is None:
            if skip_unknown:
                checked.skipped += 1
                continue
            message = f"category {row.category!r} maps to no concept of the task (give a conceptMapping)"
            problems.append(Problem(row.line, ErrorCode.UNKNOWN_CATEGORY, message, row.file))
            continue
        try:
            shape = region(row, target)
        except ValueError as exc:
            problems.append(Problem(row.line, ErrorCode.INVALID_GEOMETRY, str(exc), row.file))
            continue
        checked.targets[target.id] = target
        checked.by_input.setdefault(target.id, []).append((row, shape))
    problems.sort(key=lambda p: (p.file or "", p.line))
    return checked, problems


def _unknown_image(ref: ImageRef) -> str:
    return f"image {ref.label!r} is not an input of the task's dataset (give an imageMapping)"


# --- writing ---------------------------------------------------------------------------------


def source_id(req: ImportRequest) -> str:
    digest = hashlib.sha256(req.data)
    digest.update(req.format.value.encode())
    mappings = {
        "concepts": sorted((m.model_concept_id, m.concept_id) for m in req.concept_mapping),
        "images": sorted(req.image_mapping.items()),
        "names": req.names or [],
    }
    digest.update(orjson.dumps(mappings))
    return "import:" + digest.hexdigest()[:16]


async def _previously_failed(task: LabelingTask, input_ids: Sequence[str]) -> set[str]:
    ids = [progress.task_input_id(task.id, i) for i in input_ids]
    docs = (
        await TaskInput.get_pymongo_collection()
        .find({"_id": {"$in": ids}, "state": InputState.FAILED.value}, {"input_id": 1})
        .to_list()
    )
    return {d["input_id"] for d in docs}


async def _route_chunk(
    runtime: Any, task: LabelingTask, router: Router, model: RunModel, checked: Checked, input_ids: list[str]
) -> dict[str, Outcome]:
    fresh: list[Prediction] = []
    for input_id in input_ids:
        outs = [
            (model, RawPrediction(row.category, row.score, shape, {"text": row.text} if row.text else {}))
            for row, shape in checked.by_input[input_id]
        ]
        fresh.extend(prediction_docs(task, input_id, outs, router))
    await write_predictions(fresh)
    stored = await Prediction.find({"task_id": task.id, "input_id": any_of(input_ids)}).to_list()
    for p in stored:  # as re-apply does: the mapping may have grown since they were stored
        p.concept_id = router.concept_for(p.model_concept_id, p.model_concept_name)
    dataset_ids = {i: list(checked.targets[i].dataset_ids) for i in input_ids}
    await progress.create_pending(task, input_ids)
    failed = await _previously_failed(task, input_ids)
    outcomes = await write_annotations(runtime, task, dataset_ids, candidates(stored, router), input_ids)
    await progress.record(task, outcomes, {}, failed, any_state=True)  # recounted at the end
    return outcomes


async def import_predictions(
    runtime: Any, principal: Principal, req: ImportRequest, limits: formats.Limits
) -> ImportSummary:
    task = await get_for(
        principal, LabelingTask, req.task_id, what="labeling task", roles=MANAGERS, field="taskId"
    )
    _state_check(task)
    given = _check_mapping(task, req.concept_mapping)
    try:
        # a 50 MB JSON document takes a while to parse: off the event loop
        parsed = await asyncio.to_thread(formats.parse, req.format, req.data, limits, req.names)
    except formats.Rejected as exc:
        raise ImportRejected([Problem(0, exc.code, exc.message)]) from None
    concepts = await engine.task_concepts(task)
    cats = Categories(
        router=build_router(task, [(c.id, c.name) for c in concepts]),
        task_concepts={c.id: c.name for c in concepts},
        given=given,
    )
    refs = [ref for ref, _, _ in parsed.images] + [row.image for row in parsed.rows]
    images = await _resolve_images(task, refs, req.image_mapping)
    checked, problems = _check_rows(parsed, images, cats, req.skip_unknown_categories)
    if problems:
        raise ImportRejected(problems, len(problems))
    # valid: from here on everything is written, and a repeat writes the same again
    if cats.saved:
        known = {m.model_concept_id for m in task.concept_mapping}
        added = [
            ConceptMapping(model_concept_id=k, concept_id=v) for k, v in cats.saved.items() if k not in known
        ]
        task.concept_mapping = [*task.concept_mapping, *added]
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task.id},
            {"$set": {"concept_mapping": [m.model_dump() for m in task.concept_mapping]},
             "$currentDate": {"updated_at": True}},
        )  # fmt: skip
    router = build_router(task, [(c.id, c.name) for c in concepts])
    names = {
        row.category: row.category_name or row.category
        for rows in checked.by_input.values()
        for row, _ in rows
    }
    names.update({k: cats.task_concepts.get(v, k) for k, v in cats.saved.items() if k in cats.task_concepts})
    model = RunModel(
        id=source_id(req), kind="DETECTOR", adapter="import", config={}, zero_shot=False, concept_names=names
    )
    summary = ImportSummary(task=task, source_id=model.id, skipped=checked.skipped)
    input_ids = sorted(checked.by_input)
    settled_before = task.status in (TaskStatus.DONE, TaskStatus.IDLE, TaskStatus.FAILED)
    for k in range(0, len(input_ids), CHUNK):
        chunk = input_ids[k : k + CHUNK]
        outcomes = await _route_chunk(runtime, task, router, model, checked, chunk)
        for out in outcomes.values():
            summary.outcome.approved += out.approved
            summary.outcome.awaiting_review += out.awaiting_review
            summary.outcome.discarded += out.discarded
    summary.inputs = len(input_ids)
    summary.predictions = sum(len(rows) for rows in checked.by_input.values())
    await progress.store_recount(task.id)
    fresh = await progress.finish_if_complete(runtime, task.id) or task
    if settled_before:  # a settled task's audit sample and review figures take the import in
        await emit(runtime, ChangeSet(Reason.SETTLED, considered={task.id: []}))
        fresh = await LabelingTask.get(task.id) or fresh
    await progress.publish_progress(runtime, fresh)
    summary.task = fresh
    return summary
