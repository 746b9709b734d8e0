"""GraphQL for the model registry and workflows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from app.core.errors import NotFound
from app.graphql.common import DeleteSuccess
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page
from app.models import service
from app.models.adapters import describe_adapters, describe_configs
from app.models.adapters.onnx_model import OnnxUserConfig
from app.models.models import ModelConceptEntry
from app.models.models import ModelEntry as ModelDoc
from app.models.models import ModelKind as ModelKindEnum
from app.models.models import ModelVersion as ModelVersionDoc
from app.models.models import TaskModelVersion as TaskModelVersionDoc
from app.models.models import Workflow as WorkflowDoc
from app.models.upload import ModelFile

ModelKind = strawberry.enum(ModelKindEnum, name="ModelKind", description="What a model outputs.")

# Generated from the adapter registry: the names, kinds and bounds described are those enforced.
ADAPTER_HELP = describe_adapters()
CONFIG_HELP = describe_configs()
UPLOAD_KEYS = ", ".join(f"`{k}`" for k in OnnxUserConfig.model_fields)
FILE_HELP = (
    "An ONNX model file (a part of a GraphQL multipart request), with adapter `onnx`: an image "
    "CLASSIFIER or DETECTOR, checked and run once on a sample image before anything is stored."
)
URL_HELP = "Instead of `file`: an http(s) URL of the ONNX file, fetched under the rules of image URLs."
UPLOAD_CONFIG_HELP = (
    f"With a file: the declared pre-processing and decoding, keys {UPLOAD_KEYS} (see the `onnx` "
    "adapter in `config`); missing keys take defaults read from the model where it says."
)
UPLOAD_CONCEPTS_HELP = (
    "The model's concepts in output order; for a file, they win over its `names` metadata and "
    "their number must match the outputs."
)


@strawberry.type(description="One uploaded file of a model (adapter `onnx`); immutable.")
class ModelVersion:
    id: strawberry.ID
    model_id: strawberry.ID
    number: int = strawberry.field(description="1, 2, ... per model, in upload order.")
    layout: str = strawberry.field(description="The output layout the upload check found.")
    sha256: str = strawberry.field(description="The file's SHA-256 (its key in the blob store).")
    size_bytes: int
    source_url: str | None
    config: JSON = strawberry.field(description="The checked config (defaults resolved).")
    concepts_count: int
    created_at: datetime

    @classmethod
    def from_document(cls, doc: ModelVersionDoc) -> ModelVersion:
        return cls(
            id=strawberry.ID(doc.id),
            model_id=strawberry.ID(doc.model_id),
            number=doc.number,
            layout=doc.layout,
            sha256=doc.blob_key,
            size_bytes=doc.size_bytes,
            source_url=doc.source_url,
            config=doc.config,  # type: ignore[arg-type]
            concepts_count=len(doc.concepts),
            created_at=doc.created_at,
        )


@strawberry.type(description="The version of a model that one run of a labeling task used.")
class TaskModelVersion:
    task_id: strawberry.ID
    run: int
    model_id: strawberry.ID
    version_id: strawberry.ID
    version_number: int

    @classmethod
    def from_document(cls, doc: TaskModelVersionDoc) -> TaskModelVersion:
        return cls(
            task_id=strawberry.ID(doc.task_id),
            run=doc.run,
            model_id=strawberry.ID(doc.model_id),
            version_id=strawberry.ID(doc.version_id),
            version_number=doc.version_number,
        )


@strawberry.type(description="A concept a model outputs, in the model's own vocabulary.")
class ModelConcept:
    id: strawberry.ID
    name: str

    @classmethod
    def from_entry(cls, entry: ModelConceptEntry) -> ModelConcept:
        return cls(id=strawberry.ID(entry.id), name=entry.name)


@strawberry.type(description="A registered model: an inference adapter, its config and outputs.")
class Model:
    id: strawberry.ID
    app_id: strawberry.ID
    name: str
    kind: ModelKind  # type: ignore[valid-type]
    adapter: str
    config: JSON
    zero_shot: bool = strawberry.field(description="Scores any concept name it is given.")
    builtin: bool
    concepts_count: int
    created_at: datetime
    updated_at: datetime
    _doc: strawberry.Private[ModelDoc]

    @classmethod
    def from_document(cls, doc: ModelDoc) -> Model:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            name=doc.name,
            kind=doc.kind,
            adapter=doc.adapter,
            config=doc.config,  # type: ignore[arg-type]
            zero_shot=doc.zero_shot,
            builtin=doc.builtin,
            concepts_count=len(doc.concepts),
            created_at=doc.created_at,
            updated_at=doc.updated_at,
            _doc=doc,
        )

    @strawberry.field(description="The model's output concepts, in order (capped pages).")
    def concepts(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ModelConcept]:
        page = service.page_of_concepts(self._doc, info.context.page(first, after))
        return connection_from_page(page, ModelConcept.from_entry)  # type: ignore[no-any-return]

    @strawberry.field(description="Uploaded models: their versions, oldest first (capped pages).")
    async def versions(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ModelVersion]:
        page = await service.list_versions(
            info.context.principal, self._doc.id, info.context.page(first, after)
        )
        return connection_from_page(page, ModelVersion.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="The version tasks run now (null for models that are not uploaded).")
    async def active_version(self) -> ModelVersion | None:
        doc = await service.get_version(self._doc.active_version_id)
        return None if doc is None else ModelVersion.from_document(doc)


@strawberry.type(description="Models run in order over the same input; outputs are merged.")
class Workflow:
    id: strawberry.ID
    app_id: strawberry.ID
    name: str
    model_ids: list[strawberry.ID]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: WorkflowDoc) -> Workflow:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            name=doc.name,
            model_ids=[strawberry.ID(m) for m in doc.model_ids],
            created_at=doc.created_at,
            updated_at=doc.updated_at,
        )

    @strawberry.field(description="The workflow's models, in run order.")
    async def models(self, info: Info) -> list[Model]:
        docs = await info.context.loader(ModelDoc).load_many([str(m) for m in self.model_ids])
        return [Model.from_document(d) for d in docs if d is not None]


@strawberry.input
class ModelConceptInput:
    id: strawberry.ID
    name: str


def _entries(items: list[ModelConceptInput] | None) -> list[ModelConceptEntry] | None:
    if items is None:
        return None
    return [ModelConceptEntry(id=str(i.id), name=i.name) for i in items]


@strawberry.input
class CreateModelInput:
    app_id: strawberry.ID
    name: str
    kind: ModelKind  # type: ignore[valid-type]
    adapter: str = strawberry.field(description=ADAPTER_HELP)
    config: JSON | None = strawberry.field(default=None, description=CONFIG_HELP)
    concepts: list[ModelConceptInput] = strawberry.field(
        default_factory=list, description=UPLOAD_CONCEPTS_HELP
    )
    zero_shot: bool = strawberry.field(
        default=False, description="Scores the concept names a task gives it (zero-shot adapters)."
    )
    file: Upload | None = strawberry.field(default=None, description=FILE_HELP)
    url: str | None = strawberry.field(default=None, description=URL_HELP)


@strawberry.input(description="A new file for an uploaded model; it becomes the active version.")
class CreateModelVersionInput:
    model_id: strawberry.ID
    file: Upload | None = strawberry.field(default=None, description=FILE_HELP)
    url: str | None = strawberry.field(default=None, description=URL_HELP)
    config: JSON | None = strawberry.field(default=None, description=UPLOAD_CONFIG_HELP)
    concepts: list[ModelConceptInput] | None = strawberry.field(
        default=None,
        description=UPLOAD_CONCEPTS_HELP + " Left out: the file's metadata, else the model's concepts.",
    )


@strawberry.input(description="Fields left out (or null) stay as they are.")
class UpdateModelInput:
    id: strawberry.ID
    name: str | None = None
    adapter: str | None = strawberry.field(
        default=None, description=ADAPTER_HELP + " Checked with the kept config unless one is given."
    )
    config: JSON | None = strawberry.field(default=None, description=CONFIG_HELP)
    concepts: list[ModelConceptInput] | None = None
    zero_shot: bool | None = None


@strawberry.input
class CreateWorkflowInput:
    app_id: strawberry.ID
    name: str
    model_ids: list[strawberry.ID]


@strawberry.input(description="Fields left out (or null) stay as they are.")
class UpdateWorkflowInput:
    id: strawberry.ID
    name: str | None = None
    model_ids: list[strawberry.ID] | None = None


@strawberry.type
class ModelSuccess:
    model: Model


@strawberry.type
class ModelVersionSuccess:
    model: Model
    version: ModelVersion


@strawberry.type
class WorkflowSuccess:
    workflow: Workflow


CreateModelResult = result_union("CreateModelResult", ModelSuccess)
UpdateModelResult = result_union("UpdateModelResult", ModelSuccess)
DeleteModelResult = result_union("DeleteModelResult", DeleteSuccess)
CreateModelVersionResult = result_union("CreateModelVersionResult", ModelVersionSuccess)
CreateWorkflowResult = result_union("CreateWorkflowResult", WorkflowSuccess)
UpdateWorkflowResult = result_union("UpdateWorkflowResult", WorkflowSuccess)
DeleteWorkflowResult = result_union("DeleteWorkflowResult", DeleteSuccess)


@strawberry.type
class Query:
    @strawberry.field(description="Models registered in an app.")
    async def models(
        self,
        info: Info,
        app_id: strawberry.ID,
        builtin: Annotated[
            bool | None,
            strawberry.argument(description="Only the built-in models (true) or only yours (false)."),
        ] = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Model]:
        page = await service.list_models(
            info.context.principal, app_id, info.context.page(first, after), builtin
        )
        return connection_from_page(page, Model.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One model, or null when unknown or not in your apps.")
    async def model(self, info: Info, id: strawberry.ID) -> Model | None:
        try:
            return Model.from_document(await service.get_model(info.context.principal, id))
        except NotFound:
            return None

    @strawberry.field(description="Which version of each model every run of a task used.")
    async def task_model_versions(
        self, info: Info, task_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[TaskModelVersion]:
        page = await service.task_versions(info.context.principal, task_id, info.context.page(first, after))
        return connection_from_page(page, TaskModelVersion.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="Workflows of an app.")
    async def workflows(
        self, info: Info, app_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[Workflow]:
        page = await service.list_workflows(info.context.principal, app_id, info.context.page(first, after))
        return connection_from_page(page, Workflow.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One workflow, or null when unknown or not in your apps.")
    async def workflow(self, info: Info, id: strawberry.ID) -> Workflow | None:
        try:
            return Workflow.from_document(await service.get_workflow(info.context.principal, id))
        except NotFound:
            return None


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Register a model in an app (owner, admin). Refused (ValidationError) when it "
        "cannot run: UNKNOWN_ADAPTER, ADAPTER_MISMATCH (the adapter does not serve the kind), "
        "UNKNOWN_KEY, WRONG_TYPE or OUT_OF_RANGE in `config.<key>`. With `file` or `url` (adapter "
        "`onnx`), the file is checked first and nothing is stored on a refusal: MODEL_LOAD_FAILED, "
        "UNSUPPORTED_MODEL_LAYOUT, MODEL_OUTPUT_INVALID (field `file`), CONCEPT_COUNT_MISMATCH "
        "(`concepts`), TOO_LARGE, INVALID_URL."
    )
    @mutation_errors
    async def create_model(self, info: Info, input: CreateModelInput) -> CreateModelResult:
        doc = await service.create_model(
            info.context.principal,
            input.app_id,
            name=input.name,
            kind=input.kind,
            adapter=input.adapter,
            config=input.config,
            concepts=_entries(input.concepts) or [],
            zero_shot=input.zero_shot,
            source=ModelFile(file=input.file, url=input.url),
            settings=info.context.settings,
            blobs=info.context.runtime.blobs,
        )
        return ModelSuccess(model=Model.from_document(doc))

    @strawberry.mutation(
        description="Upload a new file for an uploaded model (owner, admin): checked like "
        "createModel's file, stored as the next version and made active; tasks started later run "
        "it. Refused (IN_USE) when a task using the model would lose a concept."
    )
    @mutation_errors
    async def create_model_version(
        self, info: Info, input: CreateModelVersionInput
    ) -> CreateModelVersionResult:
        model, version = await service.create_model_version(
            info.context.principal,
            input.model_id,
            ModelFile(file=input.file, url=input.url),
            config=input.config,
            concepts=_entries(input.concepts) or [],
            settings=info.context.settings,
            blobs=info.context.runtime.blobs,
        )
        return ModelVersionSuccess(
            model=Model.from_document(model), version=ModelVersion.from_document(version)
        )

    @strawberry.mutation(
        description="Change a model (owner, admin); refused (IN_USE) when a task using it would "
        "lose a concept, and like createModel when the new adapter or config cannot run."
    )
    @mutation_errors
    async def update_model(self, info: Info, input: UpdateModelInput) -> UpdateModelResult:
        doc = await service.update_model(
            info.context.principal,
            input.id,
            name=input.name,
            adapter=input.adapter,
            config=input.config,
            concepts=_entries(input.concepts),
            zero_shot=input.zero_shot,
        )
        return ModelSuccess(model=Model.from_document(doc))

    @strawberry.mutation(description="Delete a model no workflow or task uses (owner, admin).")
    @mutation_errors
    async def delete_model(self, info: Info, id: strawberry.ID) -> DeleteModelResult:
        deleted = await service.delete_model(info.context.principal, id, info.context.runtime.blobs)
        return DeleteSuccess(id=strawberry.ID(deleted))

    @strawberry.mutation(description="Create a workflow of this app's models (owner, admin).")
    @mutation_errors
    async def create_workflow(self, info: Info, input: CreateWorkflowInput) -> CreateWorkflowResult:
        doc = await service.create_workflow(
            info.context.principal, input.app_id, input.name, [str(m) for m in input.model_ids]
        )
        return WorkflowSuccess(workflow=Workflow.from_document(doc))

    @strawberry.mutation(description="Rename a workflow or change its models (owner, admin).")
    @mutation_errors
    async def update_workflow(self, info: Info, input: UpdateWorkflowInput) -> UpdateWorkflowResult:
        model_ids = None if input.model_ids is None else [str(m) for m in input.model_ids]
        doc = await service.update_workflow(
            info.context.principal, input.id, name=input.name, model_ids=model_ids
        )
        return WorkflowSuccess(workflow=Workflow.from_document(doc))

    @strawberry.mutation(description="Delete a workflow no task uses (owner, admin).")
    @mutation_errors
    async def delete_workflow(self, info: Info, id: strawberry.ID) -> DeleteWorkflowResult:
        return DeleteSuccess(id=strawberry.ID(await service.delete_workflow(info.context.principal, id)))
