"""Decoding a message body into a typed message, or saying precisely why it is invalid.

The reasons are what an operator reads in the dead-letter queue, so each failure gets a stable
code (for counting and alerting) and a sentence (for a person).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

from contracts.bookkeeping import (
    BookkeepingDocumentUploaded,
    BookkeepingEntryCreated,
    BookkeepingPeriodSubmitted,
)
from contracts.clock import ClockTick
from contracts.closing import ClosingK10HelpChanged, ClosingProgressChanged
from contracts.commands import (
    AddCompanyUser,
    AddNote,
    SetBookkeepingPeriodStatus,
    SetEngagement,
    SetNoteStatus,
    SetPayrollPeriodStatus,
)
from contracts.company import AgencyUserChanged, CompanyDetailsChanged, CompanyDisconnected
from contracts.envelope import Message
from contracts.fields import instants_as_text
from contracts.payroll import PayrollMonthCompleted
from contracts.vat import VatReportReportedChanged, VatReportStepChanged

MAX_BODY_BYTES: Final = 64 * 1024

# SPEC §7, in the order of its table.
INBOUND_EVENTS: Final[tuple[type[Message], ...]] = (
    CompanyDetailsChanged,
    CompanyDisconnected,
    AgencyUserChanged,
    BookkeepingDocumentUploaded,
    BookkeepingPeriodSubmitted,
    BookkeepingEntryCreated,
    PayrollMonthCompleted,
    VatReportStepChanged,
    VatReportReportedChanged,
    ClosingProgressChanged,
    ClosingK10HelpChanged,
)

COMMANDS: Final[tuple[type[Message], ...]] = (
    SetBookkeepingPeriodStatus,
    SetPayrollPeriodStatus,
    SetEngagement,
    AddCompanyUser,
    AddNote,
    SetNoteStatus,
)

INTERNAL: Final[tuple[type[Message], ...]] = (ClockTick,)

ALL_MESSAGES: Final = INBOUND_EVENTS + COMMANDS + INTERNAL


def type_name(message_type: type[Message]) -> str:
    return str(message_type.__struct_config__.tag)


# Every message type is at version 1 today. A new version is a new entry here and, where its
# shape changes, a new struct: old versions stay decodable while upstream migrates.
KNOWN_VERSIONS: Final[dict[str, frozenset[int]]] = {
    type_name(t): frozenset({1}) for t in ALL_MESSAGES
}


class InvalidMessage(Exception):
    """A body that can never be applied: retrying it would only fail the same way."""

    def __init__(self, code: str, reason: str, message_type: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.message_type = message_type


class _Head(msgspec.Struct):
    type: str
    version: int


_head_decoder: Final = msgspec.json.Decoder(_Head)
_decoders: Final = {type_name(t): msgspec.json.Decoder(t) for t in ALL_MESSAGES}
_encoder: Final = msgspec.json.Encoder()


def decode(body: bytes) -> Message:
    """The typed message in ``body``; raises ``InvalidMessage`` with the first thing wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidMessage("too_large", f"body is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidMessage(
            "not_utf8", f"body is not UTF-8: {error.reason} at byte {error.start}"
        ) from None
    try:
        head = _head_decoder.decode(body)
    except msgspec.ValidationError as error:  # a subclass of DecodeError: test it first
        raise InvalidMessage("invalid", f"envelope: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidMessage("not_json", f"body is not JSON: {error}") from None
    versions = KNOWN_VERSIONS.get(head.type)
    if versions is None:
        raise InvalidMessage("unknown_type", f"unknown type {head.type!r}", head.type)
    if head.version not in versions:
        raise InvalidMessage(
            "unknown_version",
            f"unknown version {head.version} of {head.type!r} "
            f"(known: {', '.join(map(str, sorted(versions)))})",
            head.type,
        )
    try:
        message: Message = _decoders[head.type].decode(body)
    except msgspec.ValidationError as error:
        raise InvalidMessage("invalid", f"{head.type}: {error}", head.type) from None
    return message


def encode(message: Message) -> bytes:
    """The JSON of a message the service sends, every instant in the one form of
    ``format_instant``."""
    builtins = msgspec.to_builtins(message, builtin_types=(dt.datetime,))
    return _encoder.encode(instants_as_text(builtins))
