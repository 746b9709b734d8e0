"""GraphQL for review: a reviewer's (or labeler's) own queue, opening items, review actions,
edits, and the task's review figures."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.access import get_for
from app.annotations.graphql import Annotation, AnnotationSuccess, BoundingBoxInput, PointInput, _item_errors
from app.annotations.service import BulkResult
from app.graphql.common import ItemError
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, Edge, PageInfo
from app.inputs.graphql import Input
from app.inputs.models import Input as InputDoc
from app.review import actions, metrics, queue
from app.review.models import Assignment as AssignmentDoc
from app.review.models import AssignmentKind as AssignmentKindEnum
from app.review.models import AssignmentState as AssignmentStateEnum
from app.review.types import LabeledBy, TaskReview
from app.tasks.graphql import LabelingTask
from app.tasks.models import LabelingTask as TaskDoc

QueueOrder = strawberry.enum(queue.QueueOrder, name="QueueOrder", description="Order of a queue.")
ReviewAction = strawberry.enum(actions.ReviewAction, name="ReviewAction")
AssignmentState = strawberry.enum(AssignmentStateEnum, name="AssignmentState")
AssignmentKind = strawberry.enum(AssignmentKindEnum, name="AssignmentKind")


@strawberry.type(description="An input in your queue of a task: to review, or to label.")
class QueueItem:
    id: strawberry.ID
    task_id: strawberry.ID
    input_id: strawberry.ID
    kind: AssignmentKind  # type: ignore[valid-type]
    state: AssignmentState  # type: ignore[valid-type]
    min_confidence: float = strawberry.field(description="Of the annotations waiting in it.")
    concept_ids: list[strawberry.ID]
    waiting: int = strawberry.field(description="Annotations waiting for your decision.")
    reason: str = strawberry.field(
        description="Labeling: EMPTY (the model left nothing) or CHANGES_REQUESTED."
    )
    assigned_to: strawberry.ID | None
    started_at: datetime | None
    done_at: datetime | None
    created_at: datetime

    @classmethod
    def from_document(cls, doc: AssignmentDoc) -> QueueItem:
        return cls(
            id=strawberry.ID(doc.id),
            task_id=strawberry.ID(doc.task_id),
            input_id=strawberry.ID(doc.input_id),
            kind=doc.kind,
            state=doc.state,
            min_confidence=doc.min_confidence,
            concept_ids=[strawberry.ID(c) for c in doc.concept_ids],
            waiting=doc.waiting,
            reason=doc.reason,
            assigned_to=strawberry.ID(doc.user_id) if doc.user_id else None,
            started_at=doc.started_at,
            done_at=doc.done_at,
            created_at=doc.created_at,
        )

    @strawberry.field
    async def input(self, info: Info) -> Input | None:
        doc = await info.context.loader(InputDoc).load(str(self.input_id))
        return Input.from_document(doc) if doc else None

    @strawberry.field(description="Review: the annotations waiting for your decision, least confident first.")
    async def annotations(self, info: Info) -> list[Annotation]:
        doc = await info.context.loader(AssignmentDoc).load(str(self.id))
        if doc is None:
            return []
        return [Annotation.from_document(a) for a in await queue.waiting_annotations(doc)]


def _connection(page: queue.QueuePage, after: str | None) -> Connection[QueueItem]:
    edges = [
        Edge(cursor=c, node=QueueItem.from_document(d)) for d, c in zip(page.items, page.cursors, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


@strawberry.input(description="Give exactly one of annotationIds, inputIds and labeledBy.")
class ReviewAnnotationsInput:
    task_id: strawberry.ID
    action: ReviewAction  # type: ignore[valid-type]
    annotation_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Annotations (one is the object level)."
    )
    input_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Every annotation of these inputs that waits for you."
    )
    labeled_by: strawberry.ID | None = strawberry.field(
        default=None, description="Every waiting annotation of the task by this user or model."
    )

    def selection(self) -> actions.Selection:
        return actions.Selection(
            annotation_ids=None if self.annotation_ids is None else [str(i) for i in self.annotation_ids],
            input_ids=None if self.input_ids is None else [str(i) for i in self.input_ids],
            labeled_by=str(self.labeled_by) if self.labeled_by is not None else None,
        )


@strawberry.input(description="Give a conceptId, a box or a polygon (or a concept with a region).")
class EditAnnotationInput:
    annotation_id: strawberry.ID
    concept_id: strawberry.ID | None = None
    box: BoundingBoxInput | None = None
    polygon: list[PointInput] | None = None
    add_concept_to_task: bool = strawberry.field(
        default=False,
        description="A concept outside the task's concepts is refused (CONCEPT_NOT_IN_TASK) "
        "unless this is true, which adds it to the task.",
    )
    text: str | None = strawberry.field(
        default=None,
        description="The corrected text of a text region (an annotation with a box or polygon; "
        "NO_REGION otherwise), at most 10,000 characters.",
    )

    def change(self) -> actions.Edit:
        b = self.box
        return actions.Edit(
            concept_id=str(self.concept_id) if self.concept_id else None,
            box=(b.top, b.left, b.bottom, b.right) if b is not None else None,
            polygon=None if self.polygon is None else [(p.row, p.col) for p in self.polygon],
            add_concept_to_task=self.add_concept_to_task,
            text=self.text,
        )


@strawberry.type(description="What the action changed; items that could not be acted on are in `errors`.")
class ReviewAnnotationsSuccess:
    labeling_task: LabelingTask
    changed_ids: list[strawberry.ID]
    approved: int
    rejected: int
    changes_requested: int
    awaiting_consensus: int = strawberry.field(description="Approved by you, waiting for more reviewers.")
    errors: list[ItemError]


@strawberry.type
class QueueItemSuccess:
    item: QueueItem


ReviewAnnotationsResult = result_union("ReviewAnnotationsResult", ReviewAnnotationsSuccess)
EditAnnotationResult = result_union("EditAnnotationResult", AnnotationSuccess)
OpenQueueItemResult = result_union("OpenQueueItemResult", QueueItemSuccess)


async def _queue(
    info: Info,
    kind: AssignmentKindEnum,
    task_id: strawberry.ID,
    order: queue.QueueOrder,
    concept_ids: list[strawberry.ID] | None,
    first: int | None,
    after: str | None,
) -> Connection[QueueItem]:
    args = info.context.page(first, None)
    page = await queue.list_queue(
        info.context.principal,
        str(task_id),
        kind,
        first=args.first,
        after=after,
        order=order,
        concept_ids=[str(c) for c in concept_ids or []],
    )
    return _connection(page, after)


@strawberry.type
class Query:
    @strawberry.field(
        description="Your own review queue of a task (never anyone else's): least confident first "
        "(default) or oldest first, optionally only items waiting on some concepts."
    )
    async def review_queue(
        self,
        info: Info,
        task_id: strawberry.ID,
        order: QueueOrder = queue.QueueOrder.LEAST_CONFIDENT,  # type: ignore[valid-type]
        concept_ids: list[strawberry.ID] | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[QueueItem]:
        return await _queue(info, AssignmentKindEnum.REVIEW, task_id, order, concept_ids, first, after)

    @strawberry.field(description="Your own inputs to label in a task (owner, admin, labeler), oldest first.")
    async def labeling_queue(
        self,
        info: Info,
        task_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[QueueItem]:
        return await _queue(
            info, AssignmentKindEnum.LABEL, task_id, queue.QueueOrder.OLDEST, None, first, after
        )

    @strawberry.field(description="A task's review figures: % reviewed, per reviewer, what is left to label.")
    async def review_progress(self, info: Info, task_id: strawberry.ID) -> TaskReview:
        task = await get_for(info.context.principal, TaskDoc, task_id, what="labeling task", field="taskId")
        return TaskReview.from_metrics(await metrics.review_metrics(task))

    @strawberry.field(description="Who labeled a task's annotations (users and models), with counts.")
    async def task_labeled_by(self, info: Info, task_id: strawberry.ID) -> list[LabeledBy]:
        task = await get_for(info.context.principal, TaskDoc, task_id, what="labeling task", field="taskId")
        return [LabeledBy.from_value(v) for v in await metrics.labeled_by(task.id)]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Open an input of your review queue: it becomes STARTED and stays yours."
    )
    @mutation_errors
    async def open_review_item(
        self, info: Info, task_id: strawberry.ID, input_id: strawberry.ID
    ) -> OpenQueueItemResult:
        doc = await queue.open_item(
            info.context.principal, str(task_id), str(input_id), AssignmentKindEnum.REVIEW
        )
        return QueueItemSuccess(item=QueueItem.from_document(doc))

    @strawberry.mutation(description="Open an input of your labeling queue: it becomes STARTED.")
    @mutation_errors
    async def open_labeling_item(
        self, info: Info, task_id: strawberry.ID, input_id: strawberry.ID
    ) -> OpenQueueItemResult:
        doc = await queue.open_item(
            info.context.principal, str(task_id), str(input_id), AssignmentKindEnum.LABEL
        )
        return QueueItemSuccess(item=QueueItem.from_document(doc))

    @strawberry.mutation(
        description="Approve (SUCCESS), reject (REVIEW_DENIED) or request changes (PENDING, back to "
        "labeling) for one annotation, a list, all of some inputs, or all by a labeler or model "
        "(owner, admin; a reviewer only within their own queue)."
    )
    @mutation_errors
    async def review_annotations(self, info: Info, input: ReviewAnnotationsInput) -> ReviewAnnotationsResult:
        result = await actions.review(
            info.context.runtime,
            info.context.principal,
            str(input.task_id),
            input.action,
            input.selection(),
            max_items=info.context.settings.max_bulk_items,
        )
        return ReviewAnnotationsSuccess(
            labeling_task=LabelingTask.from_document(result.task),
            changed_ids=[strawberry.ID(i) for i in result.changed_ids],
            approved=result.approved,
            rejected=result.rejected,
            changes_requested=result.changes_requested,
            awaiting_consensus=result.awaiting_consensus,
            errors=_item_errors(BulkResult(errors=result.errors)),
        )

    @strawberry.mutation(
        description="Change an annotation's concept, box or polygon; it becomes SUCCESS, reviewed by you."
    )
    @mutation_errors
    async def edit_annotation(self, info: Info, input: EditAnnotationInput) -> EditAnnotationResult:
        doc = await actions.edit(
            info.context.runtime, info.context.principal, str(input.annotation_id), input.change()
        )
        return AnnotationSuccess(annotation=Annotation.from_document(doc))
