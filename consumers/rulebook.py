"""What every rulebook shares: the shape of a rulebook, and the few value types all tabs use.

A rulebook owns one kind of aggregate (a company's bookkeeping tab, an agency user, ...). It is a
pure function from (current state, message, now) to new state: no I/O, no clock. ``now`` is the
time the runtime vouches for (a clock tick's time, or the event's own time, never later than the
wall clock); a state never goes back in time, so applying messages in any order ends in the
same state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec


class Rejected(Exception):
    """A command the owner of the aggregate refuses: it changes nothing and is answered 4xx."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stamp(msgspec.Struct, frozen=True, order=True):
    """When a fact happened, with the event id to order facts of the same instant."""

    at: dt.datetime
    id: str


class Cause(msgspec.Struct, frozen=True):
    kind: Literal["event", "user", "time"]
    id: str | None = None


class HistoryEntry(msgspec.Struct, frozen=True, rename={"from_": "from"}):
    """One status change of one period (SPEC §5.6)."""

    domain: str
    period: str
    from_: str
    to: str
    at: dt.datetime
    cause: Cause


State = TypeVar("State", bound=msgspec.Struct)
Ref = tuple[str, str]  # (collection, key) of an aggregate


@dataclass(frozen=True)
class Rulebook(Generic[State]):
    """One aggregate kind: where it is stored, how a message finds it, how a message changes it.

    ``due_at`` in a stored state is the next instant at which the passage of time alone changes
    it; the runtime hands a clock tick to exactly those states that are due.
    """

    collection: str
    state_type: type[State]
    handles: frozenset[str]
    key: Callable[[Any], str]
    apply: Callable[[State | None, Any, dt.datetime], State]
    follows_clock: bool = False
    # Indexes the readers need, as MongoDB key lists; `due_at` is always indexed.
    indexes: tuple[tuple[tuple[str, int], ...], ...] = ()
    # A command may need to be checked against other aggregates of the same consumer (is this
    # e-mail an active user of the agency?): `requires` names them as (collection, key), the
    # runtime loads them, and `validate` raises `Rejected` or returns. Reads only: the
    # aggregate's new state is still `apply`'s alone.
    requires: Callable[[Any], Sequence[Ref]] | None = None
    validate: Callable[[Any, Mapping[Ref, Any]], None] | None = None
    # What the overview shows of an aggregate (consumers/listing.py), for the kinds it lists:
    # the runtime keeps it in the owner's listing shards. The state then has `listed_version`.
    listed: Callable[[State], tuple[Any, ...]] | None = None


def later(current: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """The evaluation time of a state: it only moves forward."""
    return now if current is None or now > current else current


def company_key(message: Any) -> str:
    return f"{message.agency_id}/{message.company_id}"
