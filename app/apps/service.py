"""Apps and collaborators.

Invariants: every app has at least one OWNER; only owners grant, change or remove the OWNER
role; a member may always leave (remove themselves) unless they are the last owner. Removing a
member, changing their roles or deleting the app publishes an ``access`` event once written, so
every API process re-checks what that member still has open (``pubsub.publish_access``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.access import MANAGERS, Principal, access_changed, require_app
from app.annotations import store
from app.annotations.models import Annotation
from app.apps.models import App, Membership, Role
from app.blob_refs import release_unused
from app.core import blob_pins, pubsub, validate
from app.core.blobs import BlobStore
from app.core.errors import Conflict, ErrorCode, NotFound, PermissionDenied, ValidationFailed
from app.core.pagination import Page, PageArgs, paginate
from app.documents import DOCUMENT_MODELS
from app.exports.models import DatasetVersion
from app.exports.models import pin_owner as version_pin_owner
from app.inputs.models import Input
from app.models.builtin import register_builtin_models
from app.models.models import ModelVersion
from app.users.models import User
from app.users.service import create_api_key, get_or_create_user


def _roles(roles: Iterable[Role], field: str = "roles") -> list[Role]:
    unique = sorted(set(roles), key=list(Role).index)
    if not unique:
        raise ValidationFailed("at least one role is needed", field=field, code=ErrorCode.EMPTY)
    return unique


async def create_app(principal: Principal, name: str, description: str = "") -> App:
    app = App(
        name=validate.name(name),
        description=validate.description(description),
        created_by=principal.user_id,
    )
    await app.insert()
    await Membership(app_id=app.id, user_id=principal.user_id, roles=[Role.OWNER]).insert()
    await register_builtin_models(app.id)
    return app


async def update_app(principal: Principal, app_id: str, name: str | None, description: str | None) -> App:
    app, _ = await require_app(principal, app_id, MANAGERS, field="id")
    if name is not None:
        app.name = validate.name(name)
    if description is not None:
        app.description = validate.description(description)
    await app.touch_save()
    return app


async def delete_app(
    principal: Principal, app_id: str, *, redis: Any = None, blobs: BlobStore | None = None
) -> str:
    """Delete the app and everything in it, then (with ``blobs``) every blob it held that
    nothing else names or pins: its inputs' images, its model files, its dataset versions'
    images. Blobs are content-addressed, so another app's input with the same bytes keeps one.

    The references go first (documents, then the app's pins), and each blob is deleted only
    if no input, model version or pin names it afterwards (``app.core.blob_pins`` ordering).

    The memberships go last, after the app itself: a deletion that stops midway (the process
    dies, the database goes away) leaves the app with its owner, who deletes it again. What
    such a deletion released no bytes for, ``labelstream blobs gc`` deletes."""
    app, _ = await require_app(principal, app_id, (Role.OWNER,), field="id")
    keys = await _blob_keys(app.id)
    owners = await _pin_owners(app.id)
    for model in DOCUMENT_MODELS:
        if model is Annotation:
            await store.delete_app(app.id)
        elif "app_id" in model.model_fields and model is not Membership:
            await model.get_pymongo_collection().delete_many({"app_id": app.id})
    for owner in owners:
        async for released in blob_pins.unpin(owner):
            keys.update(released)
    await app.delete()
    await Membership.get_pymongo_collection().delete_many({"app_id": app.id})
    access_changed(principal, app_id=app.id)
    await pubsub.publish_access(redis, pubsub.AccessReason.APP_DELETED, app_id=app.id)
    if blobs is not None:
        await release_unused(blobs, keys)
    return app.id


async def _blob_keys(app_id: str) -> set[str]:
    """The blob keys the app's inputs and model versions name."""
    keys: set[str] = set()
    for model in (Input, ModelVersion):
        async for doc in model.get_pymongo_collection().find({"app_id": app_id}, {"blob_key": 1}):
            if doc.get("blob_key"):
                keys.add(doc["blob_key"])
    return keys


async def _pin_owners(app_id: str) -> list[str]:
    """The owners of the app's pins: its dataset versions and model versions."""
    owners = [
        version_pin_owner(d["_id"])
        async for d in DatasetVersion.get_pymongo_collection().find({"app_id": app_id}, {"_id": 1})
    ]
    owners += [
        ModelVersion.pin_owner_of(d["_id"])
        async for d in ModelVersion.get_pymongo_collection().find({"app_id": app_id}, {"_id": 1})
    ]
    return owners


async def list_apps(principal: Principal, args: PageArgs) -> Page[App]:
    memberships = await Membership.find({"user_id": principal.user_id}).to_list()
    return await paginate(App, {"_id": {"$in": [m.app_id for m in memberships]}}, args)


async def list_collaborators(principal: Principal, app_id: str, args: PageArgs) -> Page[Membership]:
    await require_app(principal, app_id)
    return await paginate(Membership, {"app_id": app_id}, args)


async def _owners(app_id: str) -> int:
    return len(await Membership.find({"app_id": app_id, "roles": Role.OWNER.value}).to_list())


async def add_collaborator(
    principal: Principal, app_id: str, email: str, roles: Iterable[Role]
) -> Membership:
    _, mine = await require_app(principal, app_id, MANAGERS)
    wanted = _roles(roles)
    if Role.OWNER in wanted and Role.OWNER not in mine.roles:
        raise PermissionDenied("only owners can grant the OWNER role", field="roles")
    user = await get_or_create_user(email)
    membership = Membership(app_id=app_id, user_id=user.id, roles=wanted)
    try:
        await membership.insert()
    except DuplicateKeyError as exc:
        raise Conflict(
            "the user is already a collaborator; change their roles instead",
            field="email",
            code=ErrorCode.DUPLICATE,
        ) from exc
    return membership


async def _membership(app_id: str, user_id: str) -> Membership:
    membership = await Membership.find_one({"app_id": app_id, "user_id": user_id})
    if membership is None:
        raise NotFound("collaborator", user_id, field="userId")
    return membership


async def update_collaborator(
    principal: Principal, app_id: str, user_id: str, roles: Iterable[Role], *, redis: Any = None
) -> Membership:
    _, mine = await require_app(principal, app_id, MANAGERS)
    target = await _membership(app_id, user_id)
    wanted = _roles(roles)
    owner_change = (Role.OWNER in wanted) != (Role.OWNER in target.roles)
    if owner_change and Role.OWNER not in mine.roles:
        raise PermissionDenied("only owners can grant or remove the OWNER role", field="roles")
    if Role.OWNER in target.roles and Role.OWNER not in wanted and await _owners(app_id) <= 1:
        raise Conflict("an app needs at least one owner", field="roles", code=ErrorCode.LAST_OWNER)
    changed = set(wanted) != set(target.roles)
    target.roles = wanted
    await target.touch_save()
    if changed:
        access_changed(principal, user_id=target.user_id, app_id=app_id)
        await pubsub.publish_access(
            redis, pubsub.AccessReason.ROLES_CHANGED, user_id=target.user_id, app_id=app_id
        )
    return target


async def remove_collaborator(
    principal: Principal, app_id: str, user_id: str, *, redis: Any = None
) -> Membership:
    leaving = user_id == principal.user_id
    _, mine = await require_app(principal, app_id, None if leaving else MANAGERS)
    target = await _membership(app_id, user_id)
    if Role.OWNER in target.roles and not leaving and Role.OWNER not in mine.roles:
        raise PermissionDenied("only owners can remove an owner", field="userId")
    if Role.OWNER in target.roles and await _owners(app_id) <= 1:
        raise Conflict("an app needs at least one owner", field="userId", code=ErrorCode.LAST_OWNER)
    await target.delete()
    access_changed(principal, user_id=target.user_id, app_id=app_id)
    await pubsub.publish_access(
        redis, pubsub.AccessReason.MEMBER_REMOVED, user_id=target.user_id, app_id=app_id
    )
    return target


async def bootstrap(email: str, app_name: str) -> tuple[User, App, str] | None:
    """First start of an empty database: an owner, an app and a key (secret returned once).

    Returns None when any user exists already, so a restart never creates a second owner.
    """
    if await User.find_one({}) is not None:
        return None
    user = await get_or_create_user(email, "Owner")
    app = App(name=app_name, created_by=user.id)
    await app.insert()
    await Membership(app_id=app.id, user_id=user.id, roles=[Role.OWNER]).insert()
    await register_builtin_models(app.id)
    _, secret = await create_api_key(user.id, "created by labelstream up")
    return user, app, secret
