"""The plain-field executor (app/graphql/execution.py) answers exactly what graphql-core's own
execution answers, data and errors alike, and takes its one-step path only for plain objects.

Each query runs on the same Strawberry schema twice: with Strawberry's execution context and
with ``PlainFieldsExecutor``; the results must be equal."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from app.graphql.execution import PlainFieldsExecutor


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Box:
    top: float
    left: float


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    score: float
    count: int | None
    colour: Colour
    tags: list[str]
    box: Box | None
    when: datetime

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    async def later(self) -> str:
        return self.name + "!"


def item(i: int, **changes: Any) -> Item:
    fields: dict[str, Any] = {
        "id": strawberry.ID(f"i{i}"),
        "name": f"item {i}",
        "score": i / 4,
        "count": i if i % 2 else None,
        "colour": Colour.RED if i % 2 else Colour.BLUE,
        "tags": [f"t{i}", "x"],
        "box": Box(top=0.1 * i, left=0.5) if i % 3 else None,
        "when": datetime(2026, 1, 1, i, tzinfo=UTC),
    }
    return Item(**(fields | changes))


ITEMS: list[Item] = []


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS


class FieldsSeen(SchemaExtension):
    """A middleware (an extension with ``resolve``): it must see every field."""

    seen: list[str] = []

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        FieldsSeen.seen.append(info.field_name)
        return _next(root, info, *args, **kwargs)


class Counting(PlainFieldsExecutor):
    """Records the type of every field graphql-core resolved one by one."""

    slow: list[str] = []

    def execute_field(self, parent_type: Any, *args: Any) -> Any:
        Counting.slow.append(parent_type.name)
        return super().execute_field(parent_type, *args)


def schema(executor: Any = None, extensions: tuple[Any, ...] = ()) -> strawberry.Schema:
    return strawberry.Schema(query=Query, execution_context_class=executor, extensions=list(extensions))


async def both(query: str, items: list[Item], **variables: Any) -> tuple[Any, Any]:
    ITEMS[:] = items
    Counting.slow.clear()
    plain = await schema(Counting).execute(query, variable_values=variables)
    usual = await schema().execute(query, variable_values=variables)
    return plain, usual


def same(plain: Any, usual: Any) -> None:
    assert plain.data == usual.data
    assert [(e.message, e.path) for e in plain.errors or []] == [
        (e.message, e.path) for e in usual.errors or []
    ]


PLAIN = """{ items { id name score count colour tags when box { top left } __typename
  alias: name ... on Item { score } ...More } }
  fragment More on Item { box { left } }"""


async def test_plain_objects_complete_in_one_step_with_the_usual_result() -> None:
    plain, usual = await both(PLAIN, [item(i) for i in range(1, 8)])

    same(plain, usual)
    assert plain.errors is None and len(plain.data["items"]) == 7
    assert plain.data["items"][0]["colour"] == "RED" and plain.data["items"][0]["__typename"] == "Item"
    assert Counting.slow == ["Query"]  # every Item and Box went the plain way


@pytest.mark.parametrize(
    "bad",
    [
        {"name": None},  # null for a non-null field
        {"score": "not a number"},  # a value its scalar refuses
        {"colour": "green"},  # not an enum value
        {"tags": ["a", None]},  # null inside a list of non-null items
        {"tags": "ab"},  # a string is no list here
        {"box": Box(top=None, left=0.5)},  # type: ignore[arg-type]  # nested non-null null
        {"box": "not a box"},  # an object without the fields
        {"name": ValueError("boom")},  # an exception as a value: graphql-core raises it
    ],
)
async def test_a_value_the_plain_path_cannot_complete_is_reported_as_usual(bad: dict[str, Any]) -> None:
    plain, usual = await both(PLAIN, [item(1), item(2, **bad), item(4)])

    same(plain, usual)
    assert usual.errors
    assert "Item" in Counting.slow or "Box" in Counting.slow  # handed back to graphql-core


async def test_fields_with_resolvers_take_the_usual_path() -> None:
    plain, usual = await both("{ items { id shout later box { top } } }", [item(1), item(2)])

    same(plain, usual)
    assert plain.data["items"][1]["later"] == "item 2!"
    assert set(Counting.slow) == {"Query", "Item"}  # Box, plain, still in one step


async def test_directives_take_the_usual_path() -> None:
    query = "query($on: Boolean!) { items { id name @include(if: $on) score @skip(if: $on) } }"
    for on in (True, False):
        plain, usual = await both(query, [item(1), item(2)], on=on)

        same(plain, usual)
        assert set(plain.data["items"][0]) == ({"id", "name"} if on else {"id", "score"})


async def test_a_middleware_sees_every_field() -> None:
    ITEMS[:] = [item(1), item(2)]
    FieldsSeen.seen = []
    plain = await schema(PlainFieldsExecutor, (FieldsSeen,)).execute("{ items { id box { top } } }")
    plain_seen, FieldsSeen.seen = FieldsSeen.seen, []
    usual = await schema(None, (FieldsSeen,)).execute("{ items { id box { top } } }")

    same(plain, usual)
    assert plain_seen == FieldsSeen.seen and plain_seen.count("id") == 2
