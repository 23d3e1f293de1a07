"""What the API takes and answers: msgspec types with the contract's field names (SPEC §9).

Request bodies refuse unknown fields, so nothing a caller invents reaches a query.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.commands import NoteKind, NoteText, check_note
from contracts.fields import Identifier, Period
from contracts.status import ConsultantStatus

Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Domain = Literal["bookkeeping", "payroll", "vat", "closing"]
DOMAINS: tuple[Domain, ...] = ("bookkeeping", "payroll", "vat", "closing")


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class BookkeepingStatusIn(Body):
    status: ConsultantStatus
    deadline: dt.date | None = None

    def __post_init__(self) -> None:
        if self.deadline is not None and self.status != "waiting":
            raise ValueError("a new deadline can only be given with status 'waiting'")


class PayrollStatusIn(Body):
    status: ConsultantStatus


class AddUserIn(Body):
    email: Email


class EngagementIn(Body):
    start_month: Period
    responsible_user_id: Identifier


class NoteIn(Body):
    kind: NoteKind
    text: NoteText
    status: ConsultantStatus | None = None

    def __post_init__(self) -> None:
        check_note(self.kind, self.text, self.status)


class NoteStatusIn(Body):
    status: ConsultantStatus


# ------------------------------------------------------------------ answers
class Label(msgspec.Struct):
    sv: str
    en: str


class BookkeepingHeader(msgspec.Struct):
    last_upload_at: dt.datetime | None
    client_todo_count: int
    vat_frequency: str | None
    fiscal_year_end: dt.date | None


class BookkeepingRow(msgspec.Struct):
    period: str
    status: str
    status_label: Label
    deadline: dt.date
    days_left: int
    updated_by_company_at: dt.datetime | None
    status_set_by: str | None
    status_set_at: dt.datetime | None


class BookkeepingTab(msgspec.Struct):
    header: BookkeepingHeader
    periods: list[BookkeepingRow]


class PayrollHeader(msgspec.Struct):
    latest_completed_month: str | None
    employees: int | None
    employer_declaration_due: dt.date | None


class PayrollRow(msgspec.Struct):
    period: str
    status: str
    status_label: Label
    updated_by_company_at: dt.datetime | None
    status_set_by: str | None
    status_set_at: dt.datetime | None


class PayrollTab(msgspec.Struct):
    header: PayrollHeader
    periods: list[PayrollRow]


class VatHeader(msgspec.Struct):
    last_bookkeeping_at: dt.datetime | None
    vat_frequency: str | None
    next_fiscal_year_end: dt.date | None


class VatRow(msgspec.Struct):
    period: str
    period_start: dt.date
    period_end: dt.date
    status: str
    status_label: Label
    steps_completed: int
    reported: bool
    deadline: dt.date
    days_left: int


class VatTab(msgspec.Struct):
    header: VatHeader
    periods: list[VatRow]


class ClosingHeader(msgspec.Struct):
    legal_form: str | None
    fiscal_year_end: dt.date | None


class ClosingDeadlines(msgspec.Struct):
    annual_report: dt.date | None
    income_tax_return: dt.date
    k10: dt.date | None


class ClosingRow(msgspec.Struct):
    period: str
    fiscal_year_start: dt.date
    fiscal_year_end: dt.date
    status: str
    status_label: Label
    steps_completed: int
    steps_total: int | None
    k10_help_requested: bool | None
    closing_url: str
    deadlines: ClosingDeadlines


class ClosingTab(msgspec.Struct):
    header: ClosingHeader
    periods: list[ClosingRow]


class CompanyUserOut(msgspec.Struct):
    user_id: str
    email: str | None
    name: str | None


class EngagementOut(msgspec.Struct):
    start_month: str | None
    responsible_user_id: str | None


class Company(msgspec.Struct):
    company_id: str
    name: str | None
    org_number: str | None
    legal_form: str | None
    accounting_method: str | None
    vat_frequency: str | None
    fiscal_year_start: dt.date | None
    fiscal_year_end: dt.date | None
    connected: bool
    users: list[CompanyUserOut]
    engagement: EngagementOut


class DomainSummary(msgspec.Struct):
    latest_period: str | None
    latest_status: str | None
    counts: dict[str, int]


class OverviewItem(msgspec.Struct):
    company_id: str
    name: str | None
    org_number: str | None
    responsible_user_id: str | None
    domains: dict[str, DomainSummary]


class Overview(msgspec.Struct):
    items: list[OverviewItem]
    next_cursor: str | None


class NoteOut(msgspec.Struct):
    note_id: str
    kind: str
    text: str
    status: str | None
    author_user_id: str
    created_at: dt.datetime
    updated_at: dt.datetime


class Notes(msgspec.Struct):
    items: list[NoteOut]


class Cause(msgspec.Struct):
    kind: str
    id: str | None


class HistoryItem(msgspec.Struct, rename={"from_": "from"}):
    domain: str
    period: str
    from_: str
    to: str
    at: dt.datetime
    cause: Cause


class History(msgspec.Struct):
    items: list[HistoryItem]
    next_cursor: str | None


class CommandOutcome(msgspec.Struct):
    command_id: str
    # failed: the command ended in its consumer's dead-letter queue (the reason says why; an
    # operator can replay it)
    status: Literal["pending", "applied", "rejected", "failed"]
    reason: str | None = None
    location: str | None = None


class QueueState(msgspec.Struct):
    consumer: str
    queue: str
    ready: int
    dead_queue: str
    dead: int
    dead_by_reason: dict[str, int]


class Queues(msgspec.Struct):
    items: list[QueueState]


class Replayed(msgspec.Struct):
    consumer: str
    replayed: int
