"""The schema: every domain's Query / Mutation merged, with caches and limits built once."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, ValidationRule
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.extensions.max_aliases import create_validator as max_aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.tools import merge_types

from app.annotations import graphql as annotations_api
from app.apps import graphql as apps
from app.concepts import graphql as concepts
from app.datasets import graphql as datasets
from app.exports import graphql as exports
from app.graphql.errors import ERROR_TYPES
from app.inputs import graphql as inputs
from app.live import graphql as live
from app.models import graphql as models
from app.review import graphql as review
from app.settings import Settings
from app.tasks import graphql as tasks
from app.tasks import graphql_lifecycle as task_runs
from app.users import graphql as users

QUERY_MODULES: list[Any] = [users, apps]


def _modules() -> list[Any]:
    return [
        users,
        apps,
        concepts,
        datasets,
        inputs,
        models,
        tasks,
        task_runs,
        annotations_api,
        review,
        exports,
        live,
    ]


def _limits(settings: Settings) -> type[AddValidationRules]:
    # Built once: per-request rule classes would defeat the validation cache (PERFORMANCE.md).
    rules: list[type[ValidationRule]] = [
        depth_validator(settings.max_query_depth, None),
        max_aliases_validator(settings.max_aliases),
    ]

    class Limits(AddValidationRules):
        def __init__(self, **_: Any) -> None:
            super().__init__(rules)  # type: ignore[arg-type]

    return Limits


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Domain errors are answers, not failures; unexpected ones are logged by the view
        # with the request id, so nothing is logged twice.
        return None


def build_schema(settings: Settings | None = None) -> Schema:
    settings = settings or Settings()
    modules = _modules()
    query = merge_types("Query", tuple(m.Query for m in modules if hasattr(m, "Query")))
    mutation = merge_types("Mutation", tuple(m.Mutation for m in modules if hasattr(m, "Mutation")))
    subscriptions = tuple(m.Subscription for m in modules if hasattr(m, "Subscription"))
    return Schema(
        query=query,
        mutation=mutation,
        subscription=merge_types("Subscription", subscriptions) if subscriptions else None,
        types=list(ERROR_TYPES),
        extensions=[ParserCache, ValidationCache, _limits(settings)],
    )


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
