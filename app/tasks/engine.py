"""Running a labeling task over a batch of inputs (what one arq job does), top-down:

    load     skip inputs already DONE (a re-run changes nothing); fetch and decode the rest
    predict  each model of the model/workflow, in a thread (off the event loop)
    write    raw predictions (deterministic ids), then the routed annotations through the one
             annotation writer, whose change records keep queues, counters and events right
    record   task-input states and counters; the last batch closes the task and recounts

A batch is labeled in chunks (``ChunkSizes``), each loaded, predicted, written, recorded and
announced on its own: progress moves every ``progress_every_inputs`` inputs, or sooner when
inputs are slow (a chunk is sized from the inputs so far to take ``progress_interval_s`` of
loading and inference; its writes come on top), whatever the batch size. What a chunk reads once
is read once per batch (``BatchSetup``).

Failures of one input (fetch, decode, unsupported kind) fail that input with a code. A batch
whose model raises (a broken model or configuration) fails all its inputs with
``MODEL_ERROR`` (an inference server that is down or failing: ``INFERENCE_SERVER_*``, which
``retryFailedInputs`` redoes), and one whose inference outlives ``batch_inference_limit_s``
(terminated by the watchdog) with ``INFERENCE_TIME_LIMIT``, so a task always closes and the
worker moves on; only transient server errors propagate, for the job to be retried. Nothing
here imports GraphQL or the review domain; ``app.tasks.jobs`` wraps this for arq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout
from redis.exceptions import ConnectionError as RedisConnectionError

from app.concepts.models import Concept
from app.models.adapters import AdapterError
from app.models.adapters.base import InferenceTimeLimit, configure_runtime
from app.models.adapters.remote import ServerFailure
from app.observability import metrics
from app.runtime import Runtime
from app.tasks import progress
from app.tasks.models import FailureCode, LabelingTask, TaskStatus
from app.tasks.routing import Router, build_router
from app.tasks.run.load import InputFailure, decode_all, load_inputs
from app.tasks.run.predict import RunModel, files_suffice, inference_lock, predict, task_models
from app.tasks.run.write import (
    Outcome,
    candidates,
    drop_other_versions,
    prediction_docs,
    write_annotations,
    write_predictions,
)

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


@dataclass
class BatchSetup:
    """What every chunk of a batch uses, read once per batch (not once per chunk)."""

    concepts: list[Concept]
    router: Router
    models: list[RunModel]


async def batch_setup(runtime: Runtime, task: LabelingTask) -> BatchSetup:
    concepts = await task_concepts(task)
    router = build_router(task, [(c.id, c.name) for c in concepts])
    return BatchSetup(concepts, router, await task_models(task, runtime.blobs))


async def _label(
    runtime: Runtime, task: LabelingTask, pending: Sequence[str], setup: BatchSetup, sizes: ChunkSizes
) -> tuple[dict[str, Outcome], dict[str, InputFailure]]:
    concepts, router, models = setup.concepts, setup.router, setup.models
    loaded, failures = await load_inputs(runtime, task, pending)
    settings = runtime.settings
    configure_runtime(
        cpu_mem_arena=settings.onnx_cpu_mem_arena,
        arena_shrink=settings.onnx_arena_shrink,
        run_chunk=settings.onnx_run_chunk,
    )
    # Decoding and inference form the critical path; one batch at a time per process
    # (onnxruntime already uses every core), while other jobs do their I/O meanwhile.
    # An input that fails to load or decode keeps its own code whatever the model does next.
    asked = time.monotonic()
    try:
        async with inference_lock():
            sizes.waited(time.monotonic() - asked)  # another batch's inference: not this chunk's time
            loaded, undecodable = await asyncio.to_thread(
                decode_all, loaded, settings.max_image_pixels, files_suffice=files_suffice(models)
            )
            failures.update(undecodable)
            if not loaded:
                return {}, failures
            outputs, unsupported = await predict(
                models,
                loaded,
                [c.name for c in concepts],
                settings=settings,
                limit_s=settings.batch_inference_limit_s,
            )
    except TRANSIENT:
        raise
    except InferenceTimeLimit as exc:  # terminated: these inputs can be retried with more time
        log.warning("task %s: %s", task.id, exc)
        failure = InputFailure(FailureCode.INFERENCE_TIME_LIMIT.value, str(exc))
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    except ServerFailure as exc:  # an inference server down or failing: retryFailedInputs redoes these
        log.warning("task %s: inference server failed on a batch: %s", task.id, exc.message)
        failure = InputFailure(exc.code, exc.message)
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    except AdapterError as exc:  # a model that cannot run as stored (unknown adapter, bad config)
        failure = InputFailure(exc.code.value, f"the model cannot run: {exc.message}")
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    except Exception as exc:
        log.warning("task %s: the model failed on a batch", task.id, exc_info=True)
        failure = InputFailure(
            FailureCode.MODEL_ERROR.value, f"the model failed: {type(exc).__name__}: {exc}"
        )
        return {}, {**failures, **{x.doc.id: failure for x in loaded}}
    failures.update(unsupported)
    sizes.writing()  # what follows is the chunk's bookkeeping, not the inputs' own time
    predictions = [
        p for input_id, outs in outputs.items() for p in prediction_docs(task, input_id, outs, router)
    ]
    await drop_other_versions(task.id, list(outputs), models)
    await write_predictions(predictions)
    dataset_ids = {x.doc.id: list(x.doc.dataset_ids) for x in loaded}
    outcomes = await write_annotations(
        runtime, task, dataset_ids, candidates(predictions, router), list(outputs)
    )
    return outcomes, failures


class ChunkSizes(Iterator[int]):
    """Chunk sizes for ``total`` inputs: at most ``every``, each as many as take about
    ``interval_s`` at the time per input measured so far (at least one). Without a measure yet
    (``per_input_s`` from an earlier batch of the run) the first chunk is one input. A chunk
    takes the rest of the batch when less than half of one would be left (within ``every``).

    The time per input leaves out each chunk's bookkeeping (from ``writing()`` to the next
    chunk: its writes, state records and progress event), which costs about the same whatever
    the chunk's size: counted per input, it made chunks smaller on a busy machine, so more
    chunks, so more bookkeeping, down to one input per chunk. It also leaves out the time spent
    waiting for another batch's inference (``waited``): two batches of a task run side by side
    on a worker, and counting each other's inference halved their chunks (25 chunks instead of
    16 for 200 images, each with its fixed ~80-200 ms of writes)."""

    def __init__(self, total: int, every: int, interval_s: float, per_input_s: float | None = None) -> None:
        self.left, self.every, self.interval_s = total, every, interval_s
        self.per_input_s = per_input_s
        self.done = 0
        self.last = 0
        self.busy = 0.0  # seconds of the inputs' own work (loading, inference) so far
        self.chunk_started = 0.0
        self.writes_started: float | None = None
        self.idle = 0.0  # seconds the current chunk waited for the inference lock

    def waited(self, seconds: float) -> None:
        """The current chunk waited ``seconds`` for another batch's inference."""
        self.idle += seconds

    def writing(self) -> None:
        """The current chunk's inputs are loaded and predicted; its bookkeeping starts."""
        self.writes_started = time.monotonic()

    def __next__(self) -> int:
        now = time.monotonic()
        if self.last:
            self.done += self.last
            end = self.writes_started if self.writes_started is not None else now
            self.busy += max(0.0, end - self.chunk_started - self.idle)
            self.per_input_s = self.busy / self.done
        self.chunk_started, self.writes_started, self.idle = now, None, 0.0
        if self.left <= 0:
            raise StopIteration
        if self.per_input_s is None:
            size = 1
        elif self.per_input_s > 0:
            size = int(self.interval_s / self.per_input_s)
        else:
            size = self.every
        size = max(1, min(size, self.every, self.left))
        if self.left - size < size // 2 and self.left <= self.every:
            size = self.left  # no tail chunk of a few inputs paying a whole chunk's bookkeeping
        self.left -= size
        self.last = size
        return size


_per_input_s: dict[tuple[str, int], float] = {}  # (task id, run) -> seconds per input, this process


async def run_batch(
    runtime: Runtime, task_id: str, input_ids: Sequence[str], *, run: int, retry: bool = False
) -> BatchResult:
    result = BatchResult()
    task = await LabelingTask.get(task_id)
    if task is None or task.status not in progress.ACTIVE or task.run != run:
        result.skipped = len(input_ids)
        return result  # deleted, cancelled, or superseded by a newer start
    if task.status is TaskStatus.QUEUED:  # the run's first batches (a write for every batch else)
        await LabelingTask.get_pymongo_collection().update_one(
            {"_id": task.id, "status": TaskStatus.QUEUED.value},
            {"$set": {"status": TaskStatus.IN_PROGRESS.value}, "$currentDate": {"updated_at": True}},
        )
    pending, previously_failed = await progress.pending(task, input_ids, retry)
    result.skipped = len(input_ids) - len(pending)
    settings = runtime.settings
    key = (task.id, task.run)
    sizes = ChunkSizes(
        len(pending), settings.progress_every_inputs, settings.progress_interval_s, _per_input_s.get(key)
    )
    setup = await batch_setup(runtime, task) if pending else None
    done = 0
    for size in sizes:
        assert setup is not None
        chunk = pending[done : done + size]
        outcomes, failures = await _label(runtime, task, chunk, setup, sizes)
        coded = {i: (f.code, f.message) for i, f in failures.items()}
        current = await progress.record(task, outcomes, coded, previously_failed & set(chunk))
        result.processed += len(outcomes)
        result.failed += len(failures)
        result.outcomes.update(outcomes)
        metrics.inputs_labeled.labels("done").inc(len(outcomes))
        metrics.inputs_labeled.labels("failed").inc(len(failures))
        done += size
        if done < len(pending) and current is not None:  # the last chunk's: below, with the closing
            await progress.publish_progress(runtime, current)
    if sizes.per_input_s is not None:  # the next batch of the run starts at the right size
        if len(_per_input_s) > 256:
            _per_input_s.clear()
        _per_input_s[key] = sizes.per_input_s
    updated = await progress.finish_if_complete(runtime, task.id, force_recount=not pending)
    if updated is not None:
        await progress.publish_progress(runtime, updated)
    return result
