"""Limits on a GraphQL document, measured before validation runs.

Validation is where a small document gets expensive: fragments that each spread the previous one
twice are 2^n spreads for a walker that follows them, thousands of chained fragments overflow the
recursive ones, and repeating one field n times costs n^2 comparisons in the field-merging rule.
So a document is measured first, linearly in its text or in its parsed form: each fragment is
measured once however often it is spread, the walks are iterative (any nesting of fragments is
safe, cycles are cut), and ``app.graphql.document_cache`` keeps the outcome with the parsed
document, so an accepted query text is measured once.

In order, each refusal a ``Refused`` error whose ``extensions`` carry ``code`` (naming the
limit) and ``limit`` (its value, from ``Settings``):

* ``QUERY_TOO_LARGE``: the text is longer than ``max_query_bytes`` (UTF-8), checked before the
  lexer runs (a 30 MB comment costs nothing).
* ``TOO_MANY_TOKENS``: more than ``max_query_tokens`` tokens, comments included; the parser stops
  at the limit.
* ``TOO_MANY_FRAGMENT_SPREADS``: more than ``max_fragment_spreads`` spreads once fragments are
  expanded (each as often as a walker would follow it), summed over every operation and fragment
  definition, since the validator walks each of them.
* ``QUERY_TOO_DEEP``: a field more than ``max_query_depth`` levels below its operation's root
  fields. Inside introspection (``__schema``, ``__type``) the room is that of the standard
  introspection query if it is larger (its type references nest ``ofType`` nine times).
* ``QUERY_TOO_COMPLEX``: complexity above ``max_query_complexity``: the fields once fragments are
  expanded, where k fields that merge (one response name at one place) count k^2 and k fragment
  spreads at one place add k^2, which is what the validator compares pairwise. Introspection
  fields count like any other. Complexity is never below the expanded field count, which is
  checked first, so the merging pass only ever walks a bounded document.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import GraphQLError, GraphQLSyntaxError, get_introspection_query, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.language.parser import Parser

from app.settings import Settings

# Counts stop growing here: a doubling chain of 5,000 fragments would otherwise make 5,000-bit ints.
_SATURATED = 1 << 62


class Refused(GraphQLError):
    """An error answered before validation; its ``extensions`` are final (the view keeps them)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str
    limit: int

    def error(self) -> Refused:
        # a new error per request: a cached refusal is shared by every request with that text
        return Refused(self.message, extensions={"code": self.code, "limit": self.limit})


@dataclass(frozen=True, slots=True)
class Accepted:
    document: DocumentNode
    tokens: int
    complexity: int


@dataclass(slots=True)
class _Shape:
    """One definition's own selections, its fragment spreads not followed. Depths count levels
    below the root fields; ``depth`` leaves out fields inside introspection, ``meta_depth`` not."""

    fields: int
    depth: int
    meta_depth: int
    spreads: list[tuple[str, int, bool]]  # (fragment, depth of the spread, inside introspection)


@dataclass(slots=True)
class _Expanded:
    fields: int
    spreads: int
    depth: int
    meta_depth: int


@dataclass(slots=True)
class Measure:
    spreads: int
    fields: int
    depth: int  # the deepest operation's, introspection left out
    meta_depth: int  # the deepest operation's, introspection included
    cyclic: bool  # a fragment spreads itself: validation refuses it, complexity is not merged
    fragments: dict[str, FragmentDefinitionNode]


def _shape(selection_set: SelectionSetNode) -> _Shape:
    fields, deepest, meta_deepest = 0, 0, 0
    spreads: list[tuple[str, int, bool]] = []
    stack: list[tuple[SelectionSetNode, int, bool]] = [(selection_set, 0, False)]
    while stack:
        current, depth, meta = stack.pop()
        for selection in current.selections:
            if isinstance(selection, FieldNode):
                fields += 1
                meta_deepest = max(meta_deepest, depth)
                if not meta:
                    deepest = max(deepest, depth)
                if selection.selection_set is not None:
                    inner = meta or selection.name.value.startswith("__")
                    stack.append((selection.selection_set, depth + 1, inner))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((selection.selection_set, depth, meta))
            elif isinstance(selection, FragmentSpreadNode):
                spreads.append((selection.name.value, depth, meta))
    return _Shape(fields, deepest, meta_deepest, spreads)


def _expand(shape: _Shape, done: dict[str, _Expanded]) -> _Expanded:
    fields, spreads = shape.fields, len(shape.spreads)
    depth, meta_depth = shape.depth, shape.meta_depth
    for name, at, meta in shape.spreads:
        target = done.get(name)
        if target is None:  # an unknown fragment (validation reports it) or a cycle cut here
            continue
        fields += target.fields
        spreads += target.spreads
        meta_depth = max(meta_depth, at + target.meta_depth)
        if not meta:
            depth = max(depth, at + target.depth)
    return _Expanded(min(fields, _SATURATED), min(spreads, _SATURATED), depth, meta_depth)


def _expand_fragments(shapes: dict[str, _Shape]) -> tuple[dict[str, _Expanded], bool]:
    """Every fragment expanded once, the ones it spreads first (an iterative depth-first walk)."""
    done: dict[str, _Expanded] = {}
    cyclic = False
    for root in shapes:
        if root in done:
            continue
        path = {root}
        stack: list[tuple[str, Iterator[tuple[str, int, bool]]]] = [(root, iter(shapes[root].spreads))]
        while stack:
            name, pending = stack[-1]
            for target, _, _ in pending:
                if target in done or target not in shapes:
                    continue
                if target in path:
                    cyclic = True
                    continue
                path.add(target)
                stack.append((target, iter(shapes[target].spreads)))
                break
            else:
                stack.pop()
                path.discard(name)
                done[name] = _expand(shapes[name], done)
    return done, cyclic


def measure(document: DocumentNode) -> Measure:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    expanded, cyclic = _expand_fragments({name: _shape(f.selection_set) for name, f in fragments.items()})
    spreads = sum(e.spreads for e in expanded.values())
    fields = sum(e.fields for e in expanded.values())
    depth = meta_depth = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operation = _expand(_shape(definition.selection_set), expanded)
            spreads += operation.spreads
            fields += operation.fields
            depth = max(depth, operation.depth)
            meta_depth = max(meta_depth, operation.meta_depth)
    return Measure(min(spreads, _SATURATED), min(fields, _SATURATED), depth, meta_depth, cyclic, fragments)


def merged_complexity(
    document: DocumentNode, fragments: dict[str, FragmentDefinitionNode], budget: int
) -> int:
    """Sum of k^2 over every place where k fields merge, plus k^2 for k fragment spreads at one
    place, fragments expanded; stops once above ``budget``.

    Only for acyclic documents whose expanded field and spread counts are bounded: each expanded
    field and spread is then visited once.
    """
    total = 0
    for definition in document.definitions:
        if not isinstance(definition, (OperationDefinitionNode, FragmentDefinitionNode)):
            continue
        places: list[list[SelectionSetNode]] = [[definition.selection_set]]
        while places:
            merged: dict[str, list[SelectionSetNode | None]] = {}
            pending, spreads = places.pop(), 0
            while pending:
                for selection in pending.pop().selections:
                    if isinstance(selection, FieldNode):
                        key = (selection.alias or selection.name).value
                        merged.setdefault(key, []).append(selection.selection_set)
                    elif isinstance(selection, InlineFragmentNode):
                        pending.append(selection.selection_set)
                    elif isinstance(selection, FragmentSpreadNode):
                        fragment = fragments.get(selection.name.value)
                        if fragment is not None:
                            spreads += 1
                            pending.append(fragment.selection_set)
            total += spreads * spreads
            for subsets in merged.values():
                total += len(subsets) ** 2
                if total > budget:
                    return total
                inner = [s for s in subsets if s is not None]
                if inner:
                    places.append(inner)
    return total


@functools.cache
def introspection_depth() -> int:
    """How deep the standard introspection query (every option on) nests below ``__schema``."""
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    return measure(parse(query)).meta_depth


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_bytes: int
    max_tokens: int
    max_spreads: int
    max_depth: int
    max_complexity: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentLimits:
        return cls(
            max_bytes=settings.max_query_bytes,
            max_tokens=settings.max_query_tokens,
            max_spreads=settings.max_fragment_spreads,
            max_depth=settings.max_query_depth,
            max_complexity=settings.max_query_complexity,
        )

    def too_large(self, query: str) -> Refusal | None:
        """Before anything reads the text: O(1) unless it is near the limit and not ASCII."""
        limit, length = self.max_bytes, len(query)
        if length <= limit and (query.isascii() or length * 4 <= limit):
            return None
        if length <= limit and len(query.encode("utf-8", "surrogatepass")) <= limit:
            return None
        return Refusal("QUERY_TOO_LARGE", f"The query document is larger than {limit} bytes.", limit)

    def parse(self, query: str) -> Accepted | Refusal | None:
        """The document within every limit; else the refusal, or None when it does not parse
        (Strawberry parses it again and reports the syntax error, stopping where this did)."""
        # max_tokens counts comments too (max_lexical_tokens would not), and the parser's
        # token_count tells its refusal from a syntax error without reading the message
        parser = Parser(query, max_tokens=self.max_tokens)
        try:
            document = parser.parse_document()
        except GraphQLSyntaxError:
            if parser.token_count > self.max_tokens:
                message = f"The query document has more than {self.max_tokens} tokens."
                return Refusal("TOO_MANY_TOKENS", message, self.max_tokens)
            return None
        except RecursionError:  # nested too deeply for the parser
            return None
        return self.judge(document, parser.token_count)

    def judge(self, document: DocumentNode, tokens: int) -> Accepted | Refusal:
        found = measure(document)
        if found.spreads > self.max_spreads:
            return Refusal(
                "TOO_MANY_FRAGMENT_SPREADS",
                f"The query spreads fragments {_count(found.spreads)} times once they are expanded;"
                f" at most {self.max_spreads} are allowed.",
                self.max_spreads,
            )
        depth, room, where = found.depth, self.max_depth, ""
        if depth <= room:  # then introspection, with the room the standard query needs
            depth, room, where = found.meta_depth, max(room, introspection_depth()), " in introspection"
        if depth > room:
            return Refusal(
                "QUERY_TOO_DEEP",
                f"The query nests fields {depth} levels below its root fields; at most {room}"
                f" are allowed{where}.",
                room,
            )
        complexity = found.fields
        if complexity <= self.max_complexity and not found.cyclic:
            complexity = merged_complexity(document, found.fragments, self.max_complexity)
        if complexity > self.max_complexity:
            return Refusal(
                "QUERY_TOO_COMPLEX",
                f"The query's complexity is {_count(complexity)} (its fields once fragments are"
                f" expanded, k merged fields counting k^2); at most {self.max_complexity} is allowed.",
                self.max_complexity,
            )
        return Accepted(document, tokens, complexity)


def _count(value: int) -> str:
    return f"more than {_SATURATED:,}" if value >= _SATURATED else f"{value:,}"
