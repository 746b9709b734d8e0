"""Assignments: one document per (task, input, slot) of work given to one person.

``_id`` is ``<kind>:<task_id>:<input_id>:<slot>``, so creating an assignment is an insert that
the unique ``_id`` makes atomic on every engine: an input is never assigned twice, whatever
runs concurrently (MONGODB.md, contract 3). ``slot`` is 0 except under consensus, where an
input needs ``approval_threshold_reviewers`` distinct reviewers and gets one slot per reviewer.

``bucket`` is ``<kind>|<state>|<user_id or ->``, rewritten with every change of state or user,
so one ``$group`` on one field gives every count the metrics need (one accumulator: FerretDB).
"""

from __future__ import annotations

import enum
from datetime import datetime

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class AssignmentKind(enum.StrEnum):
    REVIEW = "REVIEW"
    LABEL = "LABEL"


class AssignmentState(enum.StrEnum):
    OPEN = "OPEN"  # nobody has started it: rebalancing may move it
    STARTED = "STARTED"  # its assignee opened it: it stays theirs
    DONE = "DONE"


OPEN_STATES = (AssignmentState.OPEN.value, AssignmentState.STARTED.value)


def assignment_id(kind: AssignmentKind, task_id: str, input_id: str, slot: int = 0) -> str:
    return f"{kind.value}:{task_id}:{input_id}:{slot}"


def bucket(kind: AssignmentKind | str, state: AssignmentState | str, user_id: str | None) -> str:
    return f"{AssignmentKind(kind).value}|{AssignmentState(state).value}|{user_id or '-'}"


class Assignment(BaseDocument):
    app_id: str
    task_id: str
    input_id: str
    kind: AssignmentKind
    slot: int = 0
    user_id: str | None = None  # None while the task has nobody to give it to
    state: AssignmentState = AssignmentState.OPEN
    bucket: str = ""
    order: str = ""  # time-sortable id taken when the input entered the queue (oldest first)
    min_confidence: float = 1.0  # of the annotations waiting in it (least confident first)
    concept_ids: list[str] = []  # concepts waiting in it (queue filter)
    waiting: int = 0  # annotations waiting in it
    reason: str = ""  # LABEL: EMPTY (the model left nothing) or CHANGES_REQUESTED
    started_at: datetime | None = None
    done_at: datetime | None = None
    done_by: str | None = None

    class Settings:
        name = "assignments"
        indexes = [
            IndexModel([("task_id", ASCENDING), ("state", ASCENDING)]),
            IndexModel([("user_id", ASCENDING)]),
            IndexModel([("input_id", ASCENDING)]),
            IndexModel([("bucket", ASCENDING)]),
        ]


class AssignmentCounts(BaseDocument):
    """``_id`` = the task's id: its ``bucket_counts`` as the last holder of its lock left them,
    so the next holder reads one document instead of grouping every assignment of the task
    (``app.review.assign.counts_under_lock``). ``holder`` is the token of a holder at work (its
    counts are not to be trusted until it stores them); ``counted_at`` (epoch seconds: a float,
    never a top-level datetime ``$set``, MONGODB.md) is when they were last grouped for real.
    A write to a task's assignments made outside its lock deletes the document (``forget_counts``)."""

    app_id: str
    buckets: list[str] = []
    counts: list[int] = []
    holder: str | None = None
    counted_at: float = 0.0

    class Settings:
        name = "assignment_counts"
        indexes = [IndexModel([("app_id", ASCENDING)])]


class TaskLock(BaseDocument):
    """``_id`` = ``lock:<task_id>``; held while a process decides who gets which work."""

    owner: str
    expires_at: datetime

    class Settings:
        name = "task_locks"
