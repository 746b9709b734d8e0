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


@strawberry.type(description="An immutable snapshot of a dataset's inputs and accepted annotations.")
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
            created_by=strawberry.ID(doc.created_by),
            created_at=doc.created_at,
        )

    @strawberry.field(
        description="Where to download the version as a zip (GET with your API key); formats: "
        "COCO, YOLO, YOLO_SEGMENT, VOC, JSONL; add images=false to leave the images out."
    )
    def export_url(self, format: ExportFormat = ExportFormatEnum.COCO) -> str:  # type: ignore[valid-type]
        return f"/dataset-versions/{self.id}/export?format={ExportFormatEnum(format).value}"


@strawberry.input(description="The filter picks annotations (default: SUCCESS only); every input is kept.")
class CreateDatasetVersionInput:
    dataset_id: strawberry.ID
    description: str = ""
    filter: AnnotationFilter | None = None


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
        description="Snapshot a dataset (owner, admin, labeler): later edits do not change it."
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
        )
        return DatasetVersionSuccess(dataset_version=DatasetVersion.from_document(doc))

    @strawberry.mutation(description="Delete a dataset version (owner, admin).")
    @mutation_errors
    async def delete_dataset_version(self, info: Info, id: strawberry.ID) -> DeleteDatasetVersionResult:
        return DeleteSuccess(id=strawberry.ID(await service.delete_version(info.context.principal, str(id))))
