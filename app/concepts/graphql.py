from __future__ import annotations

from datetime import datetime

import strawberry

from app.concepts import service
from app.concepts.models import Concept as ConceptDoc
from app.core.errors import NotFound
from app.graphql.common import DeleteSuccess
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page


@strawberry.type(description="A label name in an app, e.g. `cat`.")
class Concept:
    id: strawberry.ID
    app_id: strawberry.ID
    name: str
    created_at: datetime

    @classmethod
    def from_document(cls, doc: ConceptDoc) -> Concept:
        return cls(
            id=strawberry.ID(doc.id),
            app_id=strawberry.ID(doc.app_id),
            name=doc.name,
            created_at=doc.created_at,
        )


@strawberry.input
class CreateConceptInput:
    app_id: strawberry.ID
    name: str


@strawberry.input
class UpdateConceptInput:
    id: strawberry.ID
    name: str


@strawberry.type
class ConceptSuccess:
    concept: Concept


CreateConceptResult = result_union("CreateConceptResult", ConceptSuccess)
UpdateConceptResult = result_union("UpdateConceptResult", ConceptSuccess)
DeleteConceptResult = result_union("DeleteConceptResult", DeleteSuccess)


@strawberry.type
class Query:
    @strawberry.field(description="Concepts of an app, optionally by name prefix (any case).")
    async def concepts(
        self,
        info: Info,
        app_id: strawberry.ID,
        name_prefix: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Concept]:
        page = await service.list_concepts(
            info.context.principal, app_id, info.context.page(first, after), name_prefix
        )
        return connection_from_page(page, Concept.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One concept, or null when unknown or not in your apps.")
    async def concept(self, info: Info, id: strawberry.ID) -> Concept | None:
        try:
            return Concept.from_document(await service.get_concept(info.context.principal, id))
        except NotFound:
            return None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a concept (owner, admin, labeler).")
    @mutation_errors
    async def create_concept(self, info: Info, input: CreateConceptInput) -> CreateConceptResult:
        doc = await service.create_concept(info.context.principal, input.app_id, input.name)
        return ConceptSuccess(concept=Concept.from_document(doc))

    @strawberry.mutation(description="Rename a concept (owner, admin).")
    @mutation_errors
    async def update_concept(self, info: Info, input: UpdateConceptInput) -> UpdateConceptResult:
        doc = await service.update_concept(info.context.principal, input.id, input.name)
        return ConceptSuccess(concept=Concept.from_document(doc))

    @strawberry.mutation(description="Delete a concept no task or annotation uses (owner, admin).")
    @mutation_errors
    async def delete_concept(self, info: Info, id: strawberry.ID) -> DeleteConceptResult:
        return DeleteSuccess(id=strawberry.ID(await service.delete_concept(info.context.principal, id)))
