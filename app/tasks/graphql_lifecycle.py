"""GraphQL for running tasks: start, cancel, retry failed inputs, re-apply thresholds, and the
per-input log (``taskInputs``)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.access import get_for
from app.core.pagination import paginate
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page
from app.tasks import lifecycle, service
from app.tasks import models as m
from app.tasks.graphql import (
    ConceptThresholdInput,
    LabelingTask,
    ThresholdRangeInput,
    _concept_thresholds,
)

InputState = strawberry.enum(m.InputState, name="TaskInputState")


@strawberry.type(description="One input's state in a task; failed ones say why.")
class TaskInput:
    id: strawberry.ID
    task_id: strawberry.ID
    input_id: strawberry.ID
    state: InputState  # type: ignore[valid-type]
    code: str | None = strawberry.field(
        description="Why it failed: "
        + ", ".join(c.value for c in m.FailureCode)
        + " (INFERENCE_TIME_LIMIT: the batch's inference was stopped after "
        "LABELSTREAM_BATCH_INFERENCE_LIMIT_S), or the model's own configuration error code."
    )
    message: str | None
    attempts: int
    approved: int
    awaiting_review: int
    discarded: int
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: m.TaskInput) -> TaskInput:
        return cls(
            id=strawberry.ID(doc.id),
            task_id=strawberry.ID(doc.task_id),
            input_id=strawberry.ID(doc.input_id),
            state=doc.state,
            code=doc.code,
            message=doc.message,
            attempts=doc.attempts,
            approved=doc.approved,
            awaiting_review=doc.awaiting_review,
            discarded=doc.discarded,
            updated_at=doc.updated_at,
        )


@strawberry.type(description="Where a concept's stored predictions go under the given thresholds.")
class ConceptHistogram:
    concept_id: strawberry.ID
    approved: int
    awaiting_review: int
    discarded: int


@strawberry.input
class ReapplyThresholdsInput:
    task_id: strawberry.ID
    thresholds: ThresholdRangeInput | None = strawberry.field(
        default=None, description="New global range; null keeps the task's."
    )
    concept_thresholds: list[ConceptThresholdInput] | None = strawberry.field(
        default=None, description="New per-concept ranges (replace all); null keeps the task's."
    )
    dry_run: bool = strawberry.field(
        default=True, description="Only count; change nothing. False re-routes the annotations."
    )


@strawberry.type
class TaskRunSuccess:
    labeling_task: LabelingTask


@strawberry.type
class ReapplyThresholdsSuccess:
    labeling_task: LabelingTask
    dry_run: bool
    histogram: list[ConceptHistogram]


StartLabelingTaskResult = result_union("StartLabelingTaskResult", TaskRunSuccess)
CancelLabelingTaskResult = result_union("CancelLabelingTaskResult", TaskRunSuccess)
RetryFailedInputsResult = result_union("RetryFailedInputsResult", TaskRunSuccess)
ReapplyThresholdsResult = result_union("ReapplyThresholdsResult", ReapplyThresholdsSuccess)


@strawberry.type
class Query:
    @strawberry.field(description="Per-input states of a task: its failure log, filterable by state.")
    async def task_inputs(
        self,
        info: Info,
        task_id: strawberry.ID,
        states: list[InputState] | None = None,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[TaskInput]:
        task = await get_for(
            info.context.principal, m.LabelingTask, task_id, what="labeling task", field="taskId"
        )
        # $eq: nx-27017 uses the (task_id, state) index for it, not for a plain equality
        query: dict[str, object] = {"task_id": {"$eq": task.id}}
        if states:
            query["state"] = {"$in": [m.InputState(s).value for s in states]}
        page = await paginate(m.TaskInput, query, info.context.page(first, after))
        return connection_from_page(page, TaskInput.from_document)  # type: ignore[no-any-return]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Run the task over every input of its dataset (again): a new run (owner, "
        "admin). A large dataset is seeded in the background (`seeding`), so this returns at once."
    )
    @mutation_errors
    async def start_labeling_task(self, info: Info, id: strawberry.ID) -> StartLabelingTaskResult:
        task = await lifecycle.load_for_manager(info.context.principal, id)
        done = await lifecycle.start(info.context.runtime, task)
        return TaskRunSuccess(labeling_task=LabelingTask.from_document(done))

    @strawberry.mutation(description="Stop a task; queued work is dropped (owner, admin).")
    @mutation_errors
    async def cancel_labeling_task(self, info: Info, id: strawberry.ID) -> CancelLabelingTaskResult:
        task = await lifecycle.load_for_manager(info.context.principal, id)
        done = await lifecycle.cancel(info.context.runtime, task)
        return TaskRunSuccess(labeling_task=LabelingTask.from_document(done))

    @strawberry.mutation(description="Process only the task's failed inputs again (owner, admin).")
    @mutation_errors
    async def retry_failed_inputs(self, info: Info, id: strawberry.ID) -> RetryFailedInputsResult:
        task = await lifecycle.load_for_manager(info.context.principal, id)
        done = await lifecycle.retry_failed(info.context.runtime, task)
        return TaskRunSuccess(labeling_task=LabelingTask.from_document(done))

    @strawberry.mutation(
        description="Route the stored predictions with new thresholds, without running a model. "
        "With dryRun (the default) only the per-concept histogram is returned; otherwise the "
        "thresholds are saved and annotations rewritten, leaving reviewed ones untouched."
    )
    @mutation_errors
    async def reapply_thresholds(self, info: Info, input: ReapplyThresholdsInput) -> ReapplyThresholdsResult:
        task = await lifecycle.load_for_manager(info.context.principal, input.task_id)
        thresholds = (
            service.check_range(input.thresholds.to_model(), "thresholds") if input.thresholds else None
        )
        per_concept = None
        if input.concept_thresholds is not None:
            per_concept = service.check_concept_thresholds(
                _concept_thresholds(input.concept_thresholds), task.concept_ids
            )
        histogram = await lifecycle.reapply_thresholds(
            info.context.runtime, task, thresholds, per_concept, dry_run=input.dry_run
        )
        fresh = await m.LabelingTask.get(task.id) or task
        return ReapplyThresholdsSuccess(
            labeling_task=LabelingTask.from_document(fresh),
            dry_run=input.dry_run,
            histogram=[
                ConceptHistogram(
                    concept_id=strawberry.ID(h.concept_id),
                    approved=h.approved,
                    awaiting_review=h.awaiting_review,
                    discarded=h.discarded,
                )
                for h in histogram
            ],
        )
