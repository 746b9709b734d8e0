"""Change records: what every write to the annotations collection emits.

``app.annotations.store`` is the only code that writes annotations. Each of its calls applies
its write, then hands one ``ChangeSet`` to every listener, in the order they subscribed. What is
derived from annotations (task counters, review and labeling queues, audit sampling, live
events, later the search index) is kept in step by those listeners, so a new kind of change
cannot forget one of them: it is a new ``Reason`` on the same path.

Listeners are subscribed once per process by ``app.bootstrap.install_listeners`` (the API and
the worker both call it). This module knows no listener: the annotations domain sits below the
domains that derive state from it (import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("labelstream.annotations")


class Reason(enum.StrEnum):
    """Why annotations changed (the listeners' ``reason`` in events follows it)."""

    LABELED = "LABELED"  # a person added annotations (in a task or not)
    ROUTED = "ROUTED"  # a model's predictions were routed (a batch, or re-applied thresholds)
    AUDIT = "AUDIT"  # audit sampling moved approved annotations to review, or back
    REVIEWED = "REVIEWED"  # approve / reject / request changes
    EDITED = "EDITED"  # a person changed the concept, region or text
    REMOVED = "REMOVED"  # removeAnnotations
    INPUT_DELETED = "INPUT_DELETED"  # the annotations went with their input
    RUN_RESET = "RUN_RESET"  # a new run deleted the machine output of the previous one
    TASK_DELETED = "TASK_DELETED"  # the task is gone (its annotations deleted or kept)
    SETTLED = "SETTLED"  # not a write: a run's inputs are all processed (audit is drawn now)


@dataclass(frozen=True)
class Change:
    """One annotation before and after (``None``: it did not exist / no longer exists)."""

    annotation_id: str
    app_id: str
    task_id: str | None
    input_id: str
    before: str | None
    after: str | None
    # Whether the annotation has a region after the change: False lets the search listener
    # skip reading it back to find out; None (not known to the writer) leaves it to the read.
    region: bool | None = None


def _region(doc: dict[str, Any]) -> bool | None:
    if "box" not in doc and "polygon" not in doc:
        return None
    return doc.get("box") is not None or doc.get("polygon") is not None


@dataclass
class ChangeSet:
    reason: Reason
    changes: list[Change] = field(default_factory=list)
    actor: str | None = None  # the person who acted; None for machines
    # Inputs a task looked at although none of their annotations changed (a routed input whose
    # model found nothing goes to the labeling queue): ``{task_id: [input_id, ...]}``.
    considered: dict[str, list[str]] = field(default_factory=dict)
    deleted_tasks: list[str] = field(default_factory=list)
    deleted_inputs: list[str] = field(default_factory=list)  # whatever work they had goes too

    def add(self, doc: dict[str, Any], before: str | None, after: str | None) -> None:
        """``doc``: the annotation's head (as stored after the change where it has ``box`` or
        ``polygon``, which tells whether it has a region)."""
        self.changes.append(
            Change(
                doc["_id"], doc["app_id"], doc.get("task_id"), doc["input_id"], before, after, _region(doc)
            )
        )

    def by_task(self) -> dict[str, list[str]]:
        """Every task this touches, with its inputs (in first-seen order, no repeats)."""
        out: dict[str, dict[str, None]] = {}
        for task_id, inputs in self.considered.items():
            out.setdefault(task_id, {}).update(dict.fromkeys(inputs))
        for c in self.changes:
            if c.task_id:
                out.setdefault(c.task_id, {})[c.input_id] = None
        return {t: list(i) for t, i in out.items()}

    def status_changes(self, task_id: str) -> Iterable[Change]:
        return (c for c in self.changes if c.task_id == task_id and c.before != c.after)

    @property
    def empty(self) -> bool:
        return not (self.changes or self.considered or self.deleted_tasks or self.deleted_inputs)


Listener = Callable[[Any, ChangeSet], Awaitable[None]]
_listeners: list[tuple[str, Listener]] = []


def subscribe(name: str, listener: Listener) -> None:
    """Add a listener once (by name): installing twice in one process changes nothing."""
    if all(existing != name for existing, _ in _listeners):
        _listeners.append((name, listener))


def listeners() -> list[str]:
    return [name for name, _ in _listeners]


async def emit(runtime: Any, changes: ChangeSet) -> None:
    """Every listener sees the change set, even when an earlier one failed: the write is done,
    and each derived state is repaired independently (a failure is logged and re-raised after
    the others ran)."""
    if changes.empty:
        return
    if not _listeners:
        raise RuntimeError("no annotation listeners installed: call app.bootstrap.install_listeners()")
    failure: BaseException | None = None
    for name, listener in list(_listeners):
        try:
            await listener(runtime, changes)
        except Exception as exc:
            log.exception("annotation listener %s failed on %s", name, changes.reason)
            failure = failure or exc
    if failure is not None:
        raise failure
