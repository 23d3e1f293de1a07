"""What the service publishes on `backoffice.events` (SPEC §8), for dashboards and integrations.

Each message has a stable ``id``: the aggregate it comes from, the version of that aggregate's
write that recorded it, and its place in that write. A message published again (after a crash
between the write and the publish, say) has the same id, so a subscriber drops repeats by it.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, Final, Literal

import msgspec
import msgspec.inspect

from contracts.fields import Identifier, Instant, format_instant, normalize_instant

EVENTS_EXCHANGE: Final = "backoffice.events"
Domain = Literal["bookkeeping", "payroll", "vat", "closing"]


class Cause(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Why a status changed: an upstream event (its id), a consultant (the user id, and the
    command's id), or the passage of time (the clock tick's id, when a tick found it)."""

    kind: Literal["event", "user", "time"]
    id: str | None = None
    command_id: str | None = None


class Outbound(msgspec.Struct, tag_field="type", kw_only=True):
    """The envelope of SPEC §7, for what we send: ``occurred_at`` is when the service recorded
    it."""

    id: str
    version: int = 1
    occurred_at: Instant
    agency_id: Identifier
    company_id: Identifier

    def __post_init__(self) -> None:
        self.occurred_at = normalize_instant(self.occurred_at)

    @property
    def type(self) -> str:
        return str(type(self).__struct_config__.tag)

    @property
    def routing_key(self) -> str:
        return self.type


class StatusChanged(Outbound, tag="status.changed", kw_only=True, rename={"from_": "from"}):
    """A period's status in a tab changed: ``from`` → ``to`` at ``at``."""

    domain: Domain
    period: str
    from_: str
    to: str
    at: Instant
    cause: Cause

    def __post_init__(self) -> None:  # both here, not through super(): one per status change
        self.occurred_at = normalize_instant(self.occurred_at)
        self.at = normalize_instant(self.at)

    @property
    def routing_key(self) -> str:
        return f"status.{self.domain}.{self.to}"


class ClientActionRequired(Outbound, tag="client.action_required", kw_only=True):
    """A consultant sent a bookkeeping period back to the client (`waiting` or `late`): the
    client has something to do by ``deadline``."""

    period: str
    status: Literal["waiting", "late"]
    deadline: dt.date
    user_id: Identifier
    command_id: Identifier


OUTBOUND: Final[tuple[type[Outbound], ...]] = (StatusChanged, ClientActionRequired)
OutboundMessage = StatusChanged | ClientActionRequired


def encode_outbound(message: Outbound) -> bytes:
    """The JSON that subscribers receive: every instant in the one form the service writes.

    Instants sit only at the top level of an outbound message (``Cause`` has none), so only
    those fields are swapped for their text, in a shallow copy that msgspec then encodes as it
    is (it encodes by the values' own types): the relay encodes one message per status change, and
    converting the whole message to built-in types first cost several times the encoding."""
    wire = copy.copy(message)  # a copy, unlike replace, does not run __post_init__ again
    for name in _instant_fields(type(message)):
        if (value := getattr(message, name)) is not None:
            last = _last_formatted.get(name)
            if last is None or last[0] is not value:
                last = _last_formatted[name] = (value, format_instant(value))
            setattr(wire, name, last[1])
    return _encoder.encode(wire)


_encoder: Final = msgspec.json.Encoder()
# Each field's instant formatted last, kept (so that no other instant can take its place in
# memory): every message of a write, and of a batch of writes, has one ``occurred_at`` object.
_last_formatted: dict[str, tuple[dt.datetime, str]] = {}
_instants: dict[type[Outbound], tuple[str, ...]] = {}


def _instant_fields(kind: type[Outbound]) -> tuple[str, ...]:
    """The fields of ``kind`` that hold an instant, from its type: looked up once per type."""
    names = _instants.get(kind)
    if names is None:
        info: Any = msgspec.inspect.type_info(kind)
        names = tuple(
            f.name
            for f in info.fields
            if any(isinstance(t, msgspec.inspect.DateTimeType) for t in _alternatives(f.type))
        )
        _instants[kind] = names
    return names


def _alternatives(kind: msgspec.inspect.Type) -> tuple[msgspec.inspect.Type, ...]:
    """The types a field may hold, past annotations and unions (``Instant | None``)."""
    if isinstance(kind, msgspec.inspect.Metadata):
        return _alternatives(kind.type)
    if isinstance(kind, msgspec.inspect.UnionType):
        return tuple(t for member in kind.types for t in _alternatives(member))
    return (kind,)
