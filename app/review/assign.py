"""Creating, updating and moving assignments so they match the annotations.

Every decision about *who* gets work is taken while holding the task's lock: a document
``lock:<task_id>`` created by an insert (atomic on every engine, FerretDB included, where
concurrent ``$inc`` / ``find_one_and_update`` are not). Under the lock the open counts are read
once, the evenness rule (``partition``) picks people in memory, and the new assignments are
inserted with their deterministic ``_id``s, so two workers or API processes can neither give an
input twice nor both give the "least loaded" reviewer one more. A holder that dies leaves a
lock that expires after ``LOCK_TTL``.

The counts a holder starts from are the ones the previous holder left (``AssignmentCounts``:
one read, whatever the task's size) when it finished cleanly, within ``RECOUNT_AFTER_S`` of a
real count, and no write outside the lock came since; else one ``$group`` over the task's
assignments (``bucket_counts``). Every write to assignments outside the lock is followed by
``forget_counts``.

``sync_inputs`` is the one function that reconciles assignments with annotations; routing
(``follow``, the listener of the annotation change records) calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.annotations.models import Annotation, AnnotationStatus
from app.core import pubsub
from app.core.db import any_of, is_duplicate_key, one_reply
from app.core.documents import utcnow
from app.core.errors import Conflict, ErrorCode
from app.core.ids import new_id
from app.review import partition
from app.review.models import (
    OPEN_STATES,
    Assignment,
    AssignmentCounts,
    AssignmentKind,
    AssignmentState,
    TaskLock,
    assignment_id,
    bucket,
)
from app.tasks.models import LabelingTask, PartitionStrategy

LOCK_TTL = timedelta(seconds=60)
LOCK_WAIT_S = 30.0
WAITING = (AnnotationStatus.AWAITING_REVIEW.value, AnnotationStatus.AWAITING_CONSENSUS_REVIEW.value)
CHUNK = 1000
ONE_REPLY = one_reply(20_000)  # annotations read in one reply (projected small; a reply stops at 16 MiB)
# counts left by earlier holders are grouped again at least this often: a writer outside the
# lock that died between its write and its ``forget_counts`` (or an input deletion racing a
# holder's insert for that input) misleads the partition at most so long
RECOUNT_AFTER_S = 60.0


# --- the lock ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def task_lock(task_id: str) -> AsyncIterator[None]:
    coll = TaskLock.get_pymongo_collection()
    key, token = f"lock:{task_id}", new_id()
    deadline = time.monotonic() + LOCK_WAIT_S
    delay = 0.002
    while True:
        now = utcnow()
        try:
            await coll.insert_one(
                {
                    "_id": key,
                    "owner": token,
                    "expires_at": now + LOCK_TTL,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            break
        except Exception as exc:
            if not is_duplicate_key(exc):
                raise
        await coll.delete_one({"_id": key, "expires_at": {"$lt": utcnow()}})  # a dead holder's
        if time.monotonic() > deadline:
            raise Conflict("the task is busy; try again", field="taskId", code=ErrorCode.BUSY)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        await coll.delete_one({"_id": key, "owner": token})


# --- reading -------------------------------------------------------------------------------


async def aggregate(coll: Any, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cursor = await coll.aggregate(pipeline)
    rows: list[dict[str, Any]] = await cursor.to_list()
    return rows


async def bucket_counts(task_id: str) -> dict[str, int]:
    """``{bucket: count}`` of the task's assignments: one ``$group`` on one field."""
    rows = await aggregate(
        Assignment.get_pymongo_collection(),
        [{"$match": {"task_id": task_id}}, {"$group": {"_id": "$bucket", "n": {"$sum": 1}}}],
    )
    return {r["_id"]: int(r["n"] or 0) for r in rows if r["_id"]}


async def counts_under_lock(task: LabelingTask, token: str) -> tuple[dict[str, int], float]:
    """The task's ``bucket_counts`` for the holder of its lock (``token``), and when they were
    grouped for real (epoch seconds). The stored counts are marked as held by ``token`` first,
    so until ``keep_counts`` stores new ones nobody trusts them: not the next holder if this
    one dies, and a write outside the lock meanwhile deletes them (``forget_counts``)."""
    coll = AssignmentCounts.get_pymongo_collection()
    stored = await coll.find_one_and_update(
        {"_id": task.id}, {"$set": {"holder": token}}, return_document=ReturnDocument.BEFORE
    )
    if stored is None:  # the first holder, or the last one's counts were forgotten
        now = utcnow()
        placeholder = AssignmentCounts(
            id=task.id, app_id=task.app_id, holder=token, created_at=now, updated_at=now
        )
        try:  # an upsert with $setOnInsert would be one call, but nx-27017 drops $setOnInsert there
            await coll.insert_one(placeholder.model_dump(by_alias=True, mode="python"))
        except DuplicateKeyError:  # only a holder inserts, and we hold the lock: not expected
            pass
    counted_at = float(stored.get("counted_at") or 0.0) if stored is not None else 0.0
    if stored is not None and stored.get("holder") is None and time.time() - counted_at < RECOUNT_AFTER_S:
        return dict(zip(stored.get("buckets") or [], stored.get("counts") or [], strict=True)), counted_at
    counted_at = time.time()  # before the count: a write it misses is younger than the mark
    return await bucket_counts(task.id), counted_at


async def keep_counts(task_id: str, token: str, counts: dict[str, int] | None, counted_at: float) -> None:
    """The holder ``token`` leaves the counts its writes made (None: not known, recount next
    time); nothing is stored if a write outside the lock deleted its mark meanwhile."""
    coll = AssignmentCounts.get_pymongo_collection()
    if counts is None:
        await coll.delete_one({"_id": task_id, "holder": token})
        return
    kept = sorted((k, n) for k, n in counts.items() if n)
    await coll.update_one(
        {"_id": task_id, "holder": token},
        {
            "$set": {
                "buckets": [k for k, _ in kept],
                "counts": [n for _, n in kept],
                "holder": None,
                "counted_at": counted_at,
            },
            "$currentDate": {"updated_at": True},
        },
    )


async def forget_counts(task_ids: Iterable[str]) -> None:
    """Call after writing a task's assignments outside its lock: the counts stored for it go,
    and the next holder of its lock groups the assignments again."""
    coll = AssignmentCounts.get_pymongo_collection()
    for task_id in sorted(set(task_ids)):
        await coll.delete_one({"_id": task_id})


def open_counts(counts: dict[str, int], kind: AssignmentKind) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in counts.items():
        k, state, user = key.split("|", 2)
        if k == kind.value and state in OPEN_STATES and user != "-":
            out[user] = out.get(user, 0) + n
    return out


def people_of(task: LabelingTask, kind: AssignmentKind) -> tuple[list[str], dict[str, float]]:
    """The people who get work of ``kind``: the task's creator when it names nobody."""
    if kind is AssignmentKind.LABEL:
        return task.labelers(), {}
    weights: dict[str, float] = {}
    if task.partition_strategy is PartitionStrategy.WEIGHTED and task.reviewer_ids:
        weights = {w.user_id: w.weight for w in task.reviewer_weights}
    return task.reviewers(), weights


async def _annotations(
    task_id: str, input_ids: Sequence[str], statuses: Sequence[str], fields: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """The task's annotations of ``input_ids`` in one of ``statuses``, by input. nx-27017
    decodes every document it returns, whatever the projection, so only the statuses a plan
    needs are read (a plain ``$in``: the input's index stays the one that narrows)."""
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in input_ids}
    for k in range(0, len(input_ids), CHUNK):
        query = {
            "task_id": task_id,
            "input_id": any_of(input_ids[k : k + CHUNK]),
            "status": {"$in": list(statuses)},
        }
        cursor = Annotation.get_pymongo_collection().find(query, fields, batch_size=ONE_REPLY)
        for d in await cursor.to_list():
            out.setdefault(d["input_id"], []).append(d)
    return out


async def _usable(
    task_id: str, input_ids: Sequence[str], waiting: dict[str, list[dict[str, Any]]]
) -> set[str]:
    """The inputs with an annotation a labeler need not redo (approved or waiting for review):
    those with one waiting, and those of the others with an approved one."""
    found = {i for i in input_ids if waiting.get(i)}
    rest = [i for i in input_ids if i not in found]
    approved = await _annotations(task_id, rest, (AnnotationStatus.SUCCESS.value,), {"input_id": 1})
    return found | {i for i, docs in approved.items() if docs}


async def _assignments(task_id: str, input_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for k in range(0, len(input_ids), CHUNK):
        docs = (
            await Assignment.get_pymongo_collection()
            .find({"task_id": task_id, "input_id": any_of(input_ids[k : k + CHUNK])})
            .to_list()
        )
        for d in docs:
            out.setdefault(d["input_id"], []).append(d)
    return out


# --- events --------------------------------------------------------------------------------


@dataclass
class Changes:
    """What a reconciliation did, per person: inputs added to / removed from their queues."""

    added: dict[tuple[str, str | None], list[str]] = field(default_factory=dict)
    removed: dict[tuple[str, str | None], list[str]] = field(default_factory=dict)
    reason: str = ""
    # the task's ``bucket_counts`` once this reconciliation's writes are in (it holds the lock,
    # so nothing else moved them); None when not known (merged changes, old documents)
    counts_after: dict[str, int] | None = None

    def add(self, kind: str, user: str | None, input_id: str) -> None:
        self.added.setdefault((kind, user), []).append(input_id)

    def remove(self, kind: str, user: str | None, input_id: str) -> None:
        self.removed.setdefault((kind, user), []).append(input_id)

    def merge(self, other: Changes) -> None:
        self.counts_after = None
        for (kind, user), ids in other.added.items():
            self.added.setdefault((kind, user), []).extend(ids)
        for (kind, user), ids in other.removed.items():
            self.removed.setdefault((kind, user), []).extend(ids)

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


async def publish(redis: Any, task: LabelingTask, changes: Changes) -> None:
    """One review event per reviewer and direction (the contract in ``queue``'s docstring)."""
    for action, groups in (("REMOVED", changes.removed), ("ADDED", changes.added)):
        for (kind, user), ids in groups.items():
            if kind != AssignmentKind.REVIEW.value or not ids:
                continue
            payload = {
                "reviewerId": user,
                "action": action,
                "inputIds": sorted(set(ids)),
                "kind": kind,
                "reason": changes.reason,
            }
            await pubsub.publish_review(redis, task.app_id, task.id, payload)


# --- reconciling ---------------------------------------------------------------------------


def _set(kind: str, state: AssignmentState, user: str | None, **extra: Any) -> dict[str, Any]:
    return {"state": state.value, "bucket": bucket(kind, state, user), "user_id": user, **extra}


@dataclass
class _Plan:
    task: LabelingTask
    counts: dict[str, int]
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[Any] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    review_people: tuple[list[str], dict[str, float]] = ([], {})
    label_people: tuple[list[str], dict[str, float]] = ([], {})
    review_open: dict[str, int] = field(default_factory=dict)
    label_open: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] | None = None  # ``counts`` with the planned writes applied

    def move(self, old: Any, new: str | None) -> None:
        """One assignment leaves bucket ``old`` (None: it is new) for ``new`` (None: deleted)."""
        if self.after is None:
            return
        if old is not None:
            if not isinstance(old, str):
                self.after = None  # a document without its bucket: counts unknown
                return
            self.after[old] = self.after.get(old, 0) - 1
        if new is not None:
            self.after[new] = self.after.get(new, 0) + 1

    def new(self, kind: AssignmentKind, input_id: str, slot: int, user: str | None, **fields: Any) -> None:
        now = utcnow()
        doc = Assignment(
            id=assignment_id(kind, self.task.id, input_id, slot),
            app_id=self.task.app_id,
            task_id=self.task.id,
            input_id=input_id,
            kind=kind,
            slot=slot,
            user_id=user,
            state=AssignmentState.OPEN,
            bucket=bucket(kind, AssignmentState.OPEN, user),
            order=new_id(),
            created_at=now,
            updated_at=now,
            **fields,
        )
        self.inserts.append(doc.model_dump(by_alias=True, mode="python"))
        self.move(None, doc.bucket)
        self.changes.add(kind.value, user, input_id)


def _waiting_for(anns: Iterable[dict[str, Any]], user: str | None) -> list[dict[str, Any]]:
    return [
        a
        for a in anns
        if a["status"] in WAITING and (user is None or user not in (a.get("approved_by") or []))
    ]


def _summary(waiting: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "waiting": len(waiting),
        "min_confidence": min((float(a.get("confidence", 1.0)) for a in waiting), default=1.0),
        "concept_ids": sorted({a["concept_id"] for a in waiting}),
    }


def _plan_review(
    plan: _Plan, input_id: str, anns: list[dict[str, Any]], existing: list[dict[str, Any]], finish: str | None
) -> None:
    """``finish``: the actor when called after a review action (open slots with nothing left
    become DONE, theirs); None after routing (open slots with nothing left are withdrawn)."""
    task = plan.task
    kind = AssignmentKind.REVIEW.value
    slots = {d["slot"]: d for d in existing if d["kind"] == kind}
    any_waiting = bool(_waiting_for(anns, None))
    needed = max(1, task.approval_threshold_reviewers)
    for slot in sorted(set(slots) | (set(range(needed)) if any_waiting else set())):
        doc = slots.get(slot)
        if doc is None:
            taken = {d["user_id"] for d in slots.values() if d.get("user_id")}
            people, weights = plan.review_people
            pick = partition.choose(people, weights, plan.review_open, exclude=taken)
            user = pick[0] if pick else None
            plan.new(AssignmentKind.REVIEW, input_id, slot, user, **_summary(_waiting_for(anns, user)))
            slots[slot] = {"slot": slot, "user_id": user, "kind": kind, "state": "OPEN"}
            continue
        user = doc.get("user_id")
        if doc["state"] == AssignmentState.DONE.value and any_waiting:
            # new work on an input whose review was finished: it reopens for its reviewer if they
            # still review the task, else for a current reviewer (as a new slot would be)
            people, weights = plan.review_people
            if user not in people:
                taken = {d["user_id"] for s, d in slots.items() if s != slot and d.get("user_id")}
                pick = partition.choose(people, weights, plan.review_open, exclude=taken)
                user = pick[0] if pick else None
                slots[slot] = {**doc, "user_id": user}
        mine = _waiting_for(anns, user)
        if mine:
            state = AssignmentState(doc["state"])
            extra = _summary(mine)
            if state is AssignmentState.DONE:
                state = AssignmentState.OPEN  # new work on an input this reviewer had finished
                extra["done_by"] = None
                plan.changes.add(kind, user, input_id)
            plan.updates.append(
                UpdateOne(
                    {"_id": doc["_id"]},
                    {"$set": _set(kind, state, user, **extra), "$currentDate": {"updated_at": True}},
                )
            )
            plan.move(doc.get("bucket", 0), bucket(kind, state, user))
        elif doc["state"] != AssignmentState.DONE.value:
            if finish is None and not any_waiting:
                plan.deletes.append(doc["_id"])
                plan.move(doc.get("bucket", 0), None)
            else:
                plan.move(doc.get("bucket", 0), bucket(kind, AssignmentState.DONE, user))
                plan.updates.append(
                    UpdateOne(
                        {"_id": doc["_id"]},
                        {
                            "$set": _set(kind, AssignmentState.DONE, user, waiting=0, done_by=finish or user),
                            "$currentDate": {"updated_at": True, "done_at": True},
                        },
                    )
                )
            plan.changes.remove(kind, user, input_id)


def _plan_label(
    plan: _Plan, input_id: str, usable: bool, existing: list[dict[str, Any]], reason: str | None
) -> None:
    """``reason``: EMPTY after routing, CHANGES_REQUESTED after a request for changes;
    ``usable`` (read for EMPTY only): the input has an approved annotation or one waiting."""
    kind = AssignmentKind.LABEL.value
    doc = next((d for d in existing if d["kind"] == kind), None)
    wanted = reason == "CHANGES_REQUESTED" or (reason == "EMPTY" and not usable)
    if wanted:
        if doc is None:
            people, weights = plan.label_people
            pick = partition.choose(people, weights, plan.label_open)
            plan.new(AssignmentKind.LABEL, input_id, 0, pick[0] if pick else None, reason=reason)
        elif doc["state"] == AssignmentState.DONE.value:
            user = doc.get("user_id")
            people, weights = plan.label_people
            if user not in people:  # they no longer label this task: a current labeler does
                pick = partition.choose(people, weights, plan.label_open)
                user = pick[0] if pick else None
            plan.updates.append(
                UpdateOne(
                    {"_id": doc["_id"]},
                    {
                        "$set": _set(kind, AssignmentState.OPEN, user, reason=reason, done_by=None),
                        "$currentDate": {"updated_at": True},
                    },
                )
            )
            plan.move(doc.get("bucket", 0), bucket(kind, AssignmentState.OPEN, user))
            plan.changes.add(kind, user, input_id)
    elif (
        reason == "EMPTY"
        and doc is not None
        and doc["state"] == AssignmentState.OPEN.value
        and doc.get("reason") == "EMPTY"
    ):
        plan.deletes.append(doc["_id"])  # the model labels it now (thresholds re-applied)
        plan.move(doc.get("bucket", 0), None)
        plan.changes.remove(kind, doc.get("user_id"), input_id)


async def sync_inputs(
    task: LabelingTask,
    input_ids: Sequence[str],
    *,
    finish: str | None = None,
    label_reason: str | None = None,
    reason: str = "",
) -> Changes:
    """Bring the assignments of ``input_ids`` in line with their annotations (under the lock)."""
    input_ids = list(dict.fromkeys(input_ids))
    if not input_ids:
        return Changes(reason=reason)
    token = new_id()
    async with task_lock(task.id):
        counts, counted_at = await counts_under_lock(task, token)
        plan = _Plan(task=task, counts=counts, after=dict(counts))
        plan.changes.reason = reason
        plan.review_people = people_of(task, AssignmentKind.REVIEW)
        plan.label_people = people_of(task, AssignmentKind.LABEL)
        plan.review_open = open_counts(counts, AssignmentKind.REVIEW)
        plan.label_open = open_counts(counts, AssignmentKind.LABEL)
        fields = {"input_id": 1, "status": 1, "confidence": 1, "concept_id": 1, "approved_by": 1}
        anns = await _annotations(task.id, input_ids, WAITING, fields)
        # only the rule after routing (EMPTY) asks whether an input has a usable annotation
        usable = await _usable(task.id, input_ids, anns) if label_reason == "EMPTY" else set()
        existing = await _assignments(task.id, input_ids)
        for input_id in input_ids:
            mine = existing.get(input_id, [])
            _plan_review(plan, input_id, anns.get(input_id, []), mine, finish)
            if label_reason is not None:
                _plan_label(plan, input_id, input_id in usable, mine, label_reason)
        await _write(plan)
        await keep_counts(task.id, token, plan.after, counted_at)
    plan.changes.counts_after = None if plan.after is None else {k: n for k, n in plan.after.items() if n}
    return plan.changes


async def _write(plan: _Plan) -> None:
    """The planned writes; ``plan.after`` becomes unknown (None) when one of them did not
    land as planned (an assignment already there, or gone meanwhile)."""
    coll = Assignment.get_pymongo_collection()
    for k in range(0, len(plan.inserts), CHUNK):
        try:
            await coll.insert_many(plan.inserts[k : k + CHUNK], ordered=False)
        except (BulkWriteError, DuplicateKeyError) as exc:
            if not is_duplicate_key(exc):
                raise
            plan.after = None
    for k in range(0, len(plan.updates), CHUNK):
        ops = plan.updates[k : k + CHUNK]
        if (await coll.bulk_write(ops, ordered=False)).matched_count != len(ops):
            plan.after = None
    for k in range(0, len(plan.deletes), CHUNK):
        ids = plan.deletes[k : k + CHUNK]
        if (await coll.delete_many({"_id": {"$in": ids}})).deleted_count != len(ids):
            plan.after = None


# --- rebalancing ---------------------------------------------------------------------------


async def rebalance(task: LabelingTask, kind: AssignmentKind = AssignmentKind.REVIEW) -> Changes:
    """After the people (or weights) changed: move work nobody has started, and every open
    item of a person who left the task (started or not: they can no longer finish it)."""
    changes = Changes(reason="REBALANCED")
    people, weights = people_of(task, kind)
    async with task_lock(task.id):
        docs = (
            await Assignment.get_pymongo_collection()
            .find(
                {"task_id": task.id, "kind": kind.value, "state": {"$in": list(OPEN_STATES)}},
                {"user_id": 1, "state": 1, "order": 1, "input_id": 1},
            )
            .to_list()
        )
        counts: dict[str, int] = {}
        movable: dict[str | None, list[tuple[str, str, str]]] = {}
        current = set(people)
        for d in docs:
            user = d.get("user_id")
            if user is not None:
                counts[user] = counts.get(user, 0) + 1
            if d["state"] == AssignmentState.OPEN.value or user not in current:
                movable.setdefault(user, []).append((d.get("order", ""), d["_id"], d["input_id"]))
        ordered = {u: [(i, inp) for _, i, inp in sorted(items)] for u, items in movable.items()}
        moves = partition.rebalance(people, weights, counts, ordered)
        inputs = {d["_id"]: d["input_id"] for d in docs}
        ops = [
            UpdateOne(
                {"_id": m.item_id, "state": {"$in": list(OPEN_STATES)}, "user_id": m.from_user},
                {
                    "$set": {
                        "user_id": m.to_user,
                        "state": AssignmentState.OPEN.value,
                        "bucket": bucket(kind, AssignmentState.OPEN, m.to_user),
                    },
                    "$currentDate": {"updated_at": True},
                },
            )
            for m in moves
        ]
        for k in range(0, len(ops), CHUNK):
            await Assignment.get_pymongo_collection().bulk_write(ops[k : k + CHUNK], ordered=False)
        if ops:
            await forget_counts([task.id])
    for m in moves:
        changes.remove(kind.value, m.from_user, inputs[m.item_id])
        changes.add(kind.value, m.to_user, inputs[m.item_id])
    return changes
