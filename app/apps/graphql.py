from __future__ import annotations

from datetime import datetime

import strawberry

from app.access import require_app
from app.apps import service
from app.apps.models import App as AppDoc
from app.apps.models import Membership
from app.apps.models import Role as RoleEnum
from app.core.errors import NotFound
from app.graphql.common import DeleteSuccess
from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.graphql.relay import Connection, connection_from_page
from app.users import service as users_service
from app.users.graphql import ApiKey, User
from app.users.models import User as UserDoc

Role = strawberry.enum(RoleEnum, name="Role", description="A collaborator's role in an app.")


@strawberry.type(description="A workspace: concepts, datasets, inputs, models and tasks live in one.")
class App:
    id: strawberry.ID
    name: str
    description: str
    created_at: datetime

    @classmethod
    def from_document(cls, doc: AppDoc) -> App:
        return cls(
            id=strawberry.ID(doc.id),
            name=doc.name,
            description=doc.description,
            created_at=doc.created_at,
        )

    @strawberry.field(description="Your roles in this app.")
    async def my_roles(self, info: Info) -> list[Role]:  # type: ignore[valid-type]
        return await info.context.my_roles(str(self.id))


@strawberry.type(description="A user's membership of an app.")
class Collaborator:
    id: strawberry.ID
    user_id: strawberry.ID
    roles: list[Role]  # type: ignore[valid-type]
    created_at: datetime

    @classmethod
    def from_document(cls, doc: Membership) -> Collaborator:
        return cls(
            id=strawberry.ID(doc.id),
            user_id=strawberry.ID(doc.user_id),
            roles=list(doc.roles),
            created_at=doc.created_at,
        )

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        doc = await info.context.loader(UserDoc).load(str(self.user_id))
        return User.from_document(doc) if doc else None


@strawberry.input
class CreateAppInput:
    name: str
    description: str = ""


@strawberry.input
class UpdateAppInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None


@strawberry.input
class AddCollaboratorInput:
    app_id: strawberry.ID
    email: str
    roles: list[Role]  # type: ignore[valid-type]


@strawberry.input
class UpdateCollaboratorInput:
    app_id: strawberry.ID
    user_id: strawberry.ID
    roles: list[Role]  # type: ignore[valid-type]


@strawberry.input
class RemoveCollaboratorInput:
    app_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class AppSuccess:
    app: App


@strawberry.type
class CollaboratorSuccess:
    collaborator: Collaborator


CreateAppResult = result_union("CreateAppResult", AppSuccess)
UpdateAppResult = result_union("UpdateAppResult", AppSuccess)
DeleteAppResult = result_union("DeleteAppResult", DeleteSuccess)
AddCollaboratorResult = result_union("AddCollaboratorResult", CollaboratorSuccess)
UpdateCollaboratorResult = result_union("UpdateCollaboratorResult", CollaboratorSuccess)
RemoveCollaboratorResult = result_union("RemoveCollaboratorResult", CollaboratorSuccess)


@strawberry.type(description="The caller: their user, apps and API keys.")
class Me:
    user: User

    @strawberry.field
    async def apps(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[App]:
        args = info.context.page(first, after)
        page = await service.list_apps(info.context.principal, args)
        return connection_from_page(page, App.from_document)  # type: ignore[no-any-return]

    @strawberry.field
    async def api_keys(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ApiKey]:
        args = info.context.page(first, after)
        page = await users_service.list_api_keys(info.context.principal, args)
        return connection_from_page(page, ApiKey.from_document)  # type: ignore[no-any-return]


@strawberry.type
class Query:
    @strawberry.field(description="The authenticated caller.")
    async def me(self, info: Info) -> Me:
        return Me(user=User.from_document(info.context.principal.user))

    @strawberry.field(description="Apps you are a member of.")
    async def apps(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[App]:
        page = await service.list_apps(info.context.principal, info.context.page(first, after))
        return connection_from_page(page, App.from_document)  # type: ignore[no-any-return]

    @strawberry.field(description="One app, or null when unknown or not yours.")
    async def app(self, info: Info, id: strawberry.ID) -> App | None:
        try:
            doc, _ = await require_app(info.context.principal, id)
        except NotFound:
            return None
        return App.from_document(doc)

    @strawberry.field(description="The members of an app and their roles.")
    async def collaborators(
        self, info: Info, app_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[Collaborator]:
        page = await service.list_collaborators(
            info.context.principal, app_id, info.context.page(first, after)
        )
        return connection_from_page(page, Collaborator.from_document)  # type: ignore[no-any-return]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an app; you become its owner.")
    @mutation_errors
    async def create_app(self, info: Info, input: CreateAppInput) -> CreateAppResult:
        doc = await service.create_app(info.context.principal, input.name, input.description)
        return AppSuccess(app=App.from_document(doc))

    @strawberry.mutation(description="Rename an app or change its description (owner, admin).")
    @mutation_errors
    async def update_app(self, info: Info, input: UpdateAppInput) -> UpdateAppResult:
        doc = await service.update_app(info.context.principal, input.id, input.name, input.description)
        return AppSuccess(app=App.from_document(doc))

    @strawberry.mutation(
        description="Delete an app and everything in it (owner), with each stored image and model file "
        "that no other app holds."
    )
    @mutation_errors
    async def delete_app(self, info: Info, id: strawberry.ID) -> DeleteAppResult:
        runtime = info.context.runtime
        deleted = await service.delete_app(
            info.context.principal, id, redis=runtime.redis, blobs=runtime.blobs
        )
        return DeleteSuccess(id=strawberry.ID(deleted))

    @strawberry.mutation(description="Add a collaborator by email (owner, admin).")
    @mutation_errors
    async def add_collaborator(self, info: Info, input: AddCollaboratorInput) -> AddCollaboratorResult:
        doc = await service.add_collaborator(info.context.principal, input.app_id, input.email, input.roles)
        return CollaboratorSuccess(collaborator=Collaborator.from_document(doc))

    @strawberry.mutation(description="Change a collaborator's roles (owner, admin).")
    @mutation_errors
    async def update_collaborator(
        self, info: Info, input: UpdateCollaboratorInput
    ) -> UpdateCollaboratorResult:
        doc = await service.update_collaborator(
            info.context.principal, input.app_id, input.user_id, input.roles, redis=info.context.runtime.redis
        )
        return CollaboratorSuccess(collaborator=Collaborator.from_document(doc))

    @strawberry.mutation(description="Remove a collaborator (owner, admin), or leave an app.")
    @mutation_errors
    async def remove_collaborator(
        self, info: Info, input: RemoveCollaboratorInput
    ) -> RemoveCollaboratorResult:
        doc = await service.remove_collaborator(
            info.context.principal, input.app_id, input.user_id, redis=info.context.runtime.redis
        )
        return CollaboratorSuccess(collaborator=Collaborator.from_document(doc))
