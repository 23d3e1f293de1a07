"""Constrained field types shared by every message family.

Constraints live in the types (msgspec ``Meta``) so that they are enforced at decode time and show
up in the exported JSON Schemas; what a schema cannot express (check digits, cross-field rules)
is checked in ``__post_init__`` of the struct that owns the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

Identifier = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="1 to 64 letters, digits, '-' or '_'",
    ),
]

Period = Annotated[
    str,
    Meta(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="a calendar month, YYYY-MM"),
]

Instant = Annotated[
    dt.datetime,
    Meta(tz=True, description="RFC 3339 date-time with an offset"),
]

OrgNumber = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{6}-?[0-9]{4}$",
        description="Swedish organisation number: 10 digits with a valid Luhn check digit, "
        "an optional '-' before the last four",
    ),
]

LegalForm = Literal["AB", "EF", "HB", "KB", "EK", "other"]
AccountingMethod = Literal["invoice", "cash"]
VatFrequency = Literal["monthly", "quarterly", "yearly", "none"]

SubmissionDay = Annotated[int, Meta(ge=1, le=28)]
NonNegative = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]
VatStep = Annotated[int, Meta(ge=1, le=3)]


def normalize_instant(value: dt.datetime) -> dt.datetime:
    """UTC with millisecond precision: what MongoDB stores, so state survives a round trip."""
    if value.tzinfo is dt.UTC and not value.microsecond % 1000:
        return value  # already so: every message and outbound event passes here
    utc = value.astimezone(dt.UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def format_instant(value: dt.datetime) -> str:
    """The one text form of an instant that the service sends: RFC 3339 in UTC, to the
    millisecond, with `Z` (msgspec alone writes `…24Z` or `…24.040000Z` by the value).

    Cut from msgspec's own text, which pads the year to four digits as RFC 3339 asks (strftime's
    %Y does not, for year 999): the relay formats two instants for every status change, and
    this takes a fifth of the time of ``isoformat``."""
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    text = _instant_encoder.encode(value)  # b'"…T08:00:00Z"' or b'"…T08:00:00.040000Z"'
    seconds = text[1:24] if len(text) > _WHOLE_SECONDS else text[1:20] + b".000"
    return seconds.decode() + "Z"


_instant_encoder: Final = msgspec.json.Encoder()
_WHOLE_SECONDS: Final = len(b'"2026-01-02T08:00:00Z"')


def instants_as_text(value: Any) -> Any:
    """``value`` (built-in types, as ``msgspec.to_builtins`` leaves them with datetimes kept)
    with every datetime written by ``format_instant``."""
    if isinstance(value, dt.datetime):
        return format_instant(value)
    if isinstance(value, dict):
        return {k: instants_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [instants_as_text(v) for v in value]
    return value


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def org_number_digits(org_number: str) -> str:
    return org_number.replace("-", "")


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = _days_in_month(year, month)
    return dt.date(year, month, min(day.day, last))


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day
