"""The schema's possible-types map, for GraphQL clients that cache by type.

Apollo Client (``new InMemoryCache({ possibleTypes })``) and urql's graphcache
(``cacheExchange({ possibleTypes })``) need to know which object types implement each interface
and belong to each union: without it Apollo cannot match ``... on Error { code field message }``
against ``AppNotFound`` and silently drops those fields. ``possible-types.json`` (next to
``schema.graphql``, written by ``labelstream schema export --possible-types`` and from then on
by every export next to it, and compared by ``labelstream schema check`` when it exists) is
that map: every interface and union, its concrete types sorted.
"""

from __future__ import annotations

import json
from pathlib import Path

from graphql import GraphQLInterfaceType, GraphQLUnionType

from app.graphql.schema import build_schema

FILE_NAME = "possible-types.json"


def possible_types() -> dict[str, list[str]]:
    schema = build_schema()._schema
    out: dict[str, list[str]] = {}
    for name, t in sorted(schema.type_map.items()):
        if name.startswith("__") or not isinstance(t, (GraphQLInterfaceType, GraphQLUnionType)):
            continue
        out[name] = sorted(p.name for p in schema.get_possible_types(t))
    return out


def render() -> str:
    return json.dumps(possible_types(), indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> Path:
    path = folder / FILE_NAME
    path.write_text(render())
    return path


def stale(folder: Path) -> Path | None:
    """The file when it is missing or differs from what the code builds, else None."""
    path = folder / FILE_NAME
    return None if path.exists() and path.read_text() == render() else path
