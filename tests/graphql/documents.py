"""GraphQL documents that cost far more than their size, and legal ones that are merely big."""

from __future__ import annotations

from graphql import get_introspection_query

BYSTANDER = "{ me { user { email } } }"


def doubling(n: int) -> str:
    """Each fragment spreads the previous one twice: 2^n spreads for a walker that follows them."""
    fragments = ["fragment F0 on Query { __typename }"]
    fragments += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n + 1)]
    return f"{{ ...F{n} }}\n" + "\n".join(fragments)


def chain(n: int, *, cycle: bool = False) -> str:
    """Each fragment spreads the previous one; with ``cycle`` the first spreads the last."""
    first = f"...F{n}" if cycle else "__typename"
    fragments = [f"fragment F0 on Query {{ {first} }}"]
    fragments += [f"fragment F{i} on Query {{ ...F{i - 1} }}" for i in range(1, n + 1)]
    return f"{{ ...F{n} }}\n" + "\n".join(fragments)


def repeated_fields(n: int) -> str:
    return "{ me { user { " + "id " * n + "} } }"


def comment(size: int) -> str:
    return "#" + "x" * size + "\n{ __typename }"


def deep_introspection(levels: int) -> str:
    return "{ __schema { types { fields { type { " + "ofType { name " * levels + "}" * levels + " } } } } }"


def wide_introspection(n: int) -> str:
    return "{ __schema { types { " + "name " * n + "} } }"


def full_introspection() -> str:
    return get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )


def app_page(n_fragments: int = 16) -> str:
    """A big, legal query as a client app writes it: a fragment per component, each selecting the
    fields it shows (over a kilobyte and complexity 300: parsed and validated off the event loop)."""
    fragments = [f"fragment User{i} on User {{ id email name createdAt }}" for i in range(n_fragments)]
    spreads = " ".join(f"...User{i}" for i in range(n_fragments))
    query = (
        "query Page($first: Int) {\n"
        f"  me {{ user {{ {spreads} }} apps(first: $first) {{ nodes {{ id name myRoles }} }} }}\n"
        "  apps(first: $first) { nodes { id name description createdAt } pageInfo { hasNextPage endCursor } }\n"
        "}"
    )
    return query + "\n" + "\n".join(fragments)
