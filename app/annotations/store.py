"""The one writer of the annotations collection.

Every change to an annotation goes through a function of this module: a person's new
annotations, a model's routed predictions, audit sampling, review decisions, edits, removals,
and deletions with an input or a task. Each applies its write and then emits one
``ChangeSet`` (``app.annotations.changes``) with every annotation's status before and after,
from which the listeners derive counters, queues, audit samples and events. Nothing else writes
the collection (``tests/annotations/test_one_writer.py`` fails if some module does).

Writes that depend on a status are conditional on it (``{"_id": ..., "status": before}``), so
the ``before`` a record reports is the one the write replaced, whatever ran concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import DeleteOne, InsertOne, UpdateOne

from app.annotations.changes import ChangeSet, Reason, emit
from app.annotations.models import Annotation, AnnotationStatus
from app.core import pagination
from app.core.db import any_of, duplicates_ignored
from app.core.documents import utcnow
from app.core.ids import new_id

SUCCESS = AnnotationStatus.SUCCESS.value
AWAITING = AnnotationStatus.AWAITING_REVIEW.value
CONSENSUS = AnnotationStatus.AWAITING_CONSENSUS_REVIEW.value
WAITING = (AWAITING, CONSENSUS)
# Annotations a model may rewrite; anything else was decided by a person.
MACHINE_STATUSES = (SUCCESS, AWAITING)
CHUNK = 1000
HEAD = {"_id": 1, "app_id": 1, "task_id": 1, "input_id": 1, "status": 1}


def _coll() -> Any:
    return Annotation.get_pymongo_collection()


async def _bulk(ops: list[Any]) -> None:
    """Unordered bulk write; a duplicate key means a concurrent run wrote the same thing."""
    for k in range(0, len(ops), CHUNK):
        with duplicates_ignored():
            await _coll().bulk_write(ops[k : k + CHUNK], ordered=False)


async def _heads(query: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = await _coll().find(query, HEAD).to_list()
    return docs


# --- people ----------------------------------------------------------------------------------


async def insert(runtime: Any, docs: Sequence[Annotation], actor: str) -> None:
    """A person's new annotations (already validated by the caller)."""
    if not docs:
        return
    await Annotation.insert_many(list(docs))
    changes = ChangeSet(Reason.LABELED, actor=actor)
    for d in docs:
        changes.add(
            d.model_dump(by_alias=True, include={"id", "app_id", "task_id", "input_id", "box", "polygon"}),
            None,
            d.status,
        )
    await emit(runtime, changes)


async def remove(runtime: Any, ids: Sequence[str], actor: str | None) -> list[str]:
    """Delete annotations by id; returns the ids that existed."""
    docs = await _heads({"_id": {"$in": list(ids)}})
    if not docs:
        return []
    await _coll().delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
    changes = ChangeSet(Reason.REMOVED, actor=actor)
    for d in docs:
        changes.add(d, d["status"], None)
    await emit(runtime, changes)
    return [d["_id"] for d in docs]


async def edit(runtime: Any, doc: Annotation, updates: dict[str, Any], actor: str) -> bool:
    """Apply a person's edit if the annotation still has the status it was read with."""
    res = await _coll().update_one(
        {"_id": doc.id, "status": doc.status.value},
        {"$set": updates, "$currentDate": {"reviewed_at": True, "updated_at": True}},
    )
    if res.matched_count == 0:
        return False
    changes = ChangeSet(Reason.EDITED, actor=actor)
    head = {
        "_id": doc.id,
        "app_id": doc.app_id,
        "task_id": doc.task_id,
        "input_id": doc.input_id,
        "box": updates.get("box", doc.box),
        "polygon": updates.get("polygon", doc.polygon),
    }
    changes.add(head, doc.status.value, updates.get("status", doc.status.value))
    await emit(runtime, changes)
    return True


def _stamp(actor: str, action: str, status: str) -> dict[str, Any]:
    return {
        "$set": {"status": status, "reviewed_by": actor, "review_action": action},
        "$currentDate": {"reviewed_at": True, "updated_at": True},
    }


async def decide(
    runtime: Any, actor: str, docs: Sequence[dict[str, Any]], action: str, target: str, needed: int
) -> dict[str, str]:
    """A review decision on waiting annotations (``docs``: their heads with ``approved_by``).

    ``target`` is the status a decision leads to; an approval under consensus (``needed`` > 1)
    collects approvals and turns SUCCESS at the ``needed``-th. Returns ``{id: new status}`` of
    the annotations this call changed (another reviewer may have decided some meanwhile).
    """
    if action == "APPROVE" and needed > 1:
        after = await _approve_consensus(actor, docs, needed)
    else:
        after = {}
        for old in WAITING:
            ids = [d["_id"] for d in docs if d["status"] == old]
            for k in range(0, len(ids), CHUNK):
                chunk = ids[k : k + CHUNK]
                res = await _coll().update_many(
                    {"_id": {"$in": chunk}, "status": old}, _stamp(actor, action, target)
                )
                if res.modified_count < len(chunk):  # someone decided a few meanwhile
                    mine = (
                        await _coll()
                        .find({"_id": {"$in": chunk}, "reviewed_by": actor, "status": target}, {"_id": 1})
                        .to_list()
                    )
                    chunk = [d["_id"] for d in mine]
                after.update(dict.fromkeys(chunk, target))
    changes = ChangeSet(Reason.REVIEWED, actor=actor)
    for d in docs:
        if d["_id"] in after:
            changes.add(d, d["status"], after[d["_id"]])
    await emit(runtime, changes)
    return after


async def _approve_consensus(actor: str, docs: Sequence[dict[str, Any]], needed: int) -> dict[str, str]:
    ops: list[Any] = []
    for d in docs:
        approvals = set(d.get("approved_by") or []) | {actor}
        status = SUCCESS if len(approvals) >= needed else CONSENSUS
        update = _stamp(actor, "APPROVE", status)
        update["$addToSet"] = {"approved_by": actor}
        if status == CONSENSUS:
            update["$set"].pop("reviewed_by")  # decided only when consensus is reached
            update["$set"]["review_action"] = "APPROVE_PARTIAL"
        ops.append(UpdateOne({"_id": d["_id"], "status": d["status"]}, update))
    await _bulk(ops)
    ids = [d["_id"] for d in docs]
    # two reviewers approving at the same moment both wrote CONSENSUS; promote what has enough
    fresh = await _coll().find({"_id": {"$in": ids}}, {"status": 1, "approved_by": 1}).to_list()
    late = [f["_id"] for f in fresh if f["status"] == CONSENSUS and len(f.get("approved_by") or []) >= needed]
    if late:
        await _coll().update_many(
            {"_id": {"$in": late}, "status": CONSENSUS}, _stamp(actor, "APPROVE", SUCCESS)
        )
    fresh = await _coll().find({"_id": {"$in": ids}}, {"status": 1, "approved_by": 1}).to_list()
    return {f["_id"]: f["status"] for f in fresh if actor in (f.get("approved_by") or [])}


# --- machines --------------------------------------------------------------------------------


@dataclass
class MachineLabel:
    """What a model's routed prediction wants stored under ``key`` (None status: discarded)."""

    key: str
    input_id: str
    concept_id: str
    status: str | None
    confidence: float
    model_id: str
    box: list[float] | None = None
    polygon: list[float] | None = None
    model_version_id: str | None = None
    text: str | None = None  # a text region's recognised text


async def route(
    runtime: Any,
    app_id: str,
    task_id: str,
    input_ids: Sequence[str],
    wanted: dict[str, MachineLabel],
    dataset_ids: dict[str, list[str]],
) -> None:
    """Make the task's machine annotations on ``input_ids`` equal ``wanted``.

    Existing annotations are matched by key; ones a person decided are left alone, and
    machine annotations that no prediction supports any more are deleted.
    """
    existing = (
        await _coll()
        .find(
            {"task_id": task_id, "input_id": any_of(input_ids)},
            {**HEAD, "key": 1, "reviewed_by": 1, "labeled_by_model_id": 1, "box": 1, "polygon": 1},
        )
        .to_list()
    )
    by_key = {a["key"]: a for a in existing}
    ops: list[Any] = []
    changes = ChangeSet(Reason.ROUTED, considered={task_id: list(input_ids)})
    now = utcnow()
    for key, label in wanted.items():
        current = by_key.get(key)
        if current is not None and (current["status"] not in MACHINE_STATUSES or current.get("reviewed_by")):
            continue  # reviewed or sent back by a person: theirs now
        if label.status is None:
            if current is not None:
                ops.append(DeleteOne({"_id": current["_id"], "status": current["status"]}))
                changes.add(current, current["status"], None)
            continue
        if current is not None:
            ops.append(
                UpdateOne(
                    {"_id": current["_id"], "status": current["status"]},
                    {
                        "$set": {
                            "status": label.status,
                            "confidence": label.confidence,
                            "labeled_by_model_id": label.model_id,
                            "model_version_id": label.model_version_id,
                            "text": label.text,
                            "audit": False,
                        },
                        "$currentDate": {"updated_at": True},
                    },
                )
            )
            changes.add(current, current["status"], label.status)
            continue
        # model_construct: every field gets its default (all are written, MONGODB.md rule 8)
        # without validating values that are already the right types
        annotation_id = new_id()
        doc = Annotation.model_construct(
            id=annotation_id,
            page_key=annotation_id,  # model_construct runs no validator (models.py)
            app_id=app_id,
            input_id=label.input_id,
            concept_id=label.concept_id,
            dataset_ids=list(dataset_ids.get(label.input_id, [])),
            box=label.box,
            polygon=label.polygon,
            confidence=label.confidence,
            text=label.text,
            status=AnnotationStatus(label.status),
            labeled_by_model_id=label.model_id,
            model_version_id=label.model_version_id,
            task_id=task_id,
            key=key,
            created_at=now,
            updated_at=now,
        )
        row = doc.model_dump(by_alias=True, mode="python")
        ops.append(InsertOne(row))
        changes.add(row, None, label.status)
    for key, current in by_key.items():
        if (
            key not in wanted
            and current["status"] in MACHINE_STATUSES
            and not current.get("reviewed_by")
            and current.get("labeled_by_model_id") is not None
        ):
            ops.append(DeleteOne({"_id": current["_id"], "status": current["status"]}))
            changes.add(current, current["status"], None)
    await _bulk(ops)
    await emit(runtime, changes)


async def set_audit(
    runtime: Any, flag_on: Sequence[dict[str, Any]], flag_off: Sequence[dict[str, Any]]
) -> None:
    """Audit sampling: approved machine annotations to review (``audit``), or back."""
    changes = ChangeSet(Reason.AUDIT)
    if flag_on:
        ids = [d["_id"] for d in flag_on]
        await _coll().update_many(
            {"_id": {"$in": ids}, "status": {"$in": list(MACHINE_STATUSES)}, "reviewed_by": None},
            {"$set": {"status": AWAITING, "audit": True}, "$currentDate": {"updated_at": True}},
        )
    if flag_off:
        ids = [d["_id"] for d in flag_off]
        await _coll().update_many(
            {"_id": {"$in": ids}, "status": AWAITING, "reviewed_by": None},
            {"$set": {"status": SUCCESS, "audit": False}, "$currentDate": {"updated_at": True}},
        )
    touched = [d["_id"] for d in [*flag_on, *flag_off]]
    if not touched:
        return
    before = {d["_id"]: d for d in [*flag_on, *flag_off]}
    for d in await _heads({"_id": {"$in": touched}}):
        changes.add(d, before[d["_id"]]["status"], d["status"])
    await emit(runtime, changes)


# --- deletions -------------------------------------------------------------------------------


async def _delete(runtime: Any, query: dict[str, Any], changes: ChangeSet) -> int:
    docs = await _heads(query)
    for k in range(0, len(docs), CHUNK):
        await _coll().delete_many({"_id": {"$in": [d["_id"] for d in docs[k : k + CHUNK]]}})
    for d in docs:
        changes.add(d, d["status"], None)
    await emit(runtime, changes)
    return len(docs)


async def delete_for_inputs(runtime: Any, input_ids: Sequence[str]) -> int:
    if not input_ids:
        return 0
    changes = ChangeSet(Reason.INPUT_DELETED, deleted_inputs=list(input_ids))
    return await _delete(runtime, {"input_id": any_of(input_ids)}, changes)


async def delete_machine_output(runtime: Any, task_id: str) -> int:
    """The annotations the task's models made that nobody decided (a new run replaces them)."""
    query = {
        "task_id": task_id,
        "labeled_by_model_id": {"$ne": None},
        "reviewed_by": None,
        "status": {"$in": list(MACHINE_STATUSES)},
    }
    return await _delete(runtime, query, ChangeSet(Reason.RUN_RESET))


async def delete_task(runtime: Any, app_id: str, task_id: str, *, delete_annotations: bool) -> None:
    """The task is gone; its annotations go with it when asked, else they stay on the inputs."""
    changes = ChangeSet(Reason.TASK_DELETED, deleted_tasks=[task_id])
    if delete_annotations:
        await _delete(runtime, {"app_id": app_id, "task_id": task_id}, changes)
    else:
        await emit(runtime, changes)


async def delete_app(app_id: str) -> None:
    """The whole app is being deleted (its tasks, queues and counters with it): nothing is left
    to derive, so no change set is emitted."""
    await _coll().delete_many({"app_id": app_id})


# --- dataset membership (copied from inputs; no status changes) ------------------------------


async def set_dataset(app_id: str, input_ids: Sequence[str] | None, dataset_id: str, *, member: bool) -> None:
    """Add or remove ``dataset_id`` on the annotations of ``input_ids`` (None: every input of
    the app). Nothing derived depends on it, so no change set is emitted."""
    query: dict[str, Any] = {"app_id": app_id}
    if input_ids is not None:
        query["input_id"] = {"$in": list(input_ids)}
    operator = "$addToSet" if member else "$pull"
    await _coll().update_many(query, {operator: {"dataset_ids": dataset_id}})


# --- start-up --------------------------------------------------------------------------------


async def backfill_page_keys() -> int:
    """Annotations stored before ``page_key`` existed get it (models.py). No change set:
    nothing derived depends on it."""
    return await pagination.backfill_page_keys(_coll())
