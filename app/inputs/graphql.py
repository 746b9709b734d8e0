"""Inputs over GraphQL. Files come with the GraphQL multipart request spec (``image: Upload``)
or inline as ``imageBase64``; their bytes are served by ``GET /inputs/{id}/image``."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from app.core.errors import DomainError, NotFound
from app.graphql.common import DeleteSuccess, ItemError
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page
from app.inputs import service
from app.inputs.models import Input as InputDoc
from app.inputs.models import InputKind, InputStatus
from app.tasks import lifecycle

InputKindEnum = strawberry.enum(InputKind, name="InputKind")
InputStatusEnum = strawberry.enum(
    InputStatus, name="InputStatus", description="READY, or an image URL not fetched yet."
)


def image_path(input_id: str) -> str:
    return f"/inputs/{input_id}/image"


@strawberry.type(description="One image or one text of an app.")
class Input:
    id: strawberry.ID
    app_id: strawberry.ID
    kind: InputKindEnum  # type: ignore[valid-type]
    status: InputStatusEnum  # type: ignore[valid-type]
    width: int | None
    height: int | None
    content_type: str | None
    size_bytes: int | None
    url: str | None = strawberry.field(description="The source URL of a URL-added image.")
    text: str | None
    metadata: JSON
    dataset_ids: list[strawberry.ID]
    created_at: datetime
    image_url: str | None = strawberry.field(
        description="Path of the stored bytes (GET, same `Authorization` header as GraphQL); "
        "null for texts and for images not fetched yet."
    )

    @classmethod
    def from_document(cls, doc: InputDoc) -> Input:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            kind=doc.kind,
            status=doc.status,
            width=doc.width,
            height=doc.height,
            content_type=doc.content_type,
            size_bytes=doc.size_bytes,
            url=doc.url,
            text=doc.text,
            metadata=doc.metadata,  # type: ignore[arg-type]
            dataset_ids=[strawberry.ID(d) for d in doc.dataset_ids],
            created_at=doc.created_at,
            image_url=image_path(doc.id) if doc.blob_key else None,
        )


@strawberry.input(description="Exactly one of image, imageBase64, imageUrl, text.")
class AddInputItem:
    image: Upload | None = strawberry.field(
        default=None, description="A file part of a GraphQL multipart request."
    )
    image_base64: str | None = None
    image_url: str | None = strawberry.field(
        default=None, description="http(s) URL, fetched later (status PENDING_FETCH)."
    )
    text: str | None = None
    metadata: JSON | None = None
    dataset_ids: list[strawberry.ID] | None = None

    def to_new(self) -> service.NewInput:
        return service.NewInput(
            image=self.image,
            image_base64=self.image_base64,
            image_url=self.image_url,
            text=self.text,
            metadata=self.metadata,
            dataset_ids=[str(d) for d in self.dataset_ids or []],
        )


@strawberry.input(description="Exactly one of image, imageBase64, imageUrl, text.")
class AddInputInput(AddInputItem):
    app_id: strawberry.ID


@strawberry.input
class UpdateInputInput:
    id: strawberry.ID
    metadata: JSON = strawberry.field(description="Replaces the metadata (a JSON object).")


@strawberry.type
class InputSuccess:
    input: Input


@strawberry.type(description="The inputs added, and an error for each item that was not.")
class AddInputsSuccess:
    inputs: list[Input]
    errors: list[ItemError]


@strawberry.type
class DeleteInputsSuccess:
    ids: list[strawberry.ID]


AddInputResult = result_union("AddInputResult", InputSuccess)
AddInputsResult = result_union("AddInputsResult", AddInputsSuccess)
UpdateInputResult = result_union("UpdateInputResult", InputSuccess)
DeleteInputResult = result_union("DeleteInputResult", DeleteSuccess)
DeleteInputsResult = result_union("DeleteInputsResult", DeleteInputsSuccess)


def _item_error(index: int, exc: DomainError) -> ItemError:
    return ItemError(index=index, message=exc.message, field=exc.field, code=exc.code.value)


@strawberry.type
class Query:
    @strawberry.field(description="Inputs of an app, optionally only those of one dataset.")
    async def inputs(
        self,
        info: Info,
        app_id: strawberry.ID,
        dataset_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Input]:
        page = await service.list_inputs(
            info.context.principal,
            app_id,
            None if dataset_id is None else str(dataset_id),
            info.context.page(first, after),
        )
        return connection_from_page(page, Input.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One input, or null when unknown or not in your apps.")
    async def input(self, info: Info, id: strawberry.ID) -> Input | None:
        try:
            return Input.from_document(await service.get_input(info.context.principal, id))
        except NotFound:
            return None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Add one image or text (owner, admin, labeler).")
    @mutation_errors
    async def add_input(self, info: Info, input: AddInputInput) -> AddInputResult:
        doc = await service.add_input(
            info.context.principal,
            input.app_id,
            input.to_new(),
            settings=info.context.settings,
            blobs=info.context.runtime.blobs,
        )
        await lifecycle.on_new_inputs(info.context.runtime, [doc])
        return InputSuccess(input=Input.from_document(doc))

    @strawberry.mutation(description="Add several inputs; invalid items are reported, the rest are added.")
    @mutation_errors
    async def add_inputs(
        self, info: Info, app_id: strawberry.ID, inputs: list[AddInputItem]
    ) -> AddInputsResult:
        result = await service.add_inputs(
            info.context.principal,
            app_id,
            [item.to_new() for item in inputs],
            settings=info.context.settings,
            blobs=info.context.runtime.blobs,
        )
        await lifecycle.on_new_inputs(info.context.runtime, result.inputs)
        return AddInputsSuccess(
            inputs=[Input.from_document(doc) for doc in result.inputs],
            errors=[_item_error(index, exc) for index, exc in result.errors],
        )

    @strawberry.mutation(description="Replace an input's metadata (owner, admin, labeler).")
    @mutation_errors
    async def update_input(self, info: Info, input: UpdateInputInput) -> UpdateInputResult:
        doc = await service.update_input(
            info.context.principal, input.id, input.metadata, settings=info.context.settings
        )
        return InputSuccess(input=Input.from_document(doc))

    @strawberry.mutation(description="Delete an input and its annotations (owner, admin, labeler).")
    @mutation_errors
    async def delete_input(self, info: Info, id: strawberry.ID) -> DeleteInputResult:
        deleted = await service.delete_input(
            info.context.principal, id, blobs=info.context.runtime.blobs, runtime=info.context.runtime
        )
        return DeleteSuccess(id=strawberry.ID(deleted))

    @strawberry.mutation(description="Delete several inputs: all of them, or none on an error.")
    @mutation_errors
    async def delete_inputs(self, info: Info, ids: list[strawberry.ID]) -> DeleteInputsResult:
        deleted = await service.delete_inputs(
            info.context.principal,
            [str(i) for i in ids],
            max_items=info.context.settings.max_bulk_items,
            blobs=info.context.runtime.blobs,
            runtime=info.context.runtime,
        )
        return DeleteInputsSuccess(ids=[strawberry.ID(i) for i in deleted])
