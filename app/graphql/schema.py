"""The schema: every domain's Query / Mutation merged, with caches and limits built once."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterable
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import ASTValidationRule, DocumentNode, GraphQLError, ValidationRule, execute, specified_rules
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.extensions.max_aliases import create_validator as max_aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, StreamResult
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
    # whether a cached, valid query or mutation may skip Strawberry's extension hooks (``execute``)
    direct: bool = False
    # what the direct path reports each operation to (the app's OperationMetrics does the same on
    # Strawberry's path): operation name, type, seconds, errors
    observe: Callable[[str | None, str, float, list[GraphQLError]], None] | None = None
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
        started = time.perf_counter()
        refused = await self._refused(query, variable_values)
        if refused is not None:
            return PreExecutionError(data=None, errors=[refused])
        if self.documents is not None and query and self.documents.names_missing(query, operation_name):
            return PreExecutionError(data=None, errors=[_name_missing()])
        lane = self._lane(query, operation_name, allowed_operation_types)
        if lane is not None:
            document, kind, name = lane
            result = await self._execute_direct(
                document, variable_values, context_value, root_value, operation_name, operation_extensions
            )
            if self.observe is not None:
                self.observe(name, kind.value, time.perf_counter() - started, result.errors or [])
            return result
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def _lane(
        self, query: str | None, operation_name: str | None, allowed: Iterable[OperationType] | None
    ) -> tuple[DocumentNode, OperationType, str | None] | None:
        if not self.direct or self.documents is None or not query:
            return None
        found = self.documents.lane(query, self._schema, self.validation_rules, operation_name)
        if found is None or found[1] is OperationType.SUBSCRIPTION:
            return None
        allowed = DEFAULT_ALLOWED_OPERATION_TYPES if allowed is None else allowed
        return found if found[1] in allowed else None

    async def _execute_direct(
        self,
        document: DocumentNode,
        variable_values: dict[str, Any] | None,
        context_value: Any,
        root_value: Any,
        operation_name: str | None,
        operation_extensions: dict[str, Any] | None,
    ) -> ExecutionResult:
        """What Strawberry's ``execute`` does for a document its extensions have nothing more to
        do with: the schema's extensions only parse (from the cache) and validate (cached, and
        ``_lane`` found no error), and count the operation (``observe``); none resolves fields
        or adds to results, and errors are formatted by the view. Without the per-request
        extension objects and hooks a small query costs about a fifth less (bench/auth.py)."""
        try:
            result = execute(
                self._schema,
                document,
                root_value=root_value,
                context_value=context_value,
                variable_values=variable_values,
                operation_name=operation_name,
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # as Strawberry
                executor_class=self.execution_context_class,
                operation_extensions=operation_extensions,
            )
            if isawaitable(result):
                result = await result
        except Exception as exc:  # as Strawberry: an error of the whole operation, in the answer
            error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            return ExecutionResult(data=None, errors=[error])
        return ExecutionResult(data=result.data, errors=result.errors)

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


def _name_missing() -> GraphQLError:
    return GraphQLError(
        "Must provide operation name if query contains multiple operations.",
        extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
    )


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
    # The extensions above only parse and validate (nothing resolves fields or adds to results),
    # so a cached valid document may run directly; custom directives would need Strawberry's way.
    schema.direct = documents is not None and not schema.directives
    schema.validation_rules = (*specified_rules, *rules)
    return schema


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
