"""Running a labeling task over a batch of inputs (what one arq job does), top-down:

    load     skip inputs already DONE (a re-run changes nothing); fetch and decode the rest
    predict  each model of the model/workflow, in a thread (off the event loop)
    write    raw predictions (deterministic ids), then the routed annotations through the one
             annotation writer, whose change records keep queues, counters and events right
    record   task-input states and counters; the last batch closes the task and recounts

Failures of one input (fetch, decode, unsupported kind) fail that input with a code. A batch
whose model raises (a broken model or configuration) fails all its inputs with
``MODEL_ERROR`` (an inference server that is down or failing: ``INFERENCE_SERVER_*``, which
``retryFailedInputs`` redoes), so a task always closes; only transient server errors propagate, for the job
to be retried. Nothing here imports GraphQL or the review domain; ``app.tasks.jobs`` wraps this
for arq.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout
from redis.exceptions import ConnectionError as RedisConnectionError

from app.concepts.models import Concept
from app.models.adapters import AdapterError
from app.models.adapters.remote import ServerFailure
from app.runtime import Runtime
from app.tasks import progress
from app.tasks.models import LabelingTask, TaskStatus
from app.tasks.routing import build_router
from app.tasks.run.load import InputFailure, decode_all, load_inputs
from app.tasks.run.predict import inference_lock, predict, task_models
from app.tasks.run.write import Outcome, candidates, prediction_docs, write_annotations, write_predictions

log = logging.getLogger("labelstream.engine")

# Errors that say "a server is briefly unreachable", not "this batch is wrong": the job is
# retried later, and because a batch is idempotent a retry is always safe.
TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout, RedisConnectionError, ConnectionError)


@dataclass
class BatchResult:
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    outcomes: dict[str, Outcome] = field(default_factory=dict)


async def task_concepts(task: LabelingTask) -> list[Concept]:
    docs = await Concept.find({"_id": {"$in": task.concept_ids}, "app_id": task.app_id}).to_list()
    by_id = {c.id: c for c in docs}
    return [by_id[c] for c in task.concept_ids if c in by_id]


async def _label(
    runtime: Runtime, task: LabelingTask, pending: Sequence[str]
) -> tuple[dict[str, Outcome], dict[str, InputFailure]]:
    concepts = await task_concepts(task)
    router = build_router(task, [(c.id, c.name) for c in concepts])
    models = await task_models(task)
    loaded, failures = await load_inputs(runtime, task, pending)
    # Decoding and inference form the critical path; one batch at a time per process
    # (onnxruntime already uses every core), while other jobs do their I/O meanwhile.
    try:
        async with inference_lock():
            loaded, undecodable = await asyncio.to_thread(
                decode_all, loaded, runtime.settings.max_image_pixels
            )
            outputs, unsupported = await predict(
                models, loaded, [c.name for c in concepts], runtime.settings
            )
    except TRANSIENT:
        raise
    except ServerFailure as exc:  # an inference server down or failing: retryFailedInputs redoes these
        log.warning("task %s: inference server failed on a batch: %s", task.id, exc.message)
        failure = InputFailure(exc.code, exc.message)
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    except AdapterError as exc:  # a model that cannot run as stored (unknown adapter, bad config)
        failure = InputFailure(exc.code.value, f"the model cannot run: {exc.message}")
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    except Exception as exc:
        log.warning("task %s: the model failed on a batch", task.id, exc_info=True)
        failure = InputFailure("MODEL_ERROR", f"the model failed: {type(exc).__name__}: {exc}")
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    failures.update(undecodable)
    failures.update(unsupported)
    predictions = [
        p for input_id, outs in outputs.items() for p in prediction_docs(task, input_id, outs, router)
    ]
    await write_predictions(predictions)
    dataset_ids = {x.doc.id: list(x.doc.dataset_ids) for x in loaded}
    outcomes = await write_annotations(
        runtime, task, dataset_ids, candidates(predictions, router), list(outputs)
    )
    return outcomes, failures


async def run_batch(
    runtime: Runtime, task_id: str, input_ids: Sequence[str], *, run: int, retry: bool = False
) -> BatchResult:
    result = BatchResult()
    task = await LabelingTask.get(task_id)
    if task is None or task.status not in progress.ACTIVE or task.run != run:
        result.skipped = len(input_ids)
        return result  # deleted, cancelled, or superseded by a newer start
    await LabelingTask.get_pymongo_collection().update_one(
        {"_id": task.id, "status": TaskStatus.QUEUED.value},
        {"$set": {"status": TaskStatus.IN_PROGRESS.value}, "$currentDate": {"updated_at": True}},
    )
    pending, previously_failed = await progress.pending(task, input_ids, retry)
    result.skipped = len(input_ids) - len(pending)
    if pending:
        outcomes, failures = await _label(runtime, task, pending)
        coded = {i: (f.code, f.message) for i, f in failures.items()}
        await progress.record(task, outcomes, coded, previously_failed)
        result.processed, result.failed, result.outcomes = len(outcomes), len(failures), outcomes
    updated = await progress.finish_if_complete(runtime, task.id, force_recount=not pending)
    if updated is not None:
        await progress.publish_progress(runtime, updated)
    return result
