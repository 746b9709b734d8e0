"""Durable scheduling: MongoDB holds the pending work; Redis (arq) only wakes workers up.

    start / retry / new inputs  ->  ``TaskBatch`` documents (PENDING), then wake-up jobs
    a wake-up job (``process_next``) -> claims the best claimable batch with a lease, runs it
                                    while renewing the lease, marks it DONE
    reconcile (every few seconds) -> fewer wake-ups waiting than claimable batches: enqueue the
                                    difference (Redis lost its queue, a worker died holding a
                                    lease, a transient error sent a batch back)

A large run is seeded the same way: one ``SEED`` unit per run, claimed like a batch; each claim
stores a chunk of task inputs and batches and puts the unit back with its cursor
(``app/tasks/seeding.py``).

So a lost Redis (killed, emptied, restarted) loses nothing, and a dead worker's batch is taken
again once its lease lapses (``batch_lease_s``), not after arq's job timeout. A batch may run
twice (a lease that lapsed while its worker still ran, or an engine whose
``find_one_and_update`` is not atomic): running a batch is idempotent (task-input states,
annotation keys).

Order: the claimable batch with the highest priority, then the lowest rank (its index in its
run: runs of one priority take turns, so one big task cannot starve another app's small one),
then the oldest. Changing a task's priority rewrites its batches' priority at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from app.core.db import duplicates_ignored
from app.core.documents import utcnow
from app.core.ids import new_id
from app.core.queue import QUEUE_NAME
from app.tasks.models import PRIORITY_RANK, BatchKind, BatchState, LabelingTask, TaskBatch, TaskPriority

log = logging.getLogger("labelstream.scheduler")

WAKE_JOB = "process_next"
CLAIM_CANDIDATES = 8  # read per try; another worker may take some of them first
CLAIM_ROUNDS = 4
RECONCILE_MAX = 10_000  # wake-ups topped up per reconciliation at most
IN_PROGRESS = "arq:in-progress:*"  # arq's key of a job being run
ORDER = [("priority", -1), ("rank", 1), ("seq", 1)]


def _coll() -> Any:
    return TaskBatch.get_pymongo_collection()


def batch_id(task_id: str, run: int, part: str, k: int) -> str:
    return f"{task_id}:{run}:{part}:{k}"


def _doc(task: LabelingTask, _id: str, kind: BatchKind, input_ids: list[str], rank: int,
         retry: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every field written on insert (MONGODB.md, rule 8)."""
    stamp = utcnow()
    return {
        "_id": _id, "app_id": task.app_id, "task_id": task.id, "run": task.run, "kind": kind.value,
        "input_ids": input_ids, "retry": retry, "priority": PRIORITY_RANK[task.priority], "rank": rank,
        "seq": new_id(), "state": BatchState.PENDING.value, "available_at": time.time(),
        "lease_owner": None, "lease_until": 0.0, "attempts": 0, "cursor": "", "seeded": 0, "chunks": 0,
        "created_at": stamp, "updated_at": stamp,
    }  # fmt: skip


async def add_batches(
    runtime: Any,
    task: LabelingTask,
    input_ids: Sequence[str],
    *,
    part: str,
    retry: bool = False,
    first_rank: int = 0,
) -> int:
    """The run's work as PENDING batches (durable first), then one wake-up per batch."""
    size = runtime.settings.task_batch_size
    docs = [
        _doc(task, batch_id(task.id, task.run, part, k // size), BatchKind.INPUTS,
             list(input_ids[k : k + size]), first_rank + k // size, retry)
        for k in range(0, len(input_ids), size)
    ]  # fmt: skip
    for k in range(0, len(docs), 1000):
        with duplicates_ignored():
            await _coll().insert_many(docs[k : k + 1000], ordered=False)
    await wake(runtime, len(docs))
    return len(docs)


async def add_seed(runtime: Any, task: LabelingTask) -> None:
    """The run's ``SEED`` unit (one per run: a repeated call is harmless), then its wake-up."""
    with duplicates_ignored():
        await _coll().insert_many([_doc(task, batch_id(task.id, task.run, "seed", 0), BatchKind.SEED, [], 0)])
    await wake(runtime, 1)


async def wake(runtime: Any, n: int, *, defer_s: float = 0.0) -> None:
    """Enqueue ``n`` wake-up jobs. Redis being down is not an error: the work is in MongoDB,
    and the reconciliation wakes it once Redis is back."""
    if runtime.redis is None or n <= 0:
        return
    try:
        for _ in range(n):
            await runtime.redis.enqueue_job(WAKE_JOB, _defer_by=defer_s or None)
    except Exception:  # redis-py's ConnectionError, TimeoutError, OSError ...
        log.warning("could not enqueue a wake-up; the reconciliation will", exc_info=True)


def _claimable(now: float) -> dict[str, Any]:
    return {
        "$or": [
            {"state": BatchState.PENDING.value, "available_at": {"$lte": now}},
            {"state": BatchState.LEASED.value, "lease_until": {"$lt": now}},
        ]
    }


_claim_locks: dict[int, asyncio.Lock] = {}


async def claim(owner: str, lease_s: float) -> TaskBatch | None:
    """One claim at a time per process (a worker's concurrent jobs never race each other; across
    processes the compare-and-set decides, atomically on MongoDB)."""
    loop_id = id(asyncio.get_running_loop())
    lock = _claim_locks.setdefault(loop_id, asyncio.Lock())
    async with lock:
        return await _claim(owner, lease_s)


async def _claim(owner: str, lease_s: float) -> TaskBatch | None:
    """The best claimable batch, leased to ``owner``.

    A sorted read of a few candidates, then a compare-and-set on the first one still as read
    (``attempts`` is its version): one single-document update per try, which every engine
    applies atomically, rather than a sorted ``findAndModify`` whose sort and ``$or`` not every
    MongoDB-wire engine honours.
    """
    for _ in range(CLAIM_ROUNDS):
        now = time.time()
        candidates = await _coll().find(_claimable(now)).sort(ORDER).limit(CLAIM_CANDIDATES).to_list()
        if not candidates:
            return None
        for doc in candidates:
            res = await _coll().update_one(
                {"_id": doc["_id"], "state": doc["state"], "attempts": doc["attempts"]},
                {
                    "$set": {
                        "state": BatchState.LEASED.value,
                        "lease_owner": owner,
                        "lease_until": now + lease_s,
                    },
                    "$inc": {"attempts": 1},
                    "$currentDate": {"updated_at": True},
                },
            )
            if res.modified_count == 1:
                doc.update(state=BatchState.LEASED.value, lease_owner=owner, lease_until=now + lease_s)
                doc["attempts"] += 1
                return TaskBatch.model_validate(doc)
    return None


async def _renew(batch: TaskBatch, owner: str, lease_s: float) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            await _coll().update_one(
                {"_id": batch.id, "lease_owner": owner, "state": BatchState.LEASED.value},
                {"$set": {"lease_until": time.time() + lease_s}},
            )
        except Exception:  # MongoDB briefly away: the next renewal tries again
            log.warning("could not renew the lease of %s", batch.id, exc_info=True)


async def _finish(batch: TaskBatch, owner: str, update: dict[str, Any]) -> None:
    await _coll().update_one(
        {"_id": batch.id, "lease_owner": owner},
        {"$set": update, "$currentDate": {"updated_at": True}},
    )


Runner = Callable[[TaskBatch], Awaitable[dict[str, Any] | None]]


async def run_leased(
    batch: TaskBatch, owner: str, lease_s: float, run: Runner, transient: tuple[type[BaseException], ...]
) -> bool:
    """Run a claimed batch while renewing its lease. Returns False when a transient error sent
    it back to PENDING (after a back-off), True when it ran: then it is DONE, unless ``run``
    returned the update that puts it back (a seed unit with more to do)."""
    renewing = asyncio.create_task(_renew(batch, owner, lease_s))
    try:
        again = await run(batch)
    except asyncio.CancelledError:  # the worker is shutting down: another one takes it at once
        await asyncio.shield(_finish(batch, owner, {"state": BatchState.PENDING.value, "lease_owner": None,
                                                    "lease_until": 0.0}))  # fmt: skip
        raise
    except transient:
        delay = min(2.0 ** batch.failed_claims(), 60.0)
        log.warning("batch %s: transient error, again in %.0f s", batch.id, delay, exc_info=True)
        renewing.cancel()
        await _finish(batch, owner, {"state": BatchState.PENDING.value, "lease_owner": None,
                                     "lease_until": 0.0, "available_at": time.time() + delay})  # fmt: skip
        return False
    finally:
        renewing.cancel()
    await _finish(batch, owner, again if again is not None else {"state": BatchState.DONE.value})
    return True


def released(**fields: Any) -> dict[str, Any]:
    """The update that puts a claimed unit back, claimable at once, with ``fields`` changed."""
    return {"state": BatchState.PENDING.value, "lease_owner": None, "lease_until": 0.0,
            "available_at": time.time(), **fields}  # fmt: skip


async def reprioritize(task_id: str, priority: TaskPriority) -> None:
    await _coll().update_many(
        {"task_id": task_id, "state": {"$ne": BatchState.DONE.value}},
        {"$set": {"priority": PRIORITY_RANK[priority]}},
    )


async def drop(task_id: str, run: int | None = None) -> None:
    """A cancelled or deleted task's batches (of one run, when given) that nobody runs any more."""
    query: dict[str, Any] = {"task_id": task_id, "state": BatchState.PENDING.value}
    if run is not None:
        query["run"] = run
    await _coll().update_many(query, {"$set": {"state": BatchState.DONE.value}})


async def reconcile(runtime: Any) -> int:
    """Wake claimable work that has no wake-up job queued; returns how many wake-ups it sent."""
    if runtime.redis is None:
        return 0
    now = time.time()
    claimable = len(await _coll().find(_claimable(now), {"_id": 1}).limit(RECONCILE_MAX).to_list())
    if not claimable:
        return 0
    # arq keeps a running job in its queue until it finishes, and a dead worker's job stays
    # "in progress" until arq's timeout: neither is a wake-up still to come
    running = 0
    async for _ in runtime.redis.scan_iter(match=IN_PROGRESS, count=1000):
        running += 1
    waiting = max(0, int(await runtime.redis.zcard(QUEUE_NAME)) - running)
    n = claimable - waiting
    await wake(runtime, n)
    return max(0, n)


async def top_up(runtime: Any) -> None:
    """After a job: when no other job is queued but work is claimable, wake one (O(1): a
    cheaper, partial reconciliation; the periodic one catches whatever this misses)."""
    if runtime.redis is None:
        return
    if int(await runtime.redis.zcard(QUEUE_NAME)) > 1:  # this job is still in the queue
        return
    if await _coll().find_one(_claimable(time.time()), {"_id": 1}) is not None:
        await wake(runtime, 1)


async def reconcile_forever(runtime: Any) -> None:
    """The worker's background reconciliation (survives Redis and MongoDB outages)."""
    while True:
        await asyncio.sleep(runtime.settings.reconcile_interval_s)
        try:
            woken = await reconcile(runtime)
            if woken:
                log.info("reconciliation woke %d job(s)", woken)
        except Exception:
            log.warning("reconciliation failed; trying again", exc_info=True)
