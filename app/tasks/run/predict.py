"""Run the task's model (or every model of its workflow) over a batch, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.models.adapters import AdapterInput, get_adapter
from app.models.adapters import Prediction as RawPrediction
from app.models.adapters.remote import RemoteAdapter
from app.models.models import ModelEntry, Workflow, decode_config
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
            config=decode_config(d.get("config")),
            zero_shot=bool(d.get("zero_shot")),
            concept_names={c["id"]: c["name"] for c in d.get("concepts") or []},
        )
        for d in docs
    }
    return [by_id[i] for i in ids if i in by_id]


_inference_locks: dict[int, asyncio.Lock] = {}


def inference_lock() -> asyncio.Lock:
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


Outputs = dict[str, list[tuple[RunModel, RawPrediction]]]


async def predict(
    models: Sequence[RunModel],
    loaded: Sequence[Loaded],
    concept_names: Sequence[str],
    settings: Settings | None = None,
) -> tuple[Outputs, dict[str, InputFailure]]:
    """Every model over the inputs it can read; outputs merged per input (workflows).

    A model on an inference server may only reach a non-public address when ``settings``
    allow it (``inference_allow_private_networks``)."""
    merged: Outputs = {x.doc.id: [] for x in loaded}
    served: set[str] = set()
    for model in models:
        batch = [x for x in loaded if _accepts(model, x.adapter_input)]
        if not batch:
            continue
        adapter = get_adapter(model.adapter, model.config)
        if isinstance(adapter, RemoteAdapter):
            adapter.bind_network(bool(settings and settings.inference_allow_private_networks))
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
