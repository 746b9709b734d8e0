"""Subscriptions: labeling progress, an app's task list, a reviewer's queue.

Every subscription first yields a snapshot read from MongoDB, then updates that arrive over
Redis through this process's hub (``app.live.hub``). After a Redis outage, or when a client is
too slow for its bounded mailbox, the subscription yields a fresh snapshot (``snapshot: true``)
instead of the events it missed.

Access is checked before the stream starts, so a refusal is the protocol's ``error`` message
with ``extensions.code`` (``NOT_FOUND`` for another app's task, exactly like an unknown id).
It is checked again while the stream runs (``app.live.access``): when the caller's key is
revoked, or they leave the app or lose the role it needs, the operation ends with the same
typed error a new subscription would get (``UNAUTHENTICATED``, ``NOT_FOUND``,
``PERMISSION_DENIED``), sent by the transport as the protocol's ``error`` message.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from graphql import GraphQLError

from app.access import REVIEWERS, Principal
from app.core import pubsub
from app.core.errors import DomainError, ErrorCode, NotFound
from app.graphql.context import Info
from app.live import service
from app.live.access import LIVE_GUARD, AccessLost, Guard, Rule
from app.live.execution import LIVE_SINK, SharedFrame
from app.live.hub import Delivery, Hub, Renderer, Resync
from app.observability import metrics
from app.tasks import models as m
from app.tasks import progress
from app.tasks.graphql import TaskMetrics, TaskStatus

log = logging.getLogger("labelstream.live")

F = TypeVar("F")


@strawberry.type(description="A labeling task's status and metrics, as a live update.")
class TaskProgress(SharedFrame):
    task_id: strawberry.ID
    app_id: strawberry.ID
    name: str
    status: TaskStatus  # type: ignore[valid-type]
    seeding: bool = strawberry.field(
        description="The run's work is still being stored (see LabelingTask.seeding); "
        "metrics.inputsSeeded grows meanwhile."
    )
    metrics: TaskMetrics
    reviewed_percent: float = strawberry.field(
        description="The task's '% reviewed' (see TaskMetrics.reviewedPercent)."
    )
    final: bool = strawberry.field(description="DONE, IDLE, FAILED or CANCELLED: the run is over.")
    snapshot: bool = strawberry.field(
        description="Read from the database: the first message, and after any re-synchronisation."
    )
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: m.LabelingTask | service.TaskState, *, snapshot: bool) -> TaskProgress:
        m = doc.metrics
        reviewed = progress.reviewed_percent(m.inputs_reviewed, m.inputs_to_review, doc.status)
        return cls(
            task_id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            name=doc.name,
            status=doc.status,
            seeding=doc.seeding,
            metrics=TaskMetrics.from_model(doc.metrics, doc.status),
            reviewed_percent=reviewed,
            final=doc.status in service.FINAL,
            snapshot=snapshot,
            updated_at=doc.updated_at,
        )


@strawberry.type(description="The app's tasks: all of them in a snapshot, then each one that changed.")
class LabelingTasksUpdate(SharedFrame):
    snapshot: bool
    tasks: list[TaskProgress]


@strawberry.enum(name="ReviewQueueChange")
class ReviewQueueChange(enum.Enum):
    SNAPSHOT = "SNAPSHOT"
    ADDED = "ADDED"
    REMOVED = "REMOVED"


@strawberry.type
class ReviewQueueCounts:
    inputs: int = strawberry.field(description="Inputs with at least one annotation waiting for you.")
    annotations: int


@strawberry.type(description="Your review queue of a task: its counts, then inputs added or removed.")
class ReviewQueueUpdate(SharedFrame):
    change: ReviewQueueChange
    task_id: strawberry.ID
    reviewer_id: strawberry.ID | None = strawberry.field(
        description="Null while the inputs are not assigned to one reviewer (everyone sees them)."
    )
    input_ids: list[strawberry.ID]
    counts: ReviewQueueCounts | None = strawberry.field(description="Set on SNAPSHOT only.")


# ---------------------------------------------------------------------------------------------
# renderers: one Redis event -> one frame, built once per process (see app.live.hub)


class ProgressRenderer:
    coalesce = True

    def key(self, event: dict[str, Any]) -> str | None:
        task_id = event.get("taskId")
        return task_id if isinstance(task_id, str) else None

    def early(self, key: str | None, event: dict[str, Any], seen: dict[Any, Any]) -> Delivery | None:
        """The frame of the state the event carries (its publisher's read), sent before
        ``render`` reads MongoDB; None without one, or when it is older than a state this topic
        already sent (``seen``: key -> the newest ``mark`` sent, early or rendered), e.g. a
        publisher that read before another one wrote and published."""
        state = service.published_state(key, event) if key else None
        if state is None:
            return None
        mark = _mark(state)
        last = seen.get(key)
        if last is not None and mark < last:
            return None
        return Delivery(self.frame(state), key=state.id, final=state.status in service.FINAL, mark=mark)

    async def render(self, key: str | None, event: dict[str, Any]) -> Delivery | None:
        doc = await service.load_task_state(key) if key else None
        if doc is None:
            return None
        return Delivery(self.frame(doc), key=doc.id, final=doc.status in service.FINAL, mark=_mark(doc))

    def frame(self, doc: m.LabelingTask | service.TaskState) -> Any:
        return TaskProgress.from_document(doc, snapshot=False)


def _mark(state: m.LabelingTask | service.TaskState) -> tuple[Any, int]:
    """How recent a task's state is: its last write, then (for writes within the same clock
    tick, e.g. two batches' records) how many inputs it had counted, which only grows in a run."""
    return (state.updated_at, state.metrics.inputs_processed + state.metrics.inputs_failed)


class AppTasksRenderer(ProgressRenderer):
    def frame(self, doc: m.LabelingTask | service.TaskState) -> Any:
        return LabelingTasksUpdate(snapshot=False, tasks=[TaskProgress.from_document(doc, snapshot=False)])


class ReviewRenderer:
    coalesce = False

    def key(self, event: dict[str, Any]) -> str | None:
        return None

    async def render(self, key: str | None, event: dict[str, Any]) -> Delivery | None:
        try:
            change = ReviewQueueChange(event.get("action"))
        except ValueError:
            return None
        reviewer = event.get("reviewerId")
        frame = ReviewQueueUpdate(
            change=change,
            task_id=strawberry.ID(str(event.get("taskId"))),
            reviewer_id=strawberry.ID(reviewer) if reviewer else None,
            input_ids=[strawberry.ID(str(i)) for i in event.get("inputIds") or []],
            counts=None,
        )
        return Delivery(frame, audience=reviewer or None)


PROGRESS: Renderer = ProgressRenderer()
APP_TASKS: Renderer = AppTasksRenderer()
REVIEW: Renderer = ReviewRenderer()


# ---------------------------------------------------------------------------------------------
# the stream every subscription shares


def typed_error(exc: DomainError) -> GraphQLError:
    return GraphQLError(exc.message, extensions={"code": exc.code.value, "field": exc.field})


def _hub(info: Info) -> Hub:
    hub: Hub | None = getattr(info.context.runtime, "live", None)
    if hub is None:
        raise typed_error(
            DomainError("live updates need Redis: set REDIS_URL", code=ErrorCode.NO_QUEUE, field=None)
        )
    return hub


def _principal(info: Info) -> Principal:
    try:
        return info.context.principal
    except DomainError as exc:
        raise typed_error(exc) from None


@dataclass(frozen=True, slots=True)
class _Admission:
    """The connection's guard as it was before the access check (None over HTTP)."""

    guard: Guard | None
    generation: int


def _admit(info: Info) -> _Admission:
    guard = LIVE_GUARD.get()
    if guard is None:
        return _Admission(None, 0)
    if guard.revoked is not None:  # the connection is being closed: its key no longer works
        raise typed_error(guard.revoked)
    return _Admission(guard, guard.generation)


async def _checked(info: Info, check: Callable[[], Awaitable[F]]) -> F:
    """Run an access check; its refusal becomes the protocol's typed error message."""
    try:
        return await check()
    except DomainError as exc:
        raise typed_error(exc) from None


async def _live(
    info: Info,
    hub: Hub,
    channel: str,
    renderer: Renderer,
    snapshot: Callable[[], Awaitable[Any]],
    snapshot_key: Any,
    admission: _Admission,
    rule: Rule,
    audience: str | None = None,
    complete_on_final: bool = False,
) -> AsyncGenerator[Any, None]:
    # Subscribed before the snapshot is read: nothing published in between is lost, and
    # deliveries rendered before the snapshot read began (older state) are skipped.
    sub = hub.subscribe(channel, renderer, audience=audience)
    # Set by the transport for this operation (None over HTTP). Once the snapshot has gone out
    # the usual way, the hub sends most events for us while we wait in ``sub.get()``. Not when
    # the stream ends on a final state: this generator has to see every frame to know.
    sink = sub.sink = None if complete_on_final else LIVE_SINK.get()
    # Watched from now on. Re-checked at once when a re-check of the guard was asked for since
    # the access check (it may have read before this operation was watched), or when the guard
    # is this operation's own (over HTTP: nothing watched it until now).
    guard = admission.guard
    owned = guard is None
    if guard is None:
        principal = info.context.principal
        guard = hub.access.guard(principal.user_id, principal.key_id)
    path = info.path.as_list()
    watch = guard.watch(rule, lambda exc: sub.end(AccessLost.of(exc, path)))
    if owned or guard.generation != admission.generation:
        hub.access.recheck([guard])

    async def load() -> tuple[int, Any]:
        seq = hub.next_seq()
        return seq, await snapshot()

    metrics.active_subscriptions.inc()
    try:
        seq, frame = await hub.shared(snapshot_key, load)
        sub.floor = seq
        yield frame
        if complete_on_final and getattr(frame, "final", False):
            return
        while True:
            item = await sub.get()
            if isinstance(item, Resync):
                seq, frame = await hub.shared(snapshot_key, load)
                sub.floor = seq
                yield frame
                if complete_on_final and getattr(frame, "final", False):
                    return
            elif complete_on_final and item.seq > seq:
                yield item.frame
                if item.final:
                    return
            elif item.seq > seq:
                # another subscriber of the same operation already executed and encoded it
                encoded = sink.encoded(item.frame) if sink is not None else None
                if encoded is not None:
                    await sink.send(encoded)  # type: ignore[union-attr]
                else:
                    yield item.frame
    except DomainError as exc:
        raise typed_error(exc) from None
    except GraphQLError:
        raise
    except Exception as exc:
        request_id = info.context.request_id
        log.error("subscription %s failed", request_id, exc_info=exc)
        raise GraphQLError(
            f"internal error (request id {request_id})",
            extensions={"code": "INTERNAL", "requestId": request_id},
        ) from None
    finally:
        metrics.active_subscriptions.dec()
        guard.unwatch(watch)
        if owned:
            hub.access.release(guard)
        hub.unsubscribe(sub)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="A task's status and metrics: a snapshot, then changes (at most 4 per second, "
        "the latest wins; a final DONE, IDLE, FAILED or CANCELLED is always sent). While a run goes "
        "on, its progress moves every few inputs or half second, whatever the batch size. With "
        "completeOnFinal the subscription completes after the first state whose final is true "
        "(at once, after the snapshot, for a task already over)."
    )
    async def labeling_task_progress(
        self,
        info: Info,
        task_id: strawberry.ID,
        complete_on_final: Annotated[
            bool,
            strawberry.argument(
                description="Complete the subscription after sending a final state (DONE, IDLE, "
                "FAILED, CANCELLED); by default it stays open for later runs."
            ),
        ] = False,
    ) -> AsyncGenerator[TaskProgress, None]:
        hub = _hub(info)
        principal = _principal(info)
        admission = _admit(info)
        task = await _checked(info, lambda: service.task_for(principal, str(task_id)))
        rule = Rule(task.app_id, "labeling task", str(task_id), "taskId")

        async def snapshot() -> TaskProgress:
            doc = await service.load_task(task.id)
            if doc is None:
                raise NotFound("labeling task", task.id, field="taskId")
            return TaskProgress.from_document(doc, snapshot=True)

        channel = pubsub.task_channel(task.id)
        return _live(
            info,
            hub,
            channel,
            PROGRESS,
            snapshot,
            ("progress", task.id),
            admission,
            rule,
            complete_on_final=complete_on_final,
        )

    @strawberry.subscription(
        description="The app's labeling tasks (the most recent ones in the snapshot), then every "
        "task whose status or percentages change."
    )
    async def labeling_tasks(
        self, info: Info, app_id: strawberry.ID
    ) -> AsyncGenerator[LabelingTasksUpdate, None]:
        hub = _hub(info)
        principal = _principal(info)
        admission = _admit(info)
        await _checked(info, lambda: service.check_app(principal, str(app_id)))
        rule = Rule(str(app_id), "app", str(app_id), "appId")
        limit = info.context.settings.live_task_list_limit

        async def snapshot() -> LabelingTasksUpdate:
            docs = await service.app_tasks(str(app_id), limit)
            return LabelingTasksUpdate(
                snapshot=True, tasks=[TaskProgress.from_document(d, snapshot=True) for d in docs]
            )

        channel = pubsub.app_tasks_channel(str(app_id))
        return _live(info, hub, channel, APP_TASKS, snapshot, ("app", str(app_id)), admission, rule)

    @strawberry.subscription(
        description="Your review queue in a task: the counts waiting for you, then inputs added to "
        "or removed from it (owner, admin, reviewer)."
    )
    async def review_queue(
        self, info: Info, task_id: strawberry.ID
    ) -> AsyncGenerator[ReviewQueueUpdate, None]:
        hub = _hub(info)
        principal = _principal(info)
        admission = _admit(info)
        task = await _checked(info, lambda: service.task_for_reviewer(principal, str(task_id)))
        rule = Rule(task.app_id, "labeling task", str(task_id), "taskId", frozenset(REVIEWERS))
        reviewer = principal.user_id

        async def snapshot() -> ReviewQueueUpdate:
            counts = await service.review_counts(task.id, reviewer)
            return ReviewQueueUpdate(
                change=ReviewQueueChange.SNAPSHOT,
                task_id=strawberry.ID(task.id),
                reviewer_id=strawberry.ID(reviewer),
                input_ids=[],
                counts=ReviewQueueCounts(inputs=counts.inputs, annotations=counts.annotations),
            )

        return _live(
            info,
            hub,
            pubsub.review_channel(task.id),
            REVIEW,
            snapshot,
            ("review", task.id, reviewer),
            admission,
            rule,
            audience=reviewer,
        )
