"""Thin arq functions (CONVENTIONS.md: jobs take ids, not documents).

``process_next`` is a wake-up: it claims the best claimable batch from MongoDB
(``scheduler.claim``) and runs it under a renewed lease. There is one wake-up per batch (the
reconciliation tops them up when some were lost); which batch runs is decided by MongoDB,
never by the job's arguments. A claimed ``SEED`` unit stores one chunk of its run
(``app.tasks.seeding``) and goes back with a wake-up of its own while there is more.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from arq import func

from app.core.ids import new_id
from app.search.jobs import FUNCTIONS as SEARCH_FUNCTIONS
from app.tasks import engine, progress, scheduler, seeding
from app.tasks.engine import TRANSIENT
from app.tasks.models import BatchKind, FailureCode, LabelingTask, TaskBatch

# A batch of 32 images through the slowest built-in model (OCR, ~0.6 s each) stays well under
# this; a dead worker's batch is taken again when its lease lapses, long before.
JOB_TIMEOUT_S = 600


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"


async def _give_up(runtime: Any, batch: TaskBatch) -> None:
    """A batch that kept failing with transient errors: its inputs fail, so the task closes."""
    task = await LabelingTask.get(batch.task_id)
    if task is None or task.run != batch.run:
        return
    pending, before = await progress.pending(task, batch.input_ids, batch.retry)
    message = f"gave up after {batch.attempts} attempts (servers unreachable)"
    code = FailureCode.RETRIES_EXHAUSTED.value
    await progress.record(task, {}, {i: (code, message) for i in pending}, before)
    updated = await progress.finish_if_complete(runtime, task.id)
    if updated is not None:
        await progress.publish_progress(runtime, updated)


async def process_next(ctx: dict[str, Any]) -> dict[str, int]:
    runtime = ctx["runtime"]
    settings = runtime.settings
    owner = ctx.setdefault("worker_identity", worker_identity())
    batch = await scheduler.claim(owner, settings.batch_lease_s)
    if batch is None:
        return {"batches": 0}
    seed = batch.kind is BatchKind.SEED
    if batch.failed_claims() > settings.batch_max_attempts:
        give_up = seeding.give_up if seed else _give_up
        await scheduler.run_leased(
            batch, owner, settings.batch_lease_s, lambda b: give_up(runtime, b), TRANSIENT
        )
        return {"batches": 1}

    more = False

    async def run(b: TaskBatch) -> dict[str, Any] | None:
        nonlocal more
        if seed:
            again = await seeding.seed_chunk(runtime, b)
            more = again is not None
            return again
        await engine.run_batch(runtime, b.task_id, b.input_ids, run=b.run, retry=b.retry)
        return None

    try:
        finished = await scheduler.run_leased(batch, owner, settings.batch_lease_s, run, TRANSIENT)
    except asyncio.CancelledError:  # shutting down: the batch went back; so does its wake-up
        await asyncio.shield(scheduler.wake(runtime, 1))
        raise
    if not finished:
        await scheduler.wake(runtime, 1, defer_s=min(2.0 ** batch.failed_claims(), 60.0))
    elif more:  # a seed unit put back with its next chunk to do
        await scheduler.wake(runtime, 1)
    # work whose wake-up went missing (a lost Redis, or two jobs that took the same batch on an
    # engine without atomic updates) gets one now rather than at the next reconciliation
    await scheduler.top_up(runtime)
    return {"batches": 1}


FUNCTIONS = [
    func(process_next, name=scheduler.WAKE_JOB, timeout=JOB_TIMEOUT_S, max_tries=3),  # type: ignore[arg-type]
    *SEARCH_FUNCTIONS,
]
