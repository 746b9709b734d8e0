"""Users and API keys."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from app.access import Principal, access_changed, hash_secret, new_secret
from app.core import pubsub, validate
from app.core.errors import ErrorCode, NotFound, ValidationFailed
from app.core.pagination import Page, PageArgs, paginate
from app.users.models import ApiKey, User


async def get_or_create_user(email: str, name: str = "") -> User:
    address = validate.email(email)
    existing = await User.find_one({"email": address})
    if existing is not None:
        return existing
    user = User(email=address, name=name.strip()[: validate.MAX_NAME])
    try:
        await user.insert()
    except DuplicateKeyError:  # created concurrently: the unique index decides
        found = await User.find_one({"email": address})
        assert found is not None
        return found
    return user


async def find_user_by_email(email: str) -> User | None:
    return await User.find_one({"email": email.strip().lower()})


async def create_api_key(user_id: str, description: str = "") -> tuple[ApiKey, str]:
    """A new key; the secret is returned once and only its hash is stored."""
    secret = new_secret()
    key = ApiKey(
        user_id=user_id,
        secret_hash=hash_secret(secret),
        prefix=secret[:10],
        description=validate.description(description),
    )
    await key.insert()
    return key, secret


async def revoke_api_key(principal: Principal, key_id: str, *, redis: Any = None) -> ApiKey:
    """Revoke one of the caller's keys; every API process then drops what the key still had open
    (live subscriptions end; see ``pubsub.publish_access``)."""
    key = await ApiKey.get(key_id) if key_id else None
    if key is None or key.user_id != principal.user_id:
        raise NotFound("API key", key_id, field="id")
    if key.revoked:
        raise ValidationFailed("the key is already revoked", field="id", code=ErrorCode.ALREADY_REVOKED)
    await ApiKey.get_pymongo_collection().update_one(
        {"_id": key.id}, {"$set": {"revoked": True}, "$currentDate": {"updated_at": True}}
    )
    access_changed(principal, key_id=key.id)
    await pubsub.publish_access(redis, pubsub.AccessReason.KEY_REVOKED, user_id=key.user_id, key_id=key.id)
    refreshed = await ApiKey.get(key.id)
    assert refreshed is not None
    return refreshed


async def list_api_keys(principal: Principal, args: PageArgs) -> Page[ApiKey]:
    return await paginate(ApiKey, {"user_id": principal.user_id}, args)


async def update_me(principal: Principal, name: str) -> User:
    user = principal.user
    user.name = validate.name(name)
    await user.touch_save()
    return user
