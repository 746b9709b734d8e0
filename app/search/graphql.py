"""GraphQL for Smart Object Search: similarity queries, bulk actions on results, backfill."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import strawberry
from strawberry.file_uploads import Upload

from app.annotations.graphql import Annotation, AnnotationStatus, BoundingBoxInput, _item_errors
from app.annotations.service import BulkResult
from app.core.errors import ValidationFailed
from app.graphql.common import ItemError
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import PageInfo
from app.inputs import images
from app.inputs.graphql import Input
from app.search import bulk, service
from app.search.models import Backfill as BackfillDoc
from app.search.models import BackfillStatus as BackfillStatusEnum
from app.search.models import RefKind


class SearchTargetEnum(enum.StrEnum):
    ANNOTATIONS = "ANNOTATIONS"
    INPUTS = "INPUTS"


SearchTarget = strawberry.enum(
    SearchTargetEnum, name="SearchTarget", description="What an example image is compared with."
)
BulkAnnotationAction = strawberry.enum(
    bulk.BulkAction,
    name="BulkAnnotationAction",
    description="What a bulk action does to each selected annotation.",
)
BackfillStatus = strawberry.enum(BackfillStatusEnum, name="SearchBackfillStatus")


@strawberry.input(description="Narrows a similarity search; every given list must match (AND).")
class SimilarityFilter:
    concept_ids: list[strawberry.ID] | None = None
    statuses: list[AnnotationStatus] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Annotations only."
    )
    dataset_ids: list[strawberry.ID] | None = None
    task_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Annotations only.")
    labeled_by: list[strawberry.ID] | None = strawberry.field(
        default=None, description="User or model ids (annotations only)."
    )

    def to_filter(self) -> service.SearchFilter:
        return service.SearchFilter(
            concept_ids=[str(c) for c in self.concept_ids or []],
            statuses=list(self.statuses or []),
            dataset_ids=[str(d) for d in self.dataset_ids or []],
            task_ids=[str(t) for t in self.task_ids or []],
            labeled_by=[str(u) for u in self.labeled_by or []],
        )


def _filter(value: SimilarityFilter | None) -> service.SearchFilter:
    return value.to_filter() if value else service.SearchFilter()


@strawberry.type(description="An annotation and its cosine similarity to the query (-1..1).")
class SimilarAnnotationEdge:
    cursor: str
    score: float
    node: Annotation


@strawberry.type(description="An input and its cosine similarity to the query (-1..1).")
class SimilarInputEdge:
    cursor: str
    score: float
    node: Input


@strawberry.type(description="Annotations most like the query, best first.")
class SimilarAnnotationConnection:
    edges: list[SimilarAnnotationEdge]
    page_info: PageInfo
    embedding_model: str = strawberry.field(description="name@version of the vectors compared.")


@strawberry.type(description="Inputs most like the query, best first.")
class SimilarInputConnection:
    edges: list[SimilarInputEdge]
    page_info: PageInfo
    embedding_model: str = strawberry.field(description="name@version of the vectors compared.")


def _page_info(results: service.Results) -> PageInfo:
    return PageInfo(
        has_next_page=results.has_next,
        has_previous_page=results.has_previous,
        start_cursor=results.hits[0].cursor if results.hits else None,
        end_cursor=results.hits[-1].cursor if results.hits else None,
    )


def _annotations(results: service.Results) -> SimilarAnnotationConnection:
    edges = [
        SimilarAnnotationEdge(cursor=h.cursor, score=h.score, node=Annotation.from_document(h.annotation))
        for h in results.hits
        if h.annotation is not None
    ]
    return SimilarAnnotationConnection(
        edges=edges, page_info=_page_info(results), embedding_model=results.model
    )


def _inputs(results: service.Results) -> SimilarInputConnection:
    edges = [
        SimilarInputEdge(cursor=h.cursor, score=h.score, node=Input.from_document(h.input))
        for h in results.hits
        if h.input is not None
    ]
    return SimilarInputConnection(edges=edges, page_info=_page_info(results), embedding_model=results.model)


SimilarResults = Annotated[
    SimilarAnnotationConnection | SimilarInputConnection,
    strawberry.union("SimilarResults", description="Annotations or inputs, as `target` asked."),
]


def _either(results: service.Results, target: SearchTargetEnum) -> Any:
    return _annotations(results) if target == SearchTargetEnum.ANNOTATIONS else _inputs(results)


def _kind(target: SearchTargetEnum) -> RefKind:
    return RefKind.ANNOTATION if target == SearchTargetEnum.ANNOTATIONS else RefKind.INPUT


async def _upload_bytes(info: Info, image: Upload | None, image_base64: str | None) -> bytes:
    max_bytes = info.context.settings.max_upload_bytes
    if (image is None) == (image_base64 is None):
        raise ValidationFailed("give exactly one of image and imageBase64", field="image")
    if image_base64 is not None:
        return images.decode_base64(image_base64, "imageBase64", max_bytes=max_bytes)
    read = getattr(image, "read", None)
    if read is None:
        raise ValidationFailed("image must be a file sent with the GraphQL multipart request", field="image")
    return bytes(await read(max_bytes + 1))


@strawberry.type
class Backfill:
    id: strawberry.ID
    app_id: strawberry.ID
    status: BackfillStatus  # type: ignore[valid-type]
    total: int = strawberry.field(description="Region annotations and inputs to embed.")
    done: int
    error: str | None

    @strawberry.field(description="done / total, 0..100.")
    def percent(self) -> float:
        return 100.0 if self.total == 0 else round(100.0 * min(self.done, self.total) / self.total, 2)

    @classmethod
    def from_document(cls, doc: BackfillDoc) -> Backfill:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            status=doc.status,
            total=doc.total,
            done=doc.done,
            error=doc.error,
        )


COMMON = (
    "Cosine similarity of embeddings of one model (region crops and images: EfficientNet-Lite0 "
    "pooled features; texts: MiniLM); filters apply inside the search; `first` is capped; "
    "at most 1000 results are reachable. "
)


@strawberry.type
class Query:
    @strawberry.field(
        description="Smart Object Search: region annotations that look like this one (its crop), "
        "best first, excluding itself. " + COMMON + "Errors: NOT_FOUND (unknown or another "
        "app's id), NO_REGION, EMBEDDING_PENDING (not embedded yet)."
    )
    async def similar_annotations(
        self,
        info: Info,
        annotation_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
        filter: SimilarityFilter | None = None,
    ) -> SimilarAnnotationConnection:
        results = await service.similar_annotations(
            info.context.runtime, info.context.principal, str(annotation_id), first, after, _filter(filter)
        )
        return _annotations(results)

    @strawberry.field(
        description="Inputs like this one (whole image, or text with texts), best first, excluding "
        "itself. " + COMMON + "Filters: datasetIds, conceptIds. Errors: NOT_FOUND, EMBEDDING_PENDING."
    )
    async def similar_inputs(
        self,
        info: Info,
        input_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
        filter: SimilarityFilter | None = None,
    ) -> SimilarInputConnection:
        results = await service.similar_inputs(
            info.context.runtime, info.context.principal, str(input_id), first, after, _filter(filter)
        )
        return _inputs(results)

    @strawberry.field(
        description="Annotations (or inputs) like an example image sent with the request "
        "(`image`: multipart Upload, or `imageBase64`). " + COMMON + "Errors: INVALID_IMAGE, TOO_LARGE."
    )
    async def search_by_image(
        self,
        info: Info,
        app_id: strawberry.ID,
        image: Upload | None = None,
        image_base64: str | None = None,
        target: SearchTarget = SearchTargetEnum.ANNOTATIONS,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
        filter: SimilarityFilter | None = None,
    ) -> SimilarResults:  # type: ignore[valid-type]
        data = await _upload_bytes(info, image, image_base64)
        results = await service.search_by_image(
            info.context.runtime,
            info.context.principal,
            str(app_id),
            data,
            _kind(target),
            first,
            after,
            _filter(filter),
        )
        return _either(results, target)

    @strawberry.field(
        description="Annotations (or inputs) like a box drawn on an image input. "
        + COMMON
        + "Errors: INVALID_GEOMETRY (bad box), NOT_FOUND."
    )
    async def search_by_region(
        self,
        info: Info,
        input_id: strawberry.ID,
        box: BoundingBoxInput,
        target: SearchTarget = SearchTargetEnum.ANNOTATIONS,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
        filter: SimilarityFilter | None = None,
    ) -> SimilarResults:  # type: ignore[valid-type]
        results = await service.search_by_region(
            info.context.runtime,
            info.context.principal,
            str(input_id),
            (box.top, box.left, box.bottom, box.right),
            _kind(target),
            first,
            after,
            _filter(filter),
        )
        return _either(results, target)

    @strawberry.field(description="A search-embedding backfill and its progress.")
    async def search_backfill(self, info: Info, id: strawberry.ID) -> Backfill:
        return Backfill.from_document(await service.get_backfill(info.context.principal, str(id)))


@strawberry.input(description="A bulk action on selected annotations (e.g. a search result list).")
class BulkAnnotationActionInput:
    app_id: strawberry.ID
    annotation_ids: list[strawberry.ID]
    action: BulkAnnotationAction  # type: ignore[valid-type]
    concept_id: strawberry.ID | None = strawberry.field(default=None, description="ADD_CONCEPT and RELABEL.")


@strawberry.type(description="The annotations changed, removed or created; failed items in `errors`.")
class BulkAnnotationActionSuccess:
    changed_ids: list[strawberry.ID]
    errors: list[ItemError]


@strawberry.type
class BackfillSuccess:
    backfill: Backfill


@strawberry.type(description="Sizes of the rebuilt indexes, per embedding model and kind.")
class IndexSize:
    index: str
    size: int


@strawberry.type
class RebuildSearchIndexSuccess:
    indexes: list[IndexSize]


BulkAnnotationActionResult = result_union("BulkAnnotationActionResult", BulkAnnotationActionSuccess)
BackfillResult = result_union("BackfillSearchEmbeddingsResult", BackfillSuccess)
RebuildSearchIndexResult = result_union("RebuildSearchIndexResult", RebuildSearchIndexSuccess)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Apply one action to many annotations: ADD_CONCEPT (a new annotation of "
        "conceptId on the same region), RELABEL (concept becomes conceptId), APPROVE / REJECT "
        "(review decisions), REMOVE. Each failing item is reported in `errors` (NOT_FOUND, "
        "DUPLICATE, NOT_AWAITING_REVIEW, PERMISSION_DENIED, ...); the others go through."
    )
    @mutation_errors
    async def bulk_annotation_action(
        self, info: Info, input: BulkAnnotationActionInput
    ) -> BulkAnnotationActionResult:
        outcome = await bulk.apply(
            info.context.runtime,
            info.context.principal,
            str(input.app_id),
            [str(i) for i in input.annotation_ids],
            bulk.BulkAction(input.action),
            str(input.concept_id) if input.concept_id else None,
            max_items=info.context.settings.max_bulk_items,
        )
        return BulkAnnotationActionSuccess(
            changed_ids=[strawberry.ID(i) for i in outcome.changed_ids],
            errors=_item_errors(BulkResult(errors=outcome.errors)),
        )

    @strawberry.mutation(
        description="Embed every region annotation and input of the app that has no current "
        "embedding, in the background; follow `searchBackfill(id)` (owner, admin). BUSY while "
        "one runs."
    )
    @mutation_errors
    async def backfill_search_embeddings(self, info: Info, app_id: strawberry.ID) -> BackfillResult:
        doc = await service.start_backfill(info.context.runtime, info.context.principal, str(app_id))
        return BackfillSuccess(backfill=Backfill.from_document(doc))

    @strawberry.mutation(
        description="Rebuild this API process's similarity indexes of the app from MongoDB "
        "(owner, admin). Indexes also catch up with MongoDB before every search."
    )
    @mutation_errors
    async def rebuild_search_index(self, info: Info, app_id: strawberry.ID) -> RebuildSearchIndexResult:
        sizes = await service.rebuild_index(info.context.runtime, info.context.principal, str(app_id))
        return RebuildSearchIndexSuccess(indexes=[IndexSize(index=k, size=v) for k, v in sizes.items()])
