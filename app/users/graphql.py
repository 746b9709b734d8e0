from __future__ import annotations

from datetime import datetime

import strawberry

from app.graphql.context import Info
from app.graphql.errors import mutation_errors, result_union
from app.users import service
from app.users.models import ApiKey as ApiKeyDoc
from app.users.models import User as UserDoc


@strawberry.type(description="A person. Email is visible to the user and to their app's members.")
class User:
    id: strawberry.ID
    email: str
    name: str
    created_at: datetime

    @classmethod
    def from_document(cls, doc: UserDoc) -> User:
        return cls(id=strawberry.ID(doc.id), email=doc.email, name=doc.name, created_at=doc.created_at)


@strawberry.type(description="An API key. The secret itself is only ever shown once, at creation.")
class ApiKey:
    id: strawberry.ID
    prefix: str = strawberry.field(description="The first characters of the secret.")
    description: str
    revoked: bool
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_document(cls, doc: ApiKeyDoc) -> ApiKey:
        return cls(
            id=strawberry.ID(doc.id),
            prefix=doc.prefix,
            description=doc.description,
            revoked=doc.revoked,
            created_at=doc.created_at,
            last_used_at=doc.last_used_at,
        )


@strawberry.type
class CreateApiKeySuccess:
    api_key: ApiKey
    secret: str = strawberry.field(description="Shown once: store it now.")


@strawberry.type
class RevokeApiKeySuccess:
    api_key: ApiKey


@strawberry.type
class UpdateMeSuccess:
    user: User


@strawberry.input
class CreateApiKeyInput:
    description: str = ""


@strawberry.input
class UpdateMeInput:
    name: str


CreateApiKeyResult = result_union("CreateApiKeyResult", CreateApiKeySuccess)
RevokeApiKeyResult = result_union("RevokeApiKeyResult", RevokeApiKeySuccess)
UpdateMeResult = result_union("UpdateMeResult", UpdateMeSuccess)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an API key for yourself; its secret is shown once.")
    @mutation_errors
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyResult:
        key, secret = await service.create_api_key(info.context.principal.user_id, input.description)
        return CreateApiKeySuccess(api_key=ApiKey.from_document(key), secret=secret)

    @strawberry.mutation(description="Revoke one of your API keys; it stops working at once.")
    @mutation_errors
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> RevokeApiKeyResult:
        key = await service.revoke_api_key(info.context.principal, id, redis=info.context.runtime.redis)
        return RevokeApiKeySuccess(api_key=ApiKey.from_document(key))

    @strawberry.mutation(description="Change your display name.")
    @mutation_errors
    async def update_me(self, info: Info, input: UpdateMeInput) -> UpdateMeResult:
        user = await service.update_me(info.context.principal, input.name)
        return UpdateMeSuccess(user=User.from_document(user))
