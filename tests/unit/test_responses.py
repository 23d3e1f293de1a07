"""Every instant an answer holds is written in one text form, wherever it sits in the answer's
type; an answer whose type cannot hold one is written without the walk that rewrites them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Literal

import msgspec
import pytest

from services.api import responses, schemas
from services.api.responses import ApiResponse, may_hold_instants

AT = dt.datetime(2026, 3, 5, 9, 12, 24, tzinfo=dt.UTC)  # msgspec alone: "…24Z"
TEXT = "2026-03-05T09:12:24.000Z"


class Plain(msgspec.Struct):
    name: str
    count: int
    day: dt.date
    kind: Literal["a", "b"]
    tags: dict[str, list[int]]
    maybe: str | None = None


class Direct(msgspec.Struct):
    at: dt.datetime


class Optional(msgspec.Struct):
    at: dt.datetime | None


class Listed(msgspec.Struct):
    ats: list[dt.datetime]


class Keyed(msgspec.Struct):
    ats: dict[str, dt.datetime]


class Tupled(msgspec.Struct):
    pair: tuple[str, dt.datetime]


class Nested(msgspec.Struct):
    rows: list[Optional]


class Loose(msgspec.Struct):
    value: Any


class Tree(msgspec.Struct):
    children: list[Tree]
    at: dt.datetime | None = None


@dataclasses.dataclass
class Record:
    at: dt.datetime


class Leaf(msgspec.Struct):
    name: str
    children: list[Leaf]


def rendered(content: Any) -> Any:
    return json.loads(ApiResponse(content).render(content, "application/json"))


@pytest.mark.parametrize(
    ("content", "path"),
    [
        (Direct(AT), ["at"]),
        (Optional(AT), ["at"]),
        (Listed([AT]), ["ats", 0]),
        (Keyed({"x": AT}), ["ats", "x"]),
        (Tupled(("x", AT)), ["pair", 1]),
        (Nested([Optional(None), Optional(AT)]), ["rows", 1, "at"]),
        (Loose({"deep": [AT]}), ["value", "deep", 0]),
        (Tree([Tree([], AT)]), ["children", 0, "at"]),
        (Record(AT), ["at"]),
        ({"at": AT}, ["at"]),
        ([AT], [0]),
    ],
)
def test_an_instant_anywhere_in_an_answer_is_written_to_the_millisecond(
    content: Any, path: list[Any]
) -> None:
    assert may_hold_instants(type(content))
    value = rendered(content)
    for step in path:
        value = value[step]
    assert value == TEXT


def test_an_answer_that_cannot_hold_an_instant_is_not_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def walked(value: Any) -> Any:
        raise AssertionError("walked an answer without instants")

    monkeypatch.setattr(responses, "instants_as_text", walked)
    plain = Plain("x", 1, dt.date(2026, 3, 5), "a", {"k": [1, 2]})
    assert rendered(plain) == {
        "name": "x",
        "count": 1,
        "day": "2026-03-05",
        "kind": "a",
        "tags": {"k": [1, 2]},
        "maybe": None,
    }
    assert rendered(Leaf("x", [Leaf("y", [])])) == {
        "name": "x",
        "children": [{"name": "y", "children": []}],
    }
    assert rendered(schemas.Overview(items=[], next_cursor=None)) == {
        "items": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize("cls", [schemas.Overview, schemas.Company, schemas.Queues])
def test_the_answers_without_instants_are_known_to_hold_none(cls: type) -> None:
    assert not may_hold_instants(cls)


@pytest.mark.parametrize(
    "cls",
    [schemas.BookkeepingTab, schemas.PayrollTab, schemas.VatTab, schemas.History, schemas.Notes],
)
def test_the_answers_with_instants_are_known_to_hold_them(cls: type) -> None:
    assert may_hold_instants(cls)
