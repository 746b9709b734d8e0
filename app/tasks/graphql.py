"""GraphQL for labeling tasks."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.concepts.graphql import Concept
from app.concepts.models import Concept as ConceptDoc
from app.core.errors import NotFound
from app.datasets.graphql import Dataset
from app.datasets.models import Dataset as DatasetDoc
from app.graphql.common import DeleteSuccess
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page
from app.models.graphql import Model, Workflow
from app.models.models import ModelEntry as ModelDoc
from app.models.models import Workflow as WorkflowDoc
from app.review import metrics as review_metrics
from app.review import queue as review_queue
from app.review.types import LabeledBy, TaskReview
from app.tasks import lifecycle, progress, service
from app.tasks import models as m

TaskStatus = strawberry.enum(m.TaskStatus, name="TaskStatus")
TaskPriority = strawberry.enum(m.TaskPriority, name="TaskPriority")
TaskType = strawberry.enum(m.TaskType, name="TaskType")
ReviewStrategy = strawberry.enum(m.ReviewStrategy, name="ReviewStrategy")
PartitionStrategy = strawberry.enum(m.PartitionStrategy, name="PartitionStrategy")


@strawberry.type(
    description="At or above `upper` a prediction is approved, between `lower` and `upper` it "
    "waits for review, below `lower` it is discarded (Clarifai ThresholdRange)."
)
class ThresholdRange:
    lower: float
    upper: float
    lower_inclusive: bool
    upper_inclusive: bool

    @classmethod
    def from_model(cls, value: m.ThresholdRange) -> ThresholdRange:
        return cls(
            lower=value.lower,
            upper=value.upper,
            lower_inclusive=value.lower_inclusive,
            upper_inclusive=value.upper_inclusive,
        )


@strawberry.type
class ConceptThreshold:
    concept_id: strawberry.ID
    range: ThresholdRange


@strawberry.type(description="A model concept counted as an app concept (many-to-one).")
class ConceptMapping:
    model_concept_id: strawberry.ID
    concept_id: strawberry.ID


@strawberry.type
class ReviewerWeight:
    user_id: strawberry.ID
    weight: float


@strawberry.type(description="Counters maintained by the workers (exact once the task is DONE).")
class TaskMetrics:
    inputs_total: int = strawberry.field(
        description="Inputs of the run. While the run is seeded in the background (`seeding`), "
        "the dataset's input count when it started; exact once seeding ends."
    )
    inputs_seeded: int = strawberry.field(
        description="Inputs whose work is stored and claimable by workers; grows chunk by chunk "
        "while `seeding`, then equals inputsTotal."
    )
    processed: int = strawberry.field(description="Inputs finished, failed ones included.")
    failed: int = strawberry.field(description="Inputs that could not be labeled (see taskInputs).")
    approved: int = strawberry.field(description="The task's annotations with status SUCCESS.")
    awaiting_review: int = strawberry.field(description="The task's annotations waiting for review.")
    discarded: int = strawberry.field(description="Predictions below the lower threshold.")
    reviewed: int = strawberry.field(description="Inputs whose review is done.")
    inputs_to_review: int = strawberry.field(
        description="Inputs that needed review (every slot counts under consensus)."
    )
    reviewed_percent: float = strawberry.field(
        description="Clarifai's '% reviewed': reviewed / inputsToReview, in percent (100 when "
        "labeling is over and nothing needed review). The same figure everywhere: "
        "`review.reviewedPercent`, task lists and the progress subscription."
    )
    labeling_percent: float = strawberry.field(
        description="Clarifai's 'labeling status': processed / inputsTotal, in percent."
    )

    @classmethod
    def from_model(cls, value: m.TaskMetrics, status: m.TaskStatus) -> TaskMetrics:
        settled = value.inputs_processed + value.inputs_failed
        if value.inputs_total > 0:
            percent = round(min(100.0, 100.0 * settled / value.inputs_total), 2)
        else:
            percent = 100.0 if status in (m.TaskStatus.DONE, m.TaskStatus.IDLE) else 0.0
        return cls(
            inputs_total=value.inputs_total,
            inputs_seeded=value.inputs_seeded,
            processed=settled,
            failed=value.inputs_failed,
            approved=value.annotations_approved,
            awaiting_review=value.annotations_awaiting_review,
            discarded=value.annotations_discarded,
            reviewed=value.inputs_reviewed,
            inputs_to_review=value.inputs_to_review,
            reviewed_percent=progress.reviewed_percent(value.inputs_reviewed, value.inputs_to_review, status),
            labeling_percent=percent,
        )


@strawberry.type(description="A dataset run through a model or workflow, with review settings.")
class LabelingTask:
    id: strawberry.ID
    app_id: strawberry.ID
    name: str
    dataset_id: strawberry.ID
    model_id: strawberry.ID | None
    workflow_id: strawberry.ID | None
    task_type: TaskType  # type: ignore[valid-type]
    concept_ids: list[strawberry.ID]
    concept_mapping: list[ConceptMapping]
    thresholds: ThresholdRange
    concept_thresholds: list[ConceptThreshold]
    auto_annotation: bool
    delete_previous_annotations: bool
    watch_dataset: bool = strawberry.field(
        description="Keep labeling inputs added to the dataset later (IDLE instead of DONE)."
    )
    review_human_annotations: bool = strawberry.field(
        description="People's annotations made in this task wait for review (default: on when "
        "the task names reviewers)."
    )
    run: int = strawberry.field(description="How many times the task was started or retried.")
    seeding: bool = strawberry.field(
        description="The run's work is still being stored by the workers (a run over more than "
        "LABELSTREAM_TASK_SEED_SYNC_LIMIT inputs): labeling has begun on what is stored "
        "(`metrics.inputsSeeded`), and the task cannot finish before this turns false."
    )
    reviewer_ids: list[strawberry.ID]
    labeler_ids: list[strawberry.ID]
    review_strategy: ReviewStrategy  # type: ignore[valid-type]
    partition_strategy: PartitionStrategy  # type: ignore[valid-type]
    reviewer_weights: list[ReviewerWeight]
    approval_threshold_reviewers: int
    audit_percent: float = strawberry.field(
        description="Percentage of auto-approved annotations also sent to review (audit sampling)."
    )
    priority: TaskPriority  # type: ignore[valid-type]
    status: TaskStatus  # type: ignore[valid-type]
    metrics: TaskMetrics
    created_by: strawberry.ID
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: m.LabelingTask) -> LabelingTask:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            name=doc.name,
            dataset_id=strawberry.ID(doc.dataset_id),
            model_id=strawberry.ID(doc.model_id) if doc.model_id else None,
            workflow_id=strawberry.ID(doc.workflow_id) if doc.workflow_id else None,
            task_type=doc.task_type,
            concept_ids=[strawberry.ID(c) for c in doc.concept_ids],
            concept_mapping=[
                ConceptMapping(
                    model_concept_id=strawberry.ID(e.model_concept_id),
                    concept_id=strawberry.ID(e.concept_id),
                )
                for e in doc.concept_mapping
            ],
            thresholds=ThresholdRange.from_model(doc.thresholds),
            concept_thresholds=[
                ConceptThreshold(
                    concept_id=strawberry.ID(c.concept_id),
                    range=ThresholdRange.from_model(c.range),
                )
                for c in doc.concept_thresholds
            ],
            auto_annotation=doc.auto_annotation,
            delete_previous_annotations=doc.delete_previous_annotations,
            review_human_annotations=doc.reviews_human_annotations(),
            watch_dataset=doc.watch_dataset,
            run=doc.run,
            seeding=doc.seeding,
            reviewer_ids=[strawberry.ID(u) for u in doc.reviewer_ids],
            labeler_ids=[strawberry.ID(u) for u in doc.labeler_ids],
            review_strategy=doc.review_strategy,
            partition_strategy=doc.partition_strategy,
            reviewer_weights=[
                ReviewerWeight(user_id=strawberry.ID(w.user_id), weight=w.weight)
                for w in doc.reviewer_weights
            ],
            approval_threshold_reviewers=doc.approval_threshold_reviewers,
            audit_percent=doc.audit_percent,
            priority=doc.priority,
            status=doc.status,
            metrics=TaskMetrics.from_model(doc.metrics, doc.status),
            created_by=strawberry.ID(doc.created_by),
            created_at=doc.created_at,
            updated_at=doc.updated_at,
        )

    @strawberry.field
    async def dataset(self, info: Info) -> Dataset | None:
        doc = await info.context.loader(DatasetDoc).load(str(self.dataset_id))
        return Dataset.from_document(doc) if doc else None

    @strawberry.field
    async def model(self, info: Info) -> Model | None:
        if self.model_id is None:
            return None
        doc = await info.context.loader(ModelDoc).load(str(self.model_id))
        return Model.from_document(doc) if doc else None

    @strawberry.field
    async def workflow(self, info: Info) -> Workflow | None:
        if self.workflow_id is None:
            return None
        doc = await info.context.loader(WorkflowDoc).load(str(self.workflow_id))
        return Workflow.from_document(doc) if doc else None

    @strawberry.field(description="Review figures: % reviewed, per reviewer, inputs still to label.")
    async def review(self, info: Info) -> TaskReview:
        doc = await info.context.loader(m.LabelingTask).load(str(self.id))
        if doc is None:
            raise NotFound("labeling task", str(self.id))
        return TaskReview.from_metrics(await review_metrics.review_metrics(doc))

    @strawberry.field(description="Who labeled the task's annotations (users and models), with counts.")
    async def labeled_by(self, info: Info) -> list[LabeledBy]:
        return [LabeledBy.from_value(v) for v in await review_metrics.labeled_by(str(self.id))]

    @strawberry.field(description="The task's concepts, in order.")
    async def concepts(self, info: Info) -> list[Concept]:
        docs = await info.context.loader(ConceptDoc).load_many([str(c) for c in self.concept_ids])
        return [Concept.from_document(d) for d in docs if d is not None]


# --- inputs ----------------------------------------------------------------------------------


@strawberry.input
class ThresholdRangeInput:
    lower: float = 0.5
    upper: float = 0.9
    lower_inclusive: bool = True
    upper_inclusive: bool = True

    def to_model(self) -> m.ThresholdRange:
        return m.ThresholdRange(
            lower=self.lower,
            upper=self.upper,
            lower_inclusive=self.lower_inclusive,
            upper_inclusive=self.upper_inclusive,
        )


@strawberry.input
class ConceptThresholdInput:
    concept_id: strawberry.ID
    range: ThresholdRangeInput


@strawberry.input
class ConceptMappingInput:
    model_concept_id: strawberry.ID
    concept_id: strawberry.ID


@strawberry.input
class ReviewerWeightInput:
    user_id: strawberry.ID
    weight: float = 1.0


def _concept_thresholds(items: list[ConceptThresholdInput]) -> list[m.ConceptThreshold]:
    return [m.ConceptThreshold(concept_id=str(i.concept_id), range=i.range.to_model()) for i in items]


def _weights(items: list[ReviewerWeightInput]) -> list[m.ReviewerWeight]:
    return [m.ReviewerWeight(user_id=str(i.user_id), weight=i.weight) for i in items]


@strawberry.input(description="Give exactly one of modelId and workflowId.")
class CreateLabelingTaskInput:
    app_id: strawberry.ID
    name: str
    dataset_id: strawberry.ID
    concept_ids: list[strawberry.ID]
    model_id: strawberry.ID | None = None
    workflow_id: strawberry.ID | None = None
    task_type: TaskType = m.TaskType.CONCEPTS_CLASSIFICATION  # type: ignore[valid-type]
    concept_mapping: list[ConceptMappingInput] = strawberry.field(default_factory=list)
    thresholds: ThresholdRangeInput | None = None
    concept_thresholds: list[ConceptThresholdInput] = strawberry.field(default_factory=list)
    reviewer_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    labeler_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    review_strategy: ReviewStrategy = m.ReviewStrategy.PARTITIONED  # type: ignore[valid-type]
    partition_strategy: PartitionStrategy = m.PartitionStrategy.EVENLY  # type: ignore[valid-type]
    reviewer_weights: list[ReviewerWeightInput] = strawberry.field(default_factory=list)
    approval_threshold_reviewers: int = 1
    audit_percent: float = strawberry.field(
        default=0.0, description="Percentage (0..100) of auto-approved annotations also sent to review."
    )
    priority: TaskPriority = m.TaskPriority.MEDIUM  # type: ignore[valid-type]
    auto_annotation: bool = strawberry.field(
        default=True,
        description="Run the model over the dataset as soon as the task exists. False: people "
        "label it (the inputs enter the labeling queue; no model needed).",
    )
    review_human_annotations: bool | None = strawberry.field(
        default=None,
        description="People's annotations made in the task wait for review. Default: on when "
        "reviewerIds are given.",
    )
    start: bool = strawberry.field(
        default=True,
        description="Start the task at once (default). False: it is stored QUEUED until "
        "startLabelingTask, e.g. to review its settings first.",
    )
    delete_previous_annotations: bool = strawberry.field(
        default=False,
        description="On every start, first delete this task's earlier predictions and the "
        "machine annotations nobody reviewed.",
    )
    watch_dataset: bool = strawberry.field(
        default=False, description="Keep labeling inputs added to the dataset later (IDLE)."
    )

    def to_spec(self) -> service.TaskSpec:
        return service.TaskSpec(
            app_id=str(self.app_id),
            name=self.name,
            dataset_id=str(self.dataset_id),
            concept_ids=[str(c) for c in self.concept_ids],
            model_id=str(self.model_id) if self.model_id else None,
            workflow_id=str(self.workflow_id) if self.workflow_id else None,
            task_type=self.task_type,
            concept_mapping=[
                m.ConceptMapping(model_concept_id=str(e.model_concept_id), concept_id=str(e.concept_id))
                for e in self.concept_mapping
            ],
            thresholds=self.thresholds.to_model() if self.thresholds else m.ThresholdRange(),
            concept_thresholds=_concept_thresholds(self.concept_thresholds),
            reviewer_ids=[str(u) for u in self.reviewer_ids],
            labeler_ids=[str(u) for u in self.labeler_ids],
            review_strategy=self.review_strategy,
            partition_strategy=self.partition_strategy,
            reviewer_weights=_weights(self.reviewer_weights),
            approval_threshold_reviewers=self.approval_threshold_reviewers,
            audit_percent=self.audit_percent,
            priority=self.priority,
            auto_annotation=self.auto_annotation,
            delete_previous_annotations=self.delete_previous_annotations,
            watch_dataset=self.watch_dataset,
            review_human_annotations=self.review_human_annotations,
        )


@strawberry.input(description="Fields left out (or null) stay as they are.")
class UpdateLabelingTaskInput:
    id: strawberry.ID
    name: str | None = None
    priority: TaskPriority | None = None  # type: ignore[valid-type]
    reviewer_ids: list[strawberry.ID] | None = None
    reviewer_weights: list[ReviewerWeightInput] | None = None
    labeler_ids: list[strawberry.ID] | None = None
    audit_percent: float | None = None
    thresholds: ThresholdRangeInput | None = None
    concept_thresholds: list[ConceptThresholdInput] | None = None
    review_human_annotations: bool | None = None

    def to_changes(self) -> service.TaskChanges:
        return service.TaskChanges(
            name=self.name,
            priority=self.priority,
            reviewer_ids=None if self.reviewer_ids is None else [str(u) for u in self.reviewer_ids],
            reviewer_weights=None if self.reviewer_weights is None else _weights(self.reviewer_weights),
            labeler_ids=None if self.labeler_ids is None else [str(u) for u in self.labeler_ids],
            audit_percent=self.audit_percent,
            thresholds=self.thresholds.to_model() if self.thresholds else None,
            concept_thresholds=None
            if self.concept_thresholds is None
            else _concept_thresholds(self.concept_thresholds),
            review_human_annotations=self.review_human_annotations,
        )


@strawberry.input(description="Criteria combine with AND; an empty or missing list matches all.")
class LabelingTaskFilter:
    statuses: list[TaskStatus] | None = None  # type: ignore[valid-type]
    priorities: list[TaskPriority] | None = None  # type: ignore[valid-type]
    dataset_ids: list[strawberry.ID] | None = None

    def to_filter(self) -> service.TaskFilter:
        return service.TaskFilter(
            statuses=list(self.statuses or []),
            priorities=list(self.priorities or []),
            dataset_ids=[str(d) for d in self.dataset_ids or []],
        )


@strawberry.type
class LabelingTaskSuccess:
    labeling_task: LabelingTask


CreateLabelingTaskResult = result_union("CreateLabelingTaskResult", LabelingTaskSuccess)
UpdateLabelingTaskResult = result_union("UpdateLabelingTaskResult", LabelingTaskSuccess)
DeleteLabelingTaskResult = result_union("DeleteLabelingTaskResult", DeleteSuccess)


@strawberry.type
class Query:
    @strawberry.field(description="Labeling tasks of an app, optionally filtered.")
    async def labeling_tasks(
        self,
        info: Info,
        app_id: strawberry.ID,
        filter: LabelingTaskFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[LabelingTask]:
        page = await service.list_tasks(
            info.context.principal,
            app_id,
            info.context.page(first, after),
            filter.to_filter() if filter else None,
        )
        return connection_from_page(page, LabelingTask.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One labeling task, or null when unknown or not in your apps.")
    async def labeling_task(self, info: Info, id: strawberry.ID) -> LabelingTask | None:
        try:
            return LabelingTask.from_document(await service.get_task(info.context.principal, id))
        except NotFound:
            return None


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Create a labeling task and start it unless `start` is false (owner, admin): "
        "with auto-annotation its inputs are queued for the model; without, they enter the "
        "labeling queue for people. Over LABELSTREAM_TASK_SEED_SYNC_LIMIT inputs it returns at "
        "once with `seeding: true` and the workers store the work in the background."
    )
    @mutation_errors
    async def create_labeling_task(
        self, info: Info, input: CreateLabelingTaskInput
    ) -> CreateLabelingTaskResult:
        doc = await service.create_task(info.context.principal, input.to_spec())
        if input.start:
            doc = await lifecycle.start(info.context.runtime, doc)
        return LabelingTaskSuccess(labeling_task=LabelingTask.from_document(doc))

    @strawberry.mutation(description="Rename, re-prioritise, change reviewers or thresholds (owner, admin).")
    @mutation_errors
    async def update_labeling_task(
        self, info: Info, input: UpdateLabelingTaskInput
    ) -> UpdateLabelingTaskResult:
        doc = await service.update_task(info.context.principal, input.id, input.to_changes())
        # Reviewers or labelers changed: move the work nobody started (app/review/assign.py).
        await review_queue.on_people_changed(
            info.context.runtime,
            doc,
            reviewers=input.reviewer_ids is not None or input.reviewer_weights is not None,
            labelers=input.labeler_ids is not None,
        )
        return LabelingTaskSuccess(labeling_task=LabelingTask.from_document(doc))

    @strawberry.mutation(description="Delete a labeling task, and its annotations if asked (owner, admin).")
    @mutation_errors
    async def delete_labeling_task(
        self, info: Info, id: strawberry.ID, delete_annotations: bool = False
    ) -> DeleteLabelingTaskResult:
        deleted = await service.delete_task(
            info.context.runtime, info.context.principal, id, delete_annotations
        )
        return DeleteSuccess(id=strawberry.ID(deleted))
