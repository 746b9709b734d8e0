"""Each distinct query text parsed and measured once; big documents off the event loop.

A ``DocumentCache`` belongs to one schema (its limits) and keeps, per query text (an LRU of
``PARSE_CACHE_SIZE`` texts, like Strawberry's ``ParserCache``), what checking it found: the
parsed document, the refusal, or that it does not parse. ``Schema.execute`` / ``stream`` call
``admit`` before Strawberry's pipeline starts and answer a refusal themselves (an error raised in
a Strawberry hook would escape ``stream`` untyped); ``CheckedParserCache`` then hands Strawberry
that same document object. So parsing is once per text, and what is keyed by the document stays
warm: Strawberry's ``ValidationCache`` (still in the extension list) and the live fan-out, which
shares an execution between subscribers of the same operation object (``app.live.execution``).

Work that can take more than a few milliseconds runs on one worker thread, not on the event loop:
parsing a text longer than ``HEAVY_CHARS`` (the limits bound it to tens of milliseconds) and the
first validation of such a document or of one with more than ``HEAVY_TOKENS`` tokens or a
complexity above ``HEAVY_COMPLEXITY``, which ``admit`` puts in the very cache
``ValidationCache`` then reads (same function, same key). The
thread shares the GIL, but the interpreter hands it back to the event loop every few
milliseconds, so other requests keep being answered; with one thread, big documents never take
more than about one core between them.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import DocumentNode, OperationDefinitionNode, get_operation_ast
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.types.graphql import OperationType

from app.graphql.limits import Accepted, DocumentLimits, Refusal

# Below these, parsing or validating takes a few milliseconds at most (bench/graphql_limits.py,
# bench/RESULTS.md). The standard introspection query (1.6 KB) is heavy the first time only.
HEAVY_CHARS = 1024
HEAVY_TOKENS = 100
HEAVY_COMPLEXITY = 300
PARSE_CACHE_SIZE = 128  # distinct query texts, as Strawberry's ParserCache
LANES_PER_DOCUMENT = 16  # operation names remembered per document (a request names any)

T = TypeVar("T")


@dataclass(slots=True)
class Checked:
    document: DocumentNode | None  # None: refused, or it does not parse
    refusal: Refusal | None
    heavy: bool  # validated off the event loop the first time
    validated: bool = False  # a heavy document whose validation is in the validation cache
    # operation name asked -> the type and name of the operation it runs once validated without
    # errors, or None (invalid, or no such operation): the schema's direct path (``Schema.execute``)
    lanes: dict[str | None, tuple[OperationType, str | None] | None] = field(default_factory=dict)


class DocumentCache:
    def __init__(self, limits: DocumentLimits, maxsize: int = PARSE_CACHE_SIZE) -> None:
        self.limits = limits
        self._entries: OrderedDict[str, Checked] = OrderedDict()  # only touched on the event loop
        self._maxsize = maxsize
        self._executor: ThreadPoolExecutor | None = None
        # the function (and LRU) ValidationCache itself uses, shared by every instance
        self._validate = ValidationCache().cached_validate_document

    def lookup(self, query: str) -> Checked | None:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
        return entry

    async def admit(self, query: str, schema: Any, rules: tuple[Any, ...]) -> Refusal | None:
        """The refusal of ``query``, or None once it may go on: parsed (or left for Strawberry to
        report as a syntax error) and, when heavy, validated into the validation cache under the
        key Strawberry's ``ValidationCache`` will look up (``rules`` as the request will have them)."""
        entry = await self.check(query)
        if entry.heavy and not entry.validated and entry.document is not None:
            await self._off_loop(self._validate, schema, entry.document, rules)
            entry.validated = True
        return entry.refusal

    def lane(
        self, query: str, schema: Any, rules: tuple[Any, ...], operation_name: str | None
    ) -> tuple[DocumentNode, OperationType, str | None] | None:
        """The parsed document of ``query`` with the type and name of the operation it runs,
        when the document is cached, valid (``rules`` as the request will have them) and has
        that operation; None leaves the request to Strawberry's way, which reports what is wrong."""
        entry = self._entries.get(query)
        if entry is None or entry.document is None:
            return None
        try:
            found = entry.lanes[operation_name]
        except KeyError:
            found = None
            if not self._validate(schema, entry.document, rules):
                node = get_operation_ast(entry.document, operation_name)
                if node is not None:
                    found = (OperationType(node.operation.value), node.name.value if node.name else None)
            if len(entry.lanes) < LANES_PER_DOCUMENT:
                entry.lanes[operation_name] = found
        return (entry.document, *found) if found is not None else None

    def names_missing(self, query: str, operation_name: str | None) -> bool:
        """Whether ``query`` has several operations and the request names none (graphql-core
        3.3 would run the first one; the GraphQL spec says to refuse)."""
        if operation_name is not None:
            return False
        entry = self._entries.get(query)
        if entry is None or entry.document is None:
            return False
        operations = [d for d in entry.document.definitions if isinstance(d, OperationDefinitionNode)]
        return len(operations) > 1

    async def check(self, query: str) -> Checked:
        refusal = self.limits.too_large(query)
        if refusal is not None:
            return Checked(None, refusal, heavy=False)  # not kept: the text may be megabytes
        entry = self.lookup(query)
        if entry is None:
            long = len(query) > HEAVY_CHARS
            parse = self.limits.parse
            entry = self._keep(query, await self._off_loop(parse, query) if long else parse(query), long)
        return entry

    def check_now(self, query: str) -> Checked:
        """``check`` on the calling thread, for a schema entered without ``execute`` / ``stream``."""
        refusal = self.limits.too_large(query)
        if refusal is not None:
            return Checked(None, refusal, heavy=False)
        entry = self.lookup(query)
        return entry if entry is not None else self._keep(query, self.limits.parse(query), False)

    def _keep(self, query: str, result: Accepted | Refusal | None, long: bool) -> Checked:
        if isinstance(result, Accepted):
            heavy = long or result.tokens > HEAVY_TOKENS or result.complexity > HEAVY_COMPLEXITY
            entry = Checked(result.document, None, heavy)
        else:
            entry = Checked(None, result, long)
        self._entries[query] = entry
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)
        return entry

    async def _off_loop(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphql-documents")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def parser_cache(self) -> Any:
        """A factory for the schema's extension list, in place of ``ParserCache``: one extension
        per request, one cache per schema."""
        return functools.partial(CheckedParserCache, self)


class CheckedParserCache(SchemaExtension):
    """``ParserCache`` with the limits: the document is the one the request was checked against."""

    def __init__(self, cache: DocumentCache) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is None:
            entry = self.cache.lookup(context.query) or self.cache.check_now(context.query)
            if entry.refusal is not None:  # reached only when the schema was entered another way
                raise entry.refusal.error()
            if entry.document is not None:  # else Strawberry parses it and reports the syntax error
                context.graphql_document = entry.document
        yield
