"""Run the task's model (or every model of its workflow) over a batch, off the event loop,
within the batch's time bound (``Settings.batch_inference_limit_s``: past it, onnxruntime's
runs are terminated and the batch raises ``InferenceTimeLimit``)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.core.blobs import BlobStore
from app.core.documents import utcnow
from app.models.adapters import AdapterInput, get_adapter, model_files
from app.models.adapters import Prediction as RawPrediction
from app.models.adapters.base import time_limit
from app.models.adapters.remote import PartialFailure, RemoteAdapter
from app.models.models import ModelEntry, ModelVersion, TaskModelVersion, Workflow, decode_config
from app.observability import metrics
from app.search import batch as search_batch
from app.settings import Settings
from app.tasks.models import LabelingTask
from app.tasks.run.load import InputFailure, Loaded


@dataclass(frozen=True)
class RunModel:
    """What a job needs of a model entry: not its (possibly 1,000) concepts as pydantic objects."""

    id: str
    kind: str
    adapter: str
    config: dict[str, Any]
    zero_shot: bool
    concept_names: dict[str, str]
    version_id: str | None = None  # uploaded models: the version this run uses


_models_of_run: dict[tuple[str, int], list[RunModel]] = {}


async def task_models(task: LabelingTask, blobs: BlobStore | None = None) -> list[RunModel]:
    """The task's models, read once per run and worker process (a run uses one configuration:
    for an uploaded model, the version the run's first batch recorded). With ``blobs``, the
    files of uploaded models are handed to the adapters first (``model_files``)."""
    key = (task.id, task.run)
    cached = _models_of_run.get(key)
    if cached is None:
        if len(_models_of_run) > 256:
            _models_of_run.clear()
        cached = _models_of_run[key] = await _load_models(task)
    if blobs is not None:
        await provide_files(cached, blobs)
    return cached


async def provide_files(models: Sequence[RunModel], blobs: BlobStore) -> None:
    """Read each uploaded model's file from the blob store unless this process holds it; a
    missing blob is left for the adapter to report (the batch fails with ``MODEL_ERROR``)."""
    for model in models:
        key = model.config.get("blob_key")
        if isinstance(key, str) and not model_files.has(key):
            data = await blobs.get(key)
            if data is not None:
                model_files.provide(key, data)


async def _run_version(task: LabelingTask, doc: dict[str, Any]) -> ModelVersion | None:
    """The version of an uploaded model this run uses: the one recorded for (task, run, model)
    by whichever batch came first, else the model's active one, recorded now."""
    active = doc.get("active_version_id")
    if not active:
        return None
    record_id = f"{task.id}:{task.run}:{doc['_id']}"
    collection = TaskModelVersion.get_pymongo_collection()
    recorded = await collection.find_one({"_id": record_id})
    if recorded is None:
        version = await ModelVersion.get(active)
        if version is None:
            return None
        now = utcnow()
        try:
            await collection.insert_one(
                {
                    "_id": record_id,
                    "created_at": now,
                    "updated_at": now,
                    "app_id": task.app_id,
                    "task_id": task.id,
                    "run": task.run,
                    "model_id": doc["_id"],
                    "version_id": version.id,
                    "version_number": version.number,
                }
            )
            return version
        except DuplicateKeyError:
            recorded = await collection.find_one({"_id": record_id})
    return await ModelVersion.get(recorded["version_id"]) if recorded else None


async def _load_models(task: LabelingTask) -> list[RunModel]:
    if task.model_id:
        ids = [task.model_id]
    else:
        workflow = await Workflow.get(task.workflow_id or "")
        ids = list(workflow.model_ids) if workflow else []
    docs = (
        await ModelEntry.get_pymongo_collection().find({"_id": {"$in": ids}, "app_id": task.app_id}).to_list()
    )
    by_id = {}
    for d in docs:
        version = await _run_version(task, d)
        config = decode_config(d.get("config")) if version is None else dict(version.config)
        concepts = d.get("concepts") or [] if version is None else [c.model_dump() for c in version.concepts]
        by_id[d["_id"]] = RunModel(
            id=d["_id"],
            kind=d["kind"],
            adapter=d["adapter"],
            config=config,
            zero_shot=bool(d.get("zero_shot")),
            concept_names={c["id"]: c["name"] for c in concepts},
            version_id=None if version is None else version.id,
        )
    return [by_id[i] for i in ids if i in by_id]


# by the loop itself, held weakly: keyed by ``id(loop)``, a new loop at a dead one's address
# got its lock, left held forever by a job that loop never finished (a hang in tests)
_inference_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def inference_lock() -> asyncio.Lock:
    """One model call at a time per process: onnxruntime already uses every core for one batch,
    so two at once only fight over the CPU while the other job's I/O could run instead."""
    loop = asyncio.get_running_loop()
    lock = _inference_locks.get(loop)
    if lock is None:
        lock = _inference_locks[loop] = asyncio.Lock()
    return lock


def files_suffice(models: Sequence[RunModel]) -> bool:
    """Whether every image model of the task reads image files, not pixels
    (``ModelAdapter.wants_encoded``): its images then need no decoding (``load.decode_all``)."""
    image_models = [m for m in models if m.kind != "TEXT_CLASSIFIER"]
    return bool(image_models) and all(get_adapter(m.adapter, m.config).wants_encoded for m in image_models)


def _accepts(model: RunModel, item: AdapterInput | None) -> bool:
    if item is None:
        return False
    wants_text = model.kind == "TEXT_CLASSIFIER"
    return (item.text is not None) if wants_text else (item.image is not None or item.encoded is not None)


Outputs = dict[str, list[tuple[RunModel, RawPrediction]]]


async def predict(
    models: Sequence[RunModel],
    loaded: Sequence[Loaded],
    concept_names: Sequence[str],
    *,
    settings: Settings | None = None,
    limit_s: float = 120.0,
) -> tuple[Outputs, dict[str, InputFailure]]:
    """Every model over the inputs it can read; outputs merged per input (workflows). All the
    models together get ``limit_s`` seconds (``InferenceTimeLimit`` past it).

    A model on an inference server may only reach a non-public address when ``settings``
    allow it (``inference_allow_private_networks``). When only some of its requests failed
    (``PartialFailure``), the inputs they carried fail with the server's code and the others
    keep their predictions.

    With search embeddings on (``search_embed_on_change``), a model whose session also returns
    the search's input vectors (the built-in image classifier, the text topic classifier) gives
    them from the same run; the write step stores them (``app.search.batch``)."""
    merged: Outputs = {x.doc.id: [] for x in loaded}
    vectors = search_batch.collect() if settings is not None and settings.search_embed_on_change else None
    served: set[str] = set()
    server_failed: dict[str, InputFailure] = {}
    with time_limit(limit_s):
        for model in models:
            batch = [x for x in loaded if _accepts(model, x.adapter_input) and x.doc.id not in server_failed]
            if not batch:
                continue
            adapter = get_adapter(model.adapter, model.config)
            if isinstance(adapter, RemoteAdapter):
                adapter.bind_network(bool(settings and settings.inference_allow_private_networks))
            names = list(concept_names) if model.zero_shot else None
            items = [x.adapter_input for x in batch if x.adapter_input is not None]
            started = time.perf_counter()
            space = search_batch.feature_model(adapter) if vectors is not None else None
            try:
                outputs: Sequence[list[RawPrediction] | None]
                if space is not None and vectors is not None:
                    outputs, features = await asyncio.to_thread(
                        adapter.predict_with_features,  # type: ignore[attr-defined]
                        items,
                        names,
                    )
                    vectors.add(space, [x.doc for x in batch], features)
                else:
                    outputs = await asyncio.to_thread(adapter.predict, items, names)
            except PartialFailure as exc:
                outputs = exc.results
                for item, failure in zip(batch, exc.failures, strict=True):
                    if failure is not None:
                        server_failed[item.doc.id] = InputFailure(failure.code, failure.message)
            metrics.inference_latency.labels(model.id, model.adapter).observe(time.perf_counter() - started)
            for item, preds in zip(batch, outputs, strict=True):
                if preds is not None:
                    served.add(item.doc.id)
                    merged[item.doc.id].extend((model, p) for p in preds)
    failures = {
        x.doc.id: InputFailure(
            "UNSUPPORTED_INPUT", f"no model of this task reads {x.doc.kind.value.lower()} inputs"
        )
        for x in loaded
        if x.doc.id not in served
    }
    failures.update(server_failed)  # an input another model served still fails: runs are whole
    for input_id in failures:
        merged.pop(input_id, None)
    return merged, failures
