"""GraphQL for dataset versions (immutable snapshots); their exports are HTTP downloads."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.annotations.graphql import AnnotationFilter
from app.core.errors import NotFound
from app.exports import service
from app.exports.models import DatasetVersion as VersionDoc
from app.exports.models import VersionStatus as VersionStatusEnum
from app.exports.writers import ExportFormat as ExportFormatEnum
from app.graphql.common import DeleteSuccess
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page

VersionStatus = strawberry.enum(VersionStatusEnum, name="DatasetVersionStatus")
ExportFormat = strawberry.enum(ExportFormatEnum, name="ExportFormat")


@strawberry.type
class VersionConcept:
    id: strawberry.ID
    name: str


@strawberry.type(
    description="An immutable snapshot of a dataset's inputs and accepted annotations; it keeps "
    "the images it holds until it is deleted."
)
class DatasetVersion:
    id: strawberry.ID
    app_id: strawberry.ID
    dataset_id: strawberry.ID
    description: str
    status: VersionStatus  # type: ignore[valid-type]
    inputs_count: int
    annotations_count: int
    concepts: list[VersionConcept]
    statuses: list[str] = strawberry.field(description="Annotation statuses the snapshot took.")
    prefer_task_ids: list[strawberry.ID] = strawberry.field(
        description="Which task's annotations won on an input several tasks labeled (see "
        "CreateDatasetVersionInput.preferTaskIds); empty: every task's, identical ones kept once."
    )
    created_by: strawberry.ID
    created_at: datetime

    @classmethod
    def from_document(cls, doc: VersionDoc) -> DatasetVersion:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            dataset_id=strawberry.ID(doc.dataset_id),
            description=doc.description,
            status=doc.status,
            inputs_count=doc.inputs_count,
            annotations_count=doc.annotations_count,
            concepts=[VersionConcept(id=strawberry.ID(c.id), name=c.name) for c in doc.concepts],
            statuses=list(doc.filter.get("statuses", [])),
            prefer_task_ids=[strawberry.ID(t) for t in doc.filter.get("prefer_task_ids", [])],
            created_by=strawberry.ID(doc.created_by),
            created_at=doc.created_at,
        )

    @strawberry.field(
        description="Where to download the version as a zip (GET with your API key); formats: "
        "COCO, YOLO, YOLO_SEGMENT, VOC, JSONL; add images=false to leave the images out. The same "
        "version always downloads as the same bytes. Whole-image labels (no box, no polygon) go to "
        "COCO's `image_labels`, JSONL's `labels` and YOLO's `classify/` folders (ultralytics "
        "classification layout); VOC cannot hold them. The zip's version.json counts, under "
        "`export`, the inputs and annotations written and those left out, by reason."
    )
    def export_url(self, format: ExportFormat = ExportFormatEnum.COCO) -> str:  # type: ignore[valid-type]
        return f"/dataset-versions/{self.id}/export?format={ExportFormatEnum(format).value}"


@strawberry.input(description="The filter picks annotations (default: SUCCESS only); every input is kept.")
class CreateDatasetVersionInput:
    dataset_id: strawberry.ID
    description: str = ""
    filter: AnnotationFilter | None = None
    prefer_task_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Which task's annotations win when several tasks labeled one input: the first "
        "of these tasks that labeled it gives all of its annotations, the other tasks' are left out "
        "(annotations made outside any task stay; an input none of them labeled keeps every task's). "
        "Whatever this says, one concept with the same region (or the same whole-image label) is "
        "kept once per input: the most recently reviewed or updated copy. Tasks of the dataset's "
        "app, at most 20.",
    )


@strawberry.type
class DatasetVersionSuccess:
    dataset_version: DatasetVersion


CreateDatasetVersionResult = result_union("CreateDatasetVersionResult", DatasetVersionSuccess)
DeleteDatasetVersionResult = result_union("DeleteDatasetVersionResult", DeleteSuccess)


@strawberry.type
class Query:
    @strawberry.field(description="Versions of a dataset, oldest first.")
    async def dataset_versions(
        self, info: Info, dataset_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[DatasetVersion]:
        page = await service.list_versions(
            info.context.principal, str(dataset_id), info.context.page(first, after)
        )
        return connection_from_page(page, DatasetVersion.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One dataset version, or null when unknown or not in your apps.")
    async def dataset_version(self, info: Info, id: strawberry.ID) -> DatasetVersion | None:
        try:
            return DatasetVersion.from_document(await service.get_version(info.context.principal, str(id)))
        except NotFound:
            return None


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Snapshot a dataset (owner, admin, labeler): later edits, reviews, removals and "
        "deletions of its inputs, annotations, concepts or tasks do not change it or its exports."
    )
    @mutation_errors
    async def create_dataset_version(
        self, info: Info, input: CreateDatasetVersionInput
    ) -> CreateDatasetVersionResult:
        doc = await service.create_version(
            info.context.principal,
            str(input.dataset_id),
            input.filter.to_filter() if input.filter else None,
            input.description,
            [str(t) for t in input.prefer_task_ids or []],
        )
        return DatasetVersionSuccess(dataset_version=DatasetVersion.from_document(doc))

    @strawberry.mutation(
        description="Delete a dataset version (owner, admin); the images it kept go with it unless "
        "an input or another version still holds them."
    )
    @mutation_errors
    async def delete_dataset_version(self, info: Info, id: strawberry.ID) -> DeleteDatasetVersionResult:
        deleted = await service.delete_version(info.context.principal, str(id), info.context.runtime.blobs)
        return DeleteSuccess(id=strawberry.ID(deleted))
