"""Execute a shared event once per distinct operation, not once per subscriber.

graphql-core runs a subscription's selection set for every event of every subscriber. For an
event that reaches a thousand subscribers of the same operation (same document, same
variables), that is a thousand identical executions (PERFORMANCE.md: naive fan-out to 1,000
subscribers is 5-6x slower than a raw broadcast). Frames the hub shares (``SharedFrame``) carry
a small cache: the first subscriber executes, the others reuse its result.

Only frames whose fields do not depend on the caller may be shared: they are plain data built
by the live renderers, with no resolver reading ``info.context``.
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class SharedFrame:
    """Mixin for event types the hub sends to many subscribers."""

    def live_results(self) -> dict[Any, Any]:
        cache: dict[Any, Any] | None = self.__dict__.get("_live_results")
        if cache is None:
            cache = self.__dict__["_live_results"] = {}
        return cache


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        root = self.root_value
        if not isinstance(root, SharedFrame):
            return super().execute_operation(serially)
        cache = root.live_results()
        # The parsed operation is the same object for every subscriber of the same query text
        # (ParserCache); it is kept in the entry so its id cannot be reused meanwhile.
        key = (id(self.operation), repr(sorted(self.variable_values.coerced.items())))
        hit = cache.get(key)
        if hit is not None:
            return hit[1]
        result = super().execute_operation(serially)
        if self.is_awaitable(result):

            async def remember() -> Any:
                value = await result
                cache[key] = (self.operation, value)
                return value

            return remember()
        cache[key] = (self.operation, result)
        return result


def install(schema: Any) -> None:
    """Use the shared-event executor for every operation of ``schema`` (queries unaffected)."""
    schema.execution_context_class = SharedEventExecutor
