"""Store a batch's raw predictions, route them, and hand the wanted annotations to the writer.

Prediction ids are deterministic (task:input:model:concept:region), so a re-run writes the same
prediction again rather than adding one; annotation keys (task|input|concept|region) make the
writer's upserts idempotent the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.annotations import store
from app.core.db import any_of, duplicates_ignored
from app.core.documents import utcnow
from app.models.adapters import Box, Polygon
from app.models.adapters import Prediction as RawPrediction
from app.predictions.models import Prediction
from app.search import batch as search_batch
from app.tasks.models import LabelingTask
from app.tasks.routing import Route, Router
from app.tasks.run.predict import RunModel


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


def prediction_docs(
    task: LabelingTask, input_id: str, outputs: Iterable[tuple[RunModel, RawPrediction]], router: Router
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
                model_version_id=model.version_id,
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


PREDICTION_FIELDS = (
    "app_id", "task_id", "input_id", "model_id", "model_version_id", "model_concept_id", "model_concept_name",
    "concept_id", "confidence", "box", "polygon", "region_key", "extra", "created_at", "updated_at",
)  # fmt: skip


async def write_predictions(predictions: Sequence[Prediction]) -> None:
    """Insert; a prediction that exists already (same deterministic id: a re-run of the same
    model on the same input) is a duplicate-key error that is ignored."""
    if not predictions:
        return
    docs = [{"_id": p.id, **{f: getattr(p, f) for f in PREDICTION_FIELDS}} for p in predictions]
    with duplicates_ignored():
        await Prediction.get_pymongo_collection().insert_many(docs, ordered=False)


async def drop_other_versions(task_id: str, input_ids: Sequence[str], models: Sequence[RunModel]) -> None:
    """Predictions another version of an uploaded model made for this task on these inputs go,
    so that a run's stored predictions are its own version's (deterministic ids would otherwise
    keep the old version's confidences, and re-applied thresholds would mix versions)."""
    current = {m.id: m.version_id for m in models if m.version_id}
    if not current or not input_ids:
        return
    collection = Prediction.get_pymongo_collection()
    docs = await collection.find(
        {"task_id": task_id, "input_id": any_of(input_ids), "model_id": {"$in": list(current)}},
        {"model_id": 1, "model_version_id": 1},
    ).to_list()
    stale = [d["_id"] for d in docs if d.get("model_version_id") != current.get(d["model_id"])]
    if stale:
        await collection.delete_many({"_id": {"$in": stale}})


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


@dataclass
class Outcome:
    """Where one input's candidates went."""

    approved: int = 0
    awaiting_review: int = 0
    discarded: int = 0


def region_text(p: Prediction) -> str | None:
    """The recognised text a text-region model put in ``extra["text"]`` (regions only)."""
    text = p.extra.get("text") if p.extra else None
    return text if isinstance(text, str) and (p.box is not None or p.polygon is not None) else None


STATUS = {Route.APPROVE: store.SUCCESS, Route.REVIEW: store.AWAITING, Route.DISCARD: None}


async def write_annotations(
    runtime: object, task: LabelingTask, dataset_ids: dict[str, list[str]], chosen: dict[str, Candidate],
    input_ids: Sequence[str],
) -> dict[str, Outcome]:  # fmt: skip
    """The annotation writer makes the task's machine annotations on ``input_ids`` equal
    ``chosen``; returns, per input, how many candidates each route took.

    The input vectors the predict step collected for search are stored first, so the embedding
    job the annotation change records enqueue finds them current (``app.search.batch``)."""
    await search_batch.flush(input_ids)
    outcomes = {i: Outcome() for i in input_ids}
    wanted: dict[str, store.MachineLabel] = {}
    for key, cand in chosen.items():
        p = cand.prediction
        out = outcomes[p.input_id]
        if cand.route is Route.APPROVE:
            out.approved += 1
        elif cand.route is Route.REVIEW:
            out.awaiting_review += 1
        else:
            out.discarded += 1
        wanted[key] = store.MachineLabel(
            key=key,
            input_id=p.input_id,
            concept_id=p.concept_id or "",
            status=STATUS[cand.route],
            confidence=p.confidence,
            model_id=p.model_id,
            model_version_id=p.model_version_id,
            box=p.box,
            polygon=p.polygon,
            text=region_text(p),
        )
    await store.route(runtime, task.app_id, task.id, list(input_ids), wanted, dataset_ids)
    return outcomes
