"""GraphQL for annotations: bulk add with per-item errors, remove, and the AND/OR filter."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import strawberry

from app.annotations import service
from app.annotations.geometry import unflatten
from app.annotations.models import Annotation as AnnotationDoc
from app.annotations.models import AnnotationStatus as AnnotationStatusEnum
from app.concepts.graphql import Concept
from app.concepts.models import Concept as ConceptDoc
from app.core.errors import NotFound
from app.graphql.common import ItemError
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page, stored_id
from app.inputs.graphql import Input
from app.inputs.models import Input as InputDoc
from app.models.graphql import Model
from app.models.models import ModelEntry as ModelDoc
from app.review import labeling
from app.users.graphql import User
from app.users.models import User as UserDoc

AnnotationStatus = strawberry.enum(
    AnnotationStatusEnum, name="AnnotationStatus", description="Clarifai annotation status."
)
FilterOperator = strawberry.enum(
    service.FilterOperator, name="FilterOperator", description="How filter criteria combine."
)


@strawberry.type(description="A bounding box, normalised to 0..1 (top < bottom, left < right).")
class BoundingBox:
    top: float
    left: float
    bottom: float
    right: float


@strawberry.type(description="A polygon point, normalised to 0..1 (row from top, col from left).")
class Point:
    row: float
    col: float


@strawberry.type(description="A label on an input: a concept, optionally a region.")
class Annotation:
    id: strawberry.ID
    app_id: strawberry.ID
    input_id: strawberry.ID
    concept_id: strawberry.ID
    dataset_ids: list[strawberry.ID]
    box: BoundingBox | None
    polygon: list[Point] | None
    confidence: float
    text: str | None = strawberry.field(
        description="The recognised text of a text region (the text-region model's OCR, or a "
        "reviewer's correction with `editAnnotation(text:)`); null for other annotations. "
        "Exported in JSONL (`text`) and COCO (`attributes.text`)."
    )
    status: AnnotationStatus  # type: ignore[valid-type]
    labeled_by_user_id: strawberry.ID | None
    labeled_by_model_id: strawberry.ID | None
    model_version_id: strawberry.ID | None = strawberry.field(
        description="The version of an uploaded model that made it (see Model.versions); null otherwise."
    )
    task_id: strawberry.ID | None
    reviewed_by: strawberry.ID | None
    reviewed_at: datetime | None = strawberry.field(description="When a person last decided it.")
    review_action: str | None = strawberry.field(
        description="APPROVE, APPROVE_PARTIAL (consensus), REJECT, REQUEST_CHANGES or EDIT."
    )
    edited_by: strawberry.ID | None = strawberry.field(
        description="The person who last changed its concept or region (editAnnotation); the "
        "confidence is then 1, the model that proposed it stays in labeledByModelId."
    )
    approved_by: list[strawberry.ID] = strawberry.field(description="Consensus: reviewers who approved.")
    audit: bool = strawberry.field(description="Sent to review by audit sampling.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: AnnotationDoc) -> Annotation:
        box = None
        if doc.box and len(doc.box) == 4:
            top, left, bottom, right = doc.box
            box = BoundingBox(top=top, left=left, bottom=bottom, right=right)
        polygon = [Point(row=r, col=c) for r, c in unflatten(doc.polygon)] if doc.polygon else None
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            input_id=strawberry.ID(doc.input_id),
            concept_id=strawberry.ID(doc.concept_id),
            dataset_ids=[strawberry.ID(d) for d in doc.dataset_ids],
            box=box,
            polygon=polygon,
            confidence=doc.confidence,
            text=doc.text,
            status=doc.status,
            labeled_by_user_id=_id(doc.labeled_by_user_id),
            labeled_by_model_id=_id(doc.labeled_by_model_id),
            model_version_id=_id(doc.model_version_id),
            task_id=_id(doc.task_id),
            reviewed_by=_id(doc.reviewed_by),
            reviewed_at=doc.reviewed_at,
            review_action=doc.review_action,
            edited_by=_id(doc.edited_by),
            approved_by=[strawberry.ID(u) for u in doc.approved_by],
            audit=doc.audit,
            created_at=doc.created_at,
            updated_at=doc.updated_at,
        )

    @classmethod
    def from_stored(cls, raw: Mapping[str, Any]) -> Annotation:
        """From a stored document as read (``service.list_annotations``): the same values as
        ``from_document`` without building and validating the Beanie model, which was most of
        a page's cost. A field an older document lacks takes the model's default."""
        get = raw.get
        stored_box = get("box")
        box = None
        if stored_box and len(stored_box) == 4:
            top, left, bottom, right = stored_box
            box = BoundingBox(top=top, left=left, bottom=bottom, right=right)
        stored_polygon = get("polygon")
        polygon = [Point(row=r, col=c) for r, c in unflatten(stored_polygon)] if stored_polygon else None
        return cls(
            id=raw["_id"],
            app_id=raw["app_id"],
            input_id=raw["input_id"],
            concept_id=raw["concept_id"],
            dataset_ids=list(get("dataset_ids") or ()),
            box=box,
            polygon=polygon,
            confidence=get("confidence", _DEFAULTS["confidence"]),
            text=get("text"),
            status=_STATUS[get("status") or _DEFAULTS["status"]],
            labeled_by_user_id=get("labeled_by_user_id") or None,
            labeled_by_model_id=get("labeled_by_model_id") or None,
            model_version_id=get("model_version_id") or None,
            task_id=get("task_id") or None,
            reviewed_by=get("reviewed_by") or None,
            reviewed_at=get("reviewed_at"),
            review_action=get("review_action"),
            edited_by=get("edited_by") or None,
            approved_by=list(get("approved_by") or ()),
            audit=get("audit", _DEFAULTS["audit"]),
            created_at=raw["created_at"],
            updated_at=raw["updated_at"],
        )

    @strawberry.field
    async def input(self, info: Info) -> Input | None:
        doc = await info.context.loader(InputDoc).load(str(self.input_id))
        return Input.from_document(doc) if doc else None

    @strawberry.field
    async def concept(self, info: Info) -> Concept | None:
        doc = await info.context.loader(ConceptDoc).load(str(self.concept_id))
        return Concept.from_document(doc) if doc else None

    @strawberry.field(description="The user who labeled it, when a person did.")
    async def labeled_by_user(self, info: Info) -> User | None:
        if self.labeled_by_user_id is None:
            return None
        doc = await info.context.loader(UserDoc).load(str(self.labeled_by_user_id))
        return User.from_document(doc) if doc else None

    @strawberry.field(description="'Labeled by': the person or the model, with a display name.")
    async def labeled_by(self, info: Info) -> LabeledByRef | None:
        if self.labeled_by_user_id is not None:
            user = await info.context.loader(UserDoc).load(str(self.labeled_by_user_id))
            return LabeledByRef(kind="USER", id=self.labeled_by_user_id, name=user.email if user else "")
        if self.labeled_by_model_id is not None:
            model = await info.context.loader(ModelDoc).load(str(self.labeled_by_model_id))
            return LabeledByRef(kind="MODEL", id=self.labeled_by_model_id, name=model.name if model else "")
        return None

    @strawberry.field(
        description="Object mode: URL of the region cropped from the image (GET with your API key), "
        "null for a whole-input label."
    )
    def crop_url(self) -> str | None:
        if self.box is None and self.polygon is None:
            return None
        return f"/annotations/{self.id}/crop"

    @strawberry.field(description="The model that labeled it, when a model did.")
    async def labeled_by_model(self, info: Info) -> Model | None:
        if self.labeled_by_model_id is None:
            return None
        doc = await info.context.loader(ModelDoc).load(str(self.labeled_by_model_id))
        return Model.from_document(doc) if doc else None


@strawberry.type(description="Who labeled an annotation.")
class LabeledByRef:
    kind: str = strawberry.field(description="USER or MODEL.")
    id: strawberry.ID
    name: str


def _id(value: str | None) -> strawberry.ID | None:
    return strawberry.ID(value) if value else None


# the model's defaults, for fields an older stored document lacks (from_stored)
_DEFAULTS: dict[str, Any] = {
    name: f.get_default(call_default_factory=True)
    for name, f in AnnotationDoc.model_fields.items()
    if not f.is_required()
}
_STATUS = {s.value: s for s in AnnotationStatusEnum}


# --- inputs ----------------------------------------------------------------------------------


@strawberry.input
class BoundingBoxInput:
    top: float
    left: float
    bottom: float
    right: float


@strawberry.input
class PointInput:
    row: float
    col: float


@strawberry.input(description="Give a box, a polygon, or neither (a whole-input label).")
class AnnotationInput:
    input_id: strawberry.ID
    concept_id: strawberry.ID
    box: BoundingBoxInput | None = None
    polygon: list[PointInput] | None = None
    confidence: float = 1.0
    task_id: strawberry.ID | None = None
    text: str | None = strawberry.field(
        default=None, description="A text region's text (needs a box or polygon: NO_REGION otherwise)."
    )

    def to_new(self) -> service.NewAnnotation:
        b = self.box
        return service.NewAnnotation(
            input_id=str(self.input_id),
            concept_id=str(self.concept_id),
            box=(b.top, b.left, b.bottom, b.right) if b is not None else None,
            polygon=None if self.polygon is None else [(p.row, p.col) for p in self.polygon],
            confidence=self.confidence,
            task_id=str(self.task_id) if self.task_id else None,
            text=self.text,
        )


@strawberry.input
class AddAnnotationsInput:
    app_id: strawberry.ID
    annotations: list[AnnotationInput]


@strawberry.input
class AddAnnotationInput:
    app_id: strawberry.ID
    annotation: AnnotationInput


@strawberry.input(
    description="AND (default) needs every given criterion, OR any of them. An empty list is no "
    "criterion; minConfidence and maxConfidence together are one (a range)."
)
class AnnotationFilter:
    operator: FilterOperator = service.FilterOperator.AND  # type: ignore[valid-type]
    labeled_by: list[strawberry.ID] | None = strawberry.field(default=None, description="User or model ids.")
    statuses: list[AnnotationStatus] | None = None  # type: ignore[valid-type]
    concept_ids: list[strawberry.ID] | None = None
    task_ids: list[strawberry.ID] | None = None
    input_ids: list[strawberry.ID] | None = None
    dataset_ids: list[strawberry.ID] | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None

    def to_filter(self) -> service.AnnotationFilter:
        return service.AnnotationFilter(
            operator=self.operator,
            labeled_by=[str(i) for i in self.labeled_by or []],
            statuses=list(self.statuses or []),
            concept_ids=[str(i) for i in self.concept_ids or []],
            task_ids=[str(i) for i in self.task_ids or []],
            input_ids=[str(i) for i in self.input_ids or []],
            dataset_ids=[str(i) for i in self.dataset_ids or []],
            min_confidence=self.min_confidence,
            max_confidence=self.max_confidence,
        )


# --- results ---------------------------------------------------------------------------------


def _item_errors(result: service.BulkResult) -> list[ItemError]:
    return [
        ItemError(index=f.index, message=f.error.message, field=f.error.field, code=f.error.code.value)
        for f in result.errors
    ]


@strawberry.type(description="The annotations stored; invalid items are listed in `errors`.")
class AddAnnotationsSuccess:
    annotations: list[Annotation]
    errors: list[ItemError]


@strawberry.type
class AnnotationSuccess:
    annotation: Annotation


@strawberry.type(description="The ids removed; the others are listed in `errors`.")
class RemoveAnnotationsSuccess:
    removed_ids: list[strawberry.ID]
    errors: list[ItemError]


AddAnnotationsResult = result_union("AddAnnotationsResult", AddAnnotationsSuccess)
AddAnnotationResult = result_union("AddAnnotationResult", AnnotationSuccess)
RemoveAnnotationsResult = result_union("RemoveAnnotationsResult", RemoveAnnotationsSuccess)


@strawberry.type
class Query:
    @strawberry.field(
        description="Annotations of an app, filtered with AND or OR, oldest first; a page is one "
        "database query."
    )
    async def annotations(
        self,
        info: Info,
        app_id: strawberry.ID,
        filter: AnnotationFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Annotation]:
        page = await service.list_annotations(
            info.context.principal,
            app_id,
            info.context.page(first, after),
            filter.to_filter() if filter else None,
        )
        return connection_from_page(page, Annotation.from_stored, cursor_id=stored_id)  # type: ignore[no-any-return]

    @strawberry.field(
        description="Object mode: annotations with a region (box or polygon), filtered like "
        "`annotations`; each has a `cropUrl`."
    )
    async def annotation_objects(
        self,
        info: Info,
        app_id: strawberry.ID,
        filter: AnnotationFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Annotation]:
        page = await service.list_objects(
            info.context.principal,
            app_id,
            info.context.page(first, after),
            filter.to_filter() if filter else None,
        )
        return connection_from_page(page, Annotation.from_stored, cursor_id=stored_id)  # type: ignore[no-any-return]

    @strawberry.field(description="One annotation, or null when unknown or not in your apps.")
    async def annotation(self, info: Info, id: strawberry.ID) -> Annotation | None:
        try:
            doc = await service.get_annotation(info.context.principal, id)
        except NotFound:
            return None
        return Annotation.from_document(doc)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Add annotations in bulk; each invalid item is reported, the rest are stored "
        "(owner, admin, labeler)."
    )
    @mutation_errors
    async def add_annotations(self, info: Info, input: AddAnnotationsInput) -> AddAnnotationsResult:
        result = await service.add_annotations(
            info.context.runtime,
            info.context.principal,
            input.app_id,
            [a.to_new() for a in input.annotations],
            max_items=info.context.settings.max_bulk_items,
            gate=labeling.gate,
        )
        return AddAnnotationsSuccess(
            annotations=[Annotation.from_document(a) for a in result.annotations],
            errors=_item_errors(result),
        )

    @strawberry.mutation(description="Add one annotation (owner, admin, labeler).")
    @mutation_errors
    async def add_annotation(self, info: Info, input: AddAnnotationInput) -> AddAnnotationResult:
        doc = await service.add_annotation(
            info.context.runtime,
            info.context.principal,
            input.app_id,
            input.annotation.to_new(),
            gate=labeling.gate,
        )
        return AnnotationSuccess(annotation=Annotation.from_document(doc))

    @strawberry.mutation(
        description="Remove annotations by id, per item: the ids that cannot be removed are "
        "reported in `errors`, the others are removed (owner, admin, labeler)."
    )
    @mutation_errors
    async def remove_annotations(self, info: Info, ids: list[strawberry.ID]) -> RemoveAnnotationsResult:
        result = await service.remove_annotations(
            info.context.runtime,
            info.context.principal,
            [str(i) for i in ids],
            max_items=info.context.settings.max_bulk_items,
        )
        return RemoveAnnotationsSuccess(
            removed_ids=[strawberry.ID(i) for i in result.removed_ids],
            errors=_item_errors(result),
        )
