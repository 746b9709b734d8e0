"""The schema: every domain's Query / Mutation merged, with caches and limits built once."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, ValidationRule, specified_rules
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.extensions.max_aliases import create_validator as max_aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.schema import StreamResult
from strawberry.tools import merge_types
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from app.annotations import graphql as annotations_api
from app.apps import graphql as apps
from app.concepts import graphql as concepts
from app.datasets import graphql as datasets
from app.exports import graphql as exports
from app.graphql.document_cache import DocumentCache
from app.graphql.errors import ERROR_TYPES
from app.graphql.execution import PlainFieldsExecutor
from app.graphql.limits import DocumentLimits
from app.graphql.variables import invalid_variables
from app.inputs import graphql as inputs
from app.live import graphql as live
from app.models import graphql as models
from app.predictions import graphql as predictions
from app.review import graphql as review
from app.search import graphql as search
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
        predictions,
        annotations_api,
        review,
        exports,
        search,
        live,
    ]


def _validation_rules(settings: Settings, *, depth: bool) -> list[type[ValidationRule]]:
    # Built once: per-request rule classes would defeat the validation cache (PERFORMANCE.md).
    # The depth limit is Strawberry's rule only without document limits, which check it first.
    rules: list[type[ValidationRule]] = [max_aliases_validator(settings.max_aliases)]
    if depth:
        rules.insert(0, depth_validator(settings.max_query_depth, None))
    return rules


def _add(rules: list[type[ValidationRule]]) -> type[AddValidationRules]:
    class Limits(AddValidationRules):
        def __init__(self, **_: Any) -> None:
            super().__init__(rules)  # type: ignore[arg-type]

    return Limits


class Schema(strawberry.Schema):
    """Refuses a document over its limits (app/graphql/limits.py) or variables JSON cannot carry
    before Strawberry parses or validates anything, over HTTP and WebSocket alike."""

    documents: DocumentCache | None = None  # None: no document limits (the unlimited benchmark)
    # what a request's validation rules are once ``Limits`` added its own: the validation cache key
    validation_rules: tuple[type[ASTValidationRule], ...] = tuple(specified_rules)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Domain errors are answers, not failures; unexpected ones are logged by the view
        # with the request id, so nothing is logged twice.
        return None

    async def execute(  # Strawberry's signature
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        refused = await self._refused(query, variable_values)
        if refused is not None:
            return PreExecutionError(data=None, errors=[refused])
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    async def stream(  # Strawberry's signature; subscribe() comes here too
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> StreamResult:
        refused = await self._refused(query, variable_values)
        if refused is not None:
            return _one_error(refused)
        return await super().stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types,
        )

    async def _refused(self, query: str | None, variables: dict[str, Any] | None) -> GraphQLError | None:
        if self.documents is not None and query:
            refusal = await self.documents.admit(query, self._schema, self.validation_rules)
            if refusal is not None:
                return refusal.error()
        return invalid_variables(variables)


async def _one_error(error: GraphQLError) -> AsyncGenerator[PreExecutionError, None]:
    # what Strawberry's stream yields for a document that fails validation
    yield PreExecutionError(data=None, errors=[error])


def build_schema(settings: Settings | None = None, *, document_limits: bool = True) -> Schema:
    """``document_limits=False`` is the configuration before them (Strawberry's ParserCache and
    depth rule), kept for bench/graphql_limits.py to compare against."""
    settings = settings or Settings()
    modules = _modules()
    query = merge_types("Query", tuple(m.Query for m in modules if hasattr(m, "Query")))
    mutation = merge_types("Mutation", tuple(m.Mutation for m in modules if hasattr(m, "Mutation")))
    subscriptions = tuple(m.Subscription for m in modules if hasattr(m, "Subscription"))
    documents = DocumentCache(DocumentLimits.from_settings(settings)) if document_limits else None
    rules = _validation_rules(settings, depth=documents is None)
    schema = Schema(
        query=query,
        mutation=mutation,
        subscription=merge_types("Subscription", subscriptions) if subscriptions else None,
        types=list(ERROR_TYPES),
        # plain objects (a page's items) completed without per-field overhead (execution.py)
        execution_context_class=PlainFieldsExecutor,
        extensions=[
            ParserCache if documents is None else documents.parser_cache(),
            ValidationCache,
            _add(rules),
        ],
    )
    schema.documents = documents
    schema.validation_rules = (*specified_rules, *rules)
    return schema


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
