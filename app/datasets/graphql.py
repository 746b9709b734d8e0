"""Datasets over GraphQL: CRUD, membership changes, and the inputs of a dataset."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.core.errors import NotFound
from app.datasets import service
from app.datasets.models import Dataset as DatasetDoc
from app.graphql.common import DeleteSuccess
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page
from app.inputs.graphql import Input
from app.tasks import lifecycle


@strawberry.type(description="A named set of inputs of an app.")
class Dataset:
    id: strawberry.ID
    app_id: strawberry.ID
    name: str
    description: str
    inputs_count: int = strawberry.field(description="Maintained with every membership change.")
    created_at: datetime
    updated_at: datetime
    _doc: strawberry.Private[DatasetDoc]

    @classmethod
    def from_document(cls, doc: DatasetDoc) -> Dataset:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            name=doc.name,
            description=doc.description,
            inputs_count=doc.inputs_count,
            created_at=doc.created_at,
            updated_at=doc.updated_at,
            _doc=doc,
        )

    @strawberry.field(description="The inputs of this dataset, oldest first.")
    async def inputs(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Input]:
        page = await service.list_dataset_inputs(self._doc, info.context.page(first, after))
        return connection_from_page(page, Input.from_document)  # type: ignore[no-any-return]


@strawberry.input
class CreateDatasetInput:
    app_id: strawberry.ID
    name: str
    description: str = ""
    all_inputs: bool = strawberry.field(default=False, description="Start with every input the app has now.")


@strawberry.input(description="Only the given fields change.")
class UpdateDatasetInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None


@strawberry.type
class DatasetSuccess:
    dataset: Dataset


CreateDatasetResult = result_union("CreateDatasetResult", DatasetSuccess)
UpdateDatasetResult = result_union("UpdateDatasetResult", DatasetSuccess)
DeleteDatasetResult = result_union("DeleteDatasetResult", DeleteSuccess)
AddInputsToDatasetResult = result_union("AddInputsToDatasetResult", DatasetSuccess)
RemoveInputsFromDatasetResult = result_union("RemoveInputsFromDatasetResult", DatasetSuccess)


@strawberry.type
class Query:
    @strawberry.field(description="Datasets of an app, oldest first.")
    async def datasets(
        self, info: Info, app_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[Dataset]:
        page = await service.list_datasets(info.context.principal, app_id, info.context.page(first, after))
        return connection_from_page(page, Dataset.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One dataset, or null when unknown or not in your apps.")
    async def dataset(self, info: Info, id: strawberry.ID) -> Dataset | None:
        try:
            return Dataset.from_document(await service.get_dataset(info.context.principal, id))
        except NotFound:
            return None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a dataset, optionally with all inputs (owner, admin).")
    @mutation_errors
    async def create_dataset(self, info: Info, input: CreateDatasetInput) -> CreateDatasetResult:
        doc = await service.create_dataset(
            info.context.principal, input.app_id, input.name, input.description, input.all_inputs
        )
        return DatasetSuccess(dataset=Dataset.from_document(doc))

    @strawberry.mutation(description="Rename or re-describe a dataset (owner, admin).")
    @mutation_errors
    async def update_dataset(self, info: Info, input: UpdateDatasetInput) -> UpdateDatasetResult:
        doc = await service.update_dataset(info.context.principal, input.id, input.name, input.description)
        return DatasetSuccess(dataset=Dataset.from_document(doc))

    @strawberry.mutation(
        description="Delete a dataset no task uses; its inputs stay in the app (owner, admin)."
    )
    @mutation_errors
    async def delete_dataset(self, info: Info, id: strawberry.ID) -> DeleteDatasetResult:
        return DeleteSuccess(id=strawberry.ID(await service.delete_dataset(info.context.principal, id)))

    @strawberry.mutation(
        description="Add inputs of the app to a dataset; idempotent (owner, admin, labeler)."
    )
    @mutation_errors
    async def add_inputs_to_dataset(
        self, info: Info, dataset_id: strawberry.ID, input_ids: list[strawberry.ID]
    ) -> AddInputsToDatasetResult:
        ids = [str(i) for i in input_ids]
        before = await service.members_among(str(dataset_id), ids)
        doc = await service.add_inputs(
            info.context.principal, dataset_id, ids, max_items=info.context.settings.max_bulk_items
        )
        added = [i for i in dict.fromkeys(ids) if i not in before]
        await lifecycle.on_inputs_added(info.context.runtime, doc.id, added)
        return DatasetSuccess(dataset=Dataset.from_document(doc))

    @strawberry.mutation(description="Take inputs out of a dataset; idempotent (owner, admin, labeler).")
    @mutation_errors
    async def remove_inputs_from_dataset(
        self, info: Info, dataset_id: strawberry.ID, input_ids: list[strawberry.ID]
    ) -> RemoveInputsFromDatasetResult:
        doc = await service.remove_inputs(
            info.context.principal,
            dataset_id,
            [str(i) for i in input_ids],
            max_items=info.context.settings.max_bulk_items,
        )
        return DatasetSuccess(dataset=Dataset.from_document(doc))
