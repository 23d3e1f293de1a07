"""Bookkeeping (SPEC §5.1): the client's monthly periods and the consultant's statuses.

The tab keeps facts, not statuses: every client submission and every consultant status, by
period, each with when it happened. The rows, counts and history are worked out again from the
facts and ``now`` whenever anything changes. So the result does not depend on the order the facts
arrived in (rule 4: the latest fact by ``occurred_at`` wins), a duplicate changes nothing, and
the passage of time (rule 1: `waiting` turns `late` once the deadline day has ended) needs no
stored timer.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

import msgspec

from consumers.archive import year_of
from consumers.company_facts import tracked_months
from consumers.deadlines import bookkeeping_submission_deadline
from consumers.rulebook import Cause, HistoryEntry, Rulebook, company_key, later
from consumers.stockholm import end_of_day, next_month_start
from consumers.tab import (
    TAB_INDEXES,
    TAB_MESSAGES,
    Tab,
    check_tracked,
    follow_company,
    history_by_period,
    listed,
    opened,
    reopened_for,
    summarized,
)
from contracts.bookkeeping import BookkeepingDocumentUploaded, BookkeepingPeriodSubmitted
from contracts.clock import ClockTick
from contracts.commands import SetBookkeepingPeriodStatus, SetEngagement
from contracts.company import CompanyDetailsChanged, CompanyDisconnected
from contracts.status import CLIENT_TODO

DOMAIN = "bookkeeping"

BookkeepingMessage = (
    CompanyDetailsChanged
    | CompanyDisconnected
    | BookkeepingDocumentUploaded
    | BookkeepingPeriodSubmitted
    | SetBookkeepingPeriodStatus
    | SetEngagement
    | ClockTick
)


class PeriodFact(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A client submission (``status`` None) or a consultant's status, for one period."""

    id: str
    at: dt.datetime
    status: str | None = None
    user_id: str | None = None
    deadline: dt.date | None = None


class Row(msgspec.Struct, kw_only=True):
    period: str
    status: str
    deadline: dt.date
    updated_by_company_at: dt.datetime | None
    status_set_by: str | None
    status_set_at: dt.datetime | None


class Header(msgspec.Struct, kw_only=True):
    last_upload_at: dt.datetime | None = None
    client_todo_count: int = 0
    vat_frequency: str | None = None
    fiscal_year_end: dt.date | None = None


class BookkeepingTab(Tab, kw_only=True):
    PACKS_YEARS: ClassVar[bool] = True

    facts: dict[str, list[PeriodFact]] = msgspec.field(default_factory=dict)
    # Worked out from the facts by `evaluate`: what the API reads.
    header: Header = msgspec.field(default_factory=Header)
    periods: list[Row] = msgspec.field(default_factory=list)
    client_todo: list[str] = msgspec.field(default_factory=list)

    @staticmethod
    def settled_row(row: Row) -> bool:
        # `waiting` turns `late` with time, and both are on the client's to-do list.
        return row.status not in CLIENT_TODO

    @staticmethod
    def settled_facts(facts: list[PeriodFact], now: dt.datetime) -> bool:
        return all(fact.at <= now for fact in facts)


def apply(
    tab: BookkeepingTab | None, message: BookkeepingMessage, now: dt.datetime
) -> BookkeepingTab:
    previous = tab
    tab = follow_company(opened(tab, message, BookkeepingTab), message)
    if isinstance(message, BookkeepingPeriodSubmitted | SetBookkeepingPeriodStatus):
        tab = reopened_for(previous, tab, [year_of(message.data.period)])
    else:
        tab = reopened_for(previous, tab)
    now = later(tab.now, now)
    match message:
        case BookkeepingDocumentUploaded():
            last = tab.header.last_upload_at
            if last is None or message.occurred_at > last:
                header = msgspec.structs.replace(tab.header, last_upload_at=message.occurred_at)
                tab = msgspec.structs.replace(tab, header=header)
        case BookkeepingPeriodSubmitted():
            fact = PeriodFact(id=message.id, at=message.occurred_at)
            tab = _with_fact(tab, message.data.period, fact)
        case SetBookkeepingPeriodStatus():
            tab = _set_status(tab, message, now)
    return evaluate(tab, now, previous)


def _with_fact(tab: BookkeepingTab, period: str, fact: PeriodFact) -> BookkeepingTab:
    existing = tab.facts.get(period, [])
    if any(f.id == fact.id for f in existing):
        return tab
    facts = dict(tab.facts)
    facts[period] = sorted([*existing, fact], key=lambda f: (f.at, f.id))
    return msgspec.structs.replace(tab, facts=facts)


def _set_status(
    tab: BookkeepingTab, command: SetBookkeepingPeriodStatus, now: dt.datetime
) -> BookkeepingTab:
    period = command.data.period
    if any(f.id == command.id for f in tab.facts.get(period, [])):
        return tab  # a redelivered command was applied already
    check_tracked(period, tracked_months(tab.company, now), DOMAIN)
    fact = PeriodFact(
        id=command.id,
        at=command.occurred_at,
        status=command.data.status,
        user_id=command.data.user_id,
        deadline=command.data.deadline,
    )
    return _with_fact(tab, period, fact)


def evaluate(
    tab: BookkeepingTab, now: dt.datetime, previous: BookkeepingTab | None = None
) -> BookkeepingTab:
    """Rows, header, counts and history of ``tab`` as they stand at ``now``.

    ``previous``, the tab as last evaluated, lets a period whose inputs have not changed keep
    its row and history instead of replaying its facts again: so a message costs the same
    however many periods a company has behind it.
    """
    details = tab.company.details
    submission_day = details.submission_day if details else None
    rows: list[Row] = []
    history: list[HistoryEntry] = []
    kept = _unchanged_periods(tab, now, previous)
    for period in tracked_months(tab.company, now):
        if tab.archive and year_of(period) in tab.archive:
            continue  # packed: settled, and shown from the archive
        if period in kept:
            row, entries = kept[period]
        else:
            row, entries = _period(period, tab.facts.get(period, []), submission_day, now)
        rows.append(row)
        history.extend(entries)
    todo = [row.period for row in rows if row.status in CLIENT_TODO]
    header = msgspec.structs.replace(
        tab.header,
        client_todo_count=len(todo),
        vat_frequency=details.vat_frequency if details else None,
        fiscal_year_end=details.fiscal_year_end if details else None,
    )
    due_at = _next_change(rows, now) if details else None
    return summarized(tab, now, rows, history, due_at, header=header, client_todo=todo)


def _unchanged_periods(
    tab: BookkeepingTab, now: dt.datetime, previous: BookkeepingTab | None
) -> dict[str, tuple[Row, list[HistoryEntry]]]:
    """The rows and history of ``previous`` that would come out the same at ``now``: the
    company and the period's facts are as they were, no fact lies after the previous
    evaluation, and no `waiting` deadline has ended since (the only way time changes a row)."""
    if previous is None or previous.now is None:
        return {}
    # Most messages leave the company as it was: the very same object, not compared field by
    # field (and a period's facts likewise).
    if previous.company is not tab.company and previous.company != tab.company:
        return {}
    before = previous.now
    entries = history_by_period(previous)
    kept = {}
    for row in previous.periods:
        facts = tab.facts.get(row.period, [])
        earlier = previous.facts.get(row.period, [])
        if (facts is not earlier and facts != earlier) or any(f.at > before for f in facts):
            continue
        if row.status == "waiting" and end_of_day(row.deadline) <= now:
            continue
        kept[row.period] = (row, entries.get(row.period, []))
    return kept


def _next_change(rows: list[Row], now: dt.datetime) -> dt.datetime:
    """When time alone next changes what the tab shows: a `waiting` period's deadline day ends
    (it turns `late`), or a month begins (a new period). Days left are worked out when read."""
    deadlines = [end_of_day(row.deadline) for row in rows if row.status == "waiting"]
    return min([next_month_start(now), *deadlines])


def _period(
    period: str, facts: list[PeriodFact], submission_day: int | None, now: dt.datetime
) -> tuple[Row, list[HistoryEntry]]:
    """Replays one period's facts in the order they happened, with the deadline between them."""
    status = "waiting"  # what the facts say, before time is taken into account
    deadline = bookkeeping_submission_deadline(period, submission_day)
    shown = "waiting"
    set_by: str | None = None
    set_at: dt.datetime | None = None
    by_company_at: dt.datetime | None = None
    history: list[HistoryEntry] = []

    def show(at: dt.datetime, cause: Cause) -> None:
        nonlocal shown
        now_shown = _shown(status, deadline, at)
        if now_shown != shown:
            history.append(HistoryEntry(DOMAIN, period, shown, now_shown, at, cause))
            shown = now_shown

    def pass_time(until: dt.datetime) -> None:
        ends = end_of_day(deadline)
        if shown == "waiting" and status == "waiting" and ends <= until:
            show(ends, Cause("time"))

    for fact in facts:
        pass_time(min(fact.at, now))
        if fact.status is None:
            status = "new"
            by_company_at = fact.at
            cause = Cause("event", fact.id)
        else:
            status = fact.status
            set_by, set_at = fact.user_id, fact.at
            if fact.deadline is not None:
                deadline = fact.deadline
            cause = Cause("user", fact.user_id)
        show(fact.at, cause)
    pass_time(now)

    row = Row(
        period=period,
        status=shown,
        deadline=deadline,
        updated_by_company_at=by_company_at,
        status_set_by=set_by,
        status_set_at=set_at,
    )
    return row, history


def _shown(status: str, deadline: dt.date, at: dt.datetime) -> Literal["late"] | str:
    """`waiting` means the deadline has not passed; once it has, the period shows `late`."""
    return "late" if status == "waiting" and at >= end_of_day(deadline) else status


RULEBOOK: Rulebook[BookkeepingTab] = Rulebook(
    collection="bookkeeping",
    state_type=BookkeepingTab,
    handles=TAB_MESSAGES
    | {
        "bookkeeping.document_uploaded",
        "bookkeeping.period_submitted",
        "bookkeeping.set_period_status",
    },
    key=company_key,
    apply=apply,
    follows_clock=True,
    indexes=TAB_INDEXES,
    listed=listed,
)
