"""Payroll (SPEC §5.2): monthly periods whose statuses only the consultant sets.

A period starts `waiting` and never turns `late` by itself: `waiting` and `late` have no link to
the client's payroll product. The client's "month completed" shows in the row (when the company
last updated it) and in the header (latest month, employees, the employer declaration's last
day), but does not change the status (our reading of the guide).
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import msgspec

from consumers import months
from consumers.archive import opened_year, require, year_of
from consumers.company_facts import tracked_months
from consumers.deadlines import employer_declaration_due
from consumers.rulebook import Cause, HistoryEntry, Rulebook, company_key, later
from consumers.stockholm import end_of_day
from consumers.tab import (
    TAB_INDEXES,
    TAB_MESSAGES,
    Tab,
    check_tracked,
    follow_company,
    listed,
    opened,
    reopened_for,
    summarized,
)
from contracts.clock import ClockTick
from contracts.commands import SetEngagement, SetPayrollPeriodStatus
from contracts.company import CompanyDetailsChanged, CompanyDisconnected
from contracts.payroll import PayrollMonthCompleted

DOMAIN = "payroll"

PayrollMessage = (
    CompanyDetailsChanged
    | CompanyDisconnected
    | SetEngagement
    | PayrollMonthCompleted
    | SetPayrollPeriodStatus
    | ClockTick
)


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """The client marked a month's payroll done."""

    id: str
    at: dt.datetime
    employees: int
    payment_date: dt.date | None = None


class StatusSet(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    at: dt.datetime
    status: str
    user_id: str


class PeriodFacts(msgspec.Struct, kw_only=True):
    completions: list[Completion] = msgspec.field(default_factory=list)
    statuses: list[StatusSet] = msgspec.field(default_factory=list)


class Row(msgspec.Struct, kw_only=True):
    period: str
    status: str
    updated_by_company_at: dt.datetime | None
    status_set_by: str | None
    status_set_at: dt.datetime | None


class Header(msgspec.Struct, kw_only=True):
    latest_completed_month: str | None = None
    employees: int | None = None
    employer_declaration_due: dt.date | None = None


class PayrollTab(Tab, kw_only=True):
    PACKS_YEARS: ClassVar[bool] = True

    facts: dict[str, PeriodFacts] = msgspec.field(default_factory=dict)
    # Worked out from the facts by `evaluate`.
    header: Header = msgspec.field(default_factory=Header)
    periods: list[Row] = msgspec.field(default_factory=list)

    @staticmethod
    def settled_row(row: Row) -> bool:
        return True  # only a consultant changes a payroll status

    @staticmethod
    def settled_facts(facts: PeriodFacts, now: dt.datetime) -> bool:
        return all(f.at <= now for f in facts.completions) and all(
            f.at <= now for f in facts.statuses
        )


def _order(fact: Completion | StatusSet) -> tuple[dt.datetime, str]:
    return fact.at, fact.id


def apply(tab: PayrollTab | None, message: PayrollMessage, now: dt.datetime) -> PayrollTab:
    previous = tab
    tab = follow_company(opened(tab, message, PayrollTab), message)
    if isinstance(message, PayrollMonthCompleted | SetPayrollPeriodStatus):
        tab = reopened_for(previous, tab, [year_of(message.data.period)])
    else:
        tab = reopened_for(previous, tab)
    now = later(tab.now, now)
    match message:
        case PayrollMonthCompleted():
            data = message.data
            completion = Completion(
                id=message.id,
                at=message.occurred_at,
                employees=data.employees,
                payment_date=data.payment_date,
            )
            tab = _add_completion(tab, data.period, completion)
        case SetPayrollPeriodStatus():
            tab = _set_status(tab, message, now)
    return evaluate(tab, now)


def _add_completion(tab: PayrollTab, period: str, completion: Completion) -> PayrollTab:
    current = tab.facts.get(period, PeriodFacts())
    if any(f.id == completion.id for f in current.completions):
        return tab
    completions = sorted([*current.completions, completion], key=_order)
    updated = msgspec.structs.replace(current, completions=completions)
    return msgspec.structs.replace(tab, facts={**tab.facts, period: updated})


def _add_status(tab: PayrollTab, period: str, status: StatusSet) -> PayrollTab:
    current = tab.facts.get(period, PeriodFacts())
    statuses = sorted([*current.statuses, status], key=_order)
    updated = msgspec.structs.replace(current, statuses=statuses)
    return msgspec.structs.replace(tab, facts={**tab.facts, period: updated})


def _set_status(tab: PayrollTab, command: SetPayrollPeriodStatus, now: dt.datetime) -> PayrollTab:
    period = command.data.period
    existing = tab.facts.get(period, PeriodFacts())
    if any(f.id == command.id for f in existing.statuses):
        return tab  # a redelivered command was applied already
    check_tracked(period, tracked_months(tab.company, now), DOMAIN)
    status = StatusSet(
        id=command.id,
        at=command.occurred_at,
        status=command.data.status,
        user_id=command.data.user_id,
    )
    return _add_status(tab, period, status)


def evaluate(tab: PayrollTab, now: dt.datetime) -> PayrollTab:
    rows: list[Row] = []
    history: list[HistoryEntry] = []
    for period in tracked_months(tab.company, now):
        if tab.archive and year_of(period) in tab.archive:
            continue  # packed: settled, and shown from the archive
        facts = tab.facts.get(period, PeriodFacts())
        shown = "waiting"
        for fact in facts.statuses:
            if fact.status != shown:
                history.append(
                    HistoryEntry(
                        DOMAIN, period, shown, fact.status, fact.at, Cause("user", fact.user_id)
                    )
                )
                shown = fact.status
        last_set = facts.statuses[-1] if facts.statuses else None
        rows.append(
            Row(
                period=period,
                status=shown,
                updated_by_company_at=facts.completions[-1].at if facts.completions else None,
                status_set_by=last_set.user_id if last_set else None,
                status_set_at=last_set.at if last_set else None,
            )
        )
    # Time alone changes only which months are shown: the next one begins.
    due_at = end_of_day(months.last_day(rows[-1].period)) if rows else None
    return summarized(tab, now, rows, history, due_at, header=_header(tab))


def _header(tab: PayrollTab) -> Header:
    """The latest month the client marked done, as of its latest report for that month."""
    facts = tab.facts
    period = max((p for p, found in facts.items() if found.completions), default="")
    if not period and tab.archive:
        # Every completion lies in packed years, which no message changed since this header
        # was worked out (one that opens a year puts its facts back among these): it stands.
        return tab.header
    # The latest completed month may lie in a packed year later than the latest not packed
    # (an old year opened again): look there, newest first.
    later = sorted((y for y in tab.archive if y >= year_of(period)), reverse=True)
    require(tab.archive, later)
    for year in later:
        packed = opened_year(PayrollTab, tab.archive[year]).facts
        found = max((p for p, f in packed.items() if f.completions), default="")
        if found:
            facts, period = packed, found
            break
    if not period:
        return Header()
    latest = facts[period].completions[-1]
    pay_month = months.month_of(latest.payment_date) if latest.payment_date else period
    details = tab.company.details
    return Header(
        latest_completed_month=period,
        employees=latest.employees,
        employer_declaration_due=employer_declaration_due(
            pay_month, details.large_vat_payer if details else False
        ),
    )


RULEBOOK: Rulebook[PayrollTab] = Rulebook(
    collection="payroll",
    state_type=PayrollTab,
    handles=TAB_MESSAGES | {"payroll.month_completed", "payroll.set_period_status"},
    key=company_key,
    apply=apply,
    follows_clock=True,
    indexes=TAB_INDEXES,
    listed=listed,
)
