"""``labelstream keys list|create|revoke``: your API keys, over GraphQL.

``keys create --email E`` is the bootstrap path for someone who has no key yet: it writes to the
database of the ``up`` running on --data-dir (or MONGODB_URL) directly, and never creates one.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from app.client.api import ERROR_FIELDS
from app.client.commands.common import DataDirOpt, KeyOpt, UrlOpt, api, console, err, guarded, table
from app.client.errors import ClientError, UsageError

keys_cli = typer.Typer(help="Your API keys.", no_args_is_help=True)

LIST = (
    "query($first: Int, $after: String) { me { apiKeys(first: $first, after: $after) {"
    " nodes { id prefix description revoked createdAt lastUsedAt } pageInfo { hasNextPage endCursor } } } }"
)
CREATE = (
    "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { __typename"
    " ... on CreateApiKeySuccess { secret apiKey { id prefix } } " + ERROR_FIELDS + " } }"
)
REVOKE = (
    "mutation($id: ID!) { revokeApiKey(id: $id) { __typename"
    " ... on RevokeApiKeySuccess { apiKey { id revoked } } " + ERROR_FIELDS + " } }"
)


@keys_cli.command("list")
@guarded
def keys_list(
    url: UrlOpt = None,
    key: KeyOpt = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List your API keys (never their secrets)."""
    with api(url, key) as client:
        rows = table("ID", "PREFIX", "DESCRIPTION", "CREATED", "LAST USED", "STATE")
        for k in client.pages(LIST, ["me", "apiKeys"]):
            if k["revoked"] and not all_keys:
                continue
            state = "revoked" if k["revoked"] else "active"
            rows.add_row(
                k["id"],
                k["prefix"],
                k["description"],
                k["createdAt"][:19],
                (k["lastUsedAt"] or "-")[:19],
                state,
            )
        console.print(rows)


@keys_cli.command("create")
@guarded
def keys_create(
    description: Annotated[str, typer.Option(help="What the key is for.")] = "",
    email: Annotated[
        str | None,
        typer.Option(
            help="Bootstrap: a key for this existing user, written to the local database (no key needed)."
        ),
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key for yourself (or, with --email, for a user of a local database) and
    print its secret once."""
    if email is None:
        with api(url, key, data_dir) as client:
            made = client.mutate(CREATE, "createApiKey", i={"description": description})
        err.print(f"Created key {made['apiKey']['id']}; its secret is shown once:")
        print(f"API key: {made['secret']}")
        return
    from app.cli_state import NoDatabase, create_key_in_database, database_settings, settings_for

    if url or key:
        raise UsageError("--email writes to a local database; it takes --data-dir, not --url/--key")
    settings = settings_for(data_dir=data_dir)
    try:
        with database_settings(settings) as found:
            secret = asyncio.run(create_key_in_database(found, email, description))
    except NoDatabase as exc:
        raise UsageError(str(exc)) from None
    except LookupError:
        raise ClientError(
            f"no user with email {email!r} in the database of {settings.data_dir.resolve()}"
        ) from None
    print(f"API key: {secret}")


@keys_cli.command("revoke")
@guarded
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")],
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Revoke one of your API keys; it stops working at once."""
    with api(url, key) as client:
        client.mutate(REVOKE, "revokeApiKey", id=key_id)
    console.print(f"Revoked {key_id}")
