"""Consultants' actions, sent by the API to the consumer that owns the aggregate.

A command is a message like an event: it has an id (the API's request id, so a retried request
is applied once) and ``occurred_at`` (when the consultant acted), which orders it against the
client's own facts.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from contracts.envelope import CompanyMessage
from contracts.fields import Identifier, Period
from contracts.status import ConsultantStatus


class PeriodStatus(msgspec.Struct, kw_only=True):
    period: Period
    status: ConsultantStatus
    user_id: Identifier
    deadline: dt.date | None = None

    def __post_init__(self) -> None:
        if self.deadline is not None and self.status != "waiting":
            raise ValueError("a new deadline can only be given with status 'waiting'")


class SetBookkeepingPeriodStatus(CompanyMessage, tag="bookkeeping.set_period_status", kw_only=True):
    """A consultant sets the status of a bookkeeping period (SPEC §5.1 rule 3)."""

    data: PeriodStatus


class PayrollPeriodStatus(msgspec.Struct, kw_only=True):
    period: Period
    status: ConsultantStatus
    user_id: Identifier


class SetPayrollPeriodStatus(CompanyMessage, tag="payroll.set_period_status", kw_only=True):
    """A consultant sets the status of a payroll period (SPEC §5.2)."""

    data: PayrollPeriodStatus


class Engagement(msgspec.Struct, kw_only=True):
    start_month: Period
    responsible_user_id: Identifier
    user_id: Identifier  # the consultant who set it


class SetEngagement(CompanyMessage, tag="company.set_engagement", kw_only=True):
    """The engagement's start month and responsible consultant, set together (SPEC §4).

    Owned by the directory; every tab consumer also takes it, since tracking starts at the
    engagement's start month.
    """

    data: Engagement


class CompanyUser(msgspec.Struct, kw_only=True):
    user_id: Identifier  # the agency user to add, as the API found them by e-mail
    email: str
    added_by: Identifier


class AddCompanyUser(CompanyMessage, tag="company.add_user", kw_only=True):
    """A consultant adds an agency user (or themself, "Add me") to a company (SPEC §4)."""

    data: CompanyUser


NoteKind = Literal["comment", "todo"]
NoteText = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class NewNote(msgspec.Struct, kw_only=True):
    note_id: Identifier
    kind: NoteKind
    text: NoteText
    status: ConsultantStatus | None = None
    author_user_id: Identifier

    def __post_init__(self) -> None:
        check_note(self.kind, self.text, self.status)


def check_note(kind: str, text: str, status: str | None) -> None:
    """A note has text; a to-do has a status, a comment none (SPEC §5.5)."""
    if not text.strip():
        raise ValueError("text must not be blank")
    if kind == "todo" and status is None:
        raise ValueError("a to-do needs a status")
    if kind == "comment" and status is not None:
        raise ValueError("a comment has no status")


class AddNote(CompanyMessage, tag="notes.add", kw_only=True):
    """A comment or a to-do on a company (SPEC §5.5)."""

    data: NewNote


class NoteStatus(msgspec.Struct, kw_only=True):
    note_id: Identifier
    status: ConsultantStatus
    user_id: Identifier


class SetNoteStatus(CompanyMessage, tag="notes.set_status", kw_only=True):
    """A to-do moves on."""

    data: NoteStatus
