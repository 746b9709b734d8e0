"""Plain-field execution: objects whose selected fields are all plain attributes are completed
without graphql-core's per-field machinery.

graphql-core resolves every field of every object through ``execute_field``: a ``ResolveInfo``
and a ``Path`` are built, Strawberry's basic-field wrapper reads the attribute, the result is
checked for awaitables and ``complete_value`` dispatches on its type. That is several
microseconds a field, and a page of 100 annotations with a box is ~900 fields: most of the
page's server time (bench/pages.py).

``PlainFieldsExecutor`` plans, once per request for each (type, field set) it meets, whether
every selected field is *plain*: a Strawberry field without resolver or field extensions, with
no arguments and no directives, whose type is a leaf (scalar or enum), a list of leaves, or a
non-abstract object type without ``is_type_of`` whose own selection is plain again
(``__typename`` is plain too). A plain object is then completed by reading each attribute and
coercing it with its type's own ``coerce_output_value``: the same values, the same order.

Invariants:
* The plan never decides an error. Any value it cannot complete plainly (null for a non-null
  field, a coercion that fails or yields null, anything that raises) makes it hand the whole
  object back to graphql-core's normal path, which reports the error exactly as before.
  Reading a plain attribute has no side effect, so doing it twice is harmless.
* A list of plain objects is completed in one step as well (``complete_list_value``).
* Fields with resolvers (DataLoaders, ``Connection.nodes``), arguments, directives
  (``@include``/``@skip`` that survive collection, ``@defer``, ``@stream``) and abstract types
  always take the normal path, as does everything while a middleware (an extension with
  ``resolve``) is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    is_abstract_type,
    is_leaf_type,
)
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

Complete = Callable[[Any], Any]  # a value to its result; raises when it cannot complete it plainly
Plan = tuple[tuple[str, Callable[[Any], Any], Complete], ...]  # (response name, getter, complete)


class _NotPlain(Exception):
    """A value the plan does not complete; graphql-core's normal path takes the object."""


def _leaf(coerce: Callable[[Any], Any], non_null: bool) -> Complete:
    def complete(value: Any) -> Any:
        if value is None:
            if non_null:
                raise _NotPlain
            return None
        if isinstance(value, Exception):  # graphql-core raises it as the field's error
            raise _NotPlain
        out = coerce(value)
        if out is None or out is Undefined:
            raise _NotPlain
        return out

    return complete


def _list(item: Complete, non_null: bool) -> Complete:
    def complete(value: Any) -> Any:
        if value is None:
            if non_null:
                raise _NotPlain
            return None
        if type(value) is not list and type(value) is not tuple:
            raise _NotPlain  # other iterables: graphql-core decides
        return [item(v) for v in value]

    return complete


def _object(plan: Plan, non_null: bool) -> Complete:
    def complete(value: Any) -> Any:
        if value is None:
            if non_null:
                raise _NotPlain
            return None
        if isinstance(value, Exception):
            raise _NotPlain
        return {name: done(get(value)) for name, get, done in plan}

    return complete


def _getter(field_def: Any) -> Callable[[Any], Any] | None:
    """How to read a Strawberry basic field from its object, or None when it is not one."""
    resolve = field_def.resolve
    if resolve is None or not getattr(resolve, "_is_default", False):
        return None
    definition = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if definition is not None and definition.default_resolver is getattr:
        return attrgetter(definition.python_name)
    return lambda source: resolve(source, None)  # Strawberry's own basic-field read


class PlainFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with plain objects completed in one step (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (type, id of a grouped field set) -> (the field set, kept alive so its id stays
        # unique, and its plan or None when it is not plain)
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[Any, Plan | None]] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Any,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        plan = self._plan(parent_type, grouped_field_set)
        if plan is not None:
            try:
                return {name: done(get(source_value)) for name, get, done in plan}
            except Exception:  # the normal path below reports it
                pass
        return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)

    def complete_list_value(
        self,
        return_type: GraphQLList[Any],
        field_details_list: Any,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        # A list of plain objects (a page's nodes) in one step too, without graphql-core's
        # per-item completion; anything else, or any item it cannot complete, goes the usual way.
        complete = (
            self._plain_items(return_type.of_type, field_details_list) if type(result) is list else None
        )
        if complete is not None:
            try:
                return [complete(item) for item in result]
            except Exception:  # the normal path below reports it
                pass
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _plain_items(self, item_type: Any, field_details_list: Any) -> Complete | None:
        inner = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if not isinstance(inner, GraphQLObjectType) or inner.is_type_of:
            return None
        if any(d.node.directives for d in field_details_list):  # @stream among them
            return None
        grouped, new_defer_usages, _ = self.collect_subfields(inner, field_details_list)
        plan = None if new_defer_usages else self._plan(inner, grouped)
        return None if plan is None else _object(plan, inner is not item_type)

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> Plan | None:
        key = (parent_type, id(grouped_field_set))
        cached = self._plans.get(key)
        if cached is None:
            cached = (grouped_field_set, self._build_plan(parent_type, grouped_field_set))
            self._plans[key] = cached
        return cached[1]

    def _build_plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> Plan | None:
        if self.middleware_manager is not None and self.middleware_manager._middleware_resolvers:
            return None
        plan: list[tuple[str, Callable[[Any], Any], Complete]] = []
        for response_name, field_details_list in grouped_field_set.items():
            if any(d.node.directives or d.node.arguments for d in field_details_list):
                return None
            name = field_details_list[0].node.name.value
            if name == "__typename":
                plan.append((response_name, _constant(parent_type.name), _identity))
                continue
            field_def = self.schema.get_field(parent_type, name)
            if field_def is None or field_def.args:
                return None
            getter = _getter(field_def)
            complete = self._complete(field_def.type, field_details_list) if getter else None
            if getter is None or complete is None:
                return None
            plan.append((response_name, getter, complete))
        return tuple(plan)

    def _complete(self, type_: GraphQLOutputType, field_details_list: Any) -> Complete | None:
        inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        non_null = inner is not type_
        if is_leaf_type(inner):
            return _leaf(inner.coerce_output_value, non_null)
        if isinstance(inner, GraphQLList):
            item = inner.of_type
            item_inner = item.of_type if isinstance(item, GraphQLNonNull) else item
            if not is_leaf_type(item_inner):
                return None
            return _list(_leaf(item_inner.coerce_output_value, item is not item_inner), non_null)
        if is_abstract_type(inner) or not isinstance(inner, GraphQLObjectType) or inner.is_type_of:
            return None
        grouped, new_defer_usages, _ = self.collect_subfields(inner, field_details_list)
        if new_defer_usages:
            return None
        plan = self._plan(inner, grouped)
        return None if plan is None else _object(plan, non_null)


def _identity(value: Any) -> Any:
    return value


def _constant(value: str) -> Callable[[Any], str]:
    return lambda _source: value
