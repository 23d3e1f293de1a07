"""Year-end closing (SPEC §5.4): one row per fiscal year that has ended.

A fiscal year appears once its last day has passed, with status `new`; some but not all steps
of the closing done in the client's system make it `incomplete`, all steps `done`. The
consultant cannot set these statuses. A row shows the statutory deadlines that follow from the
fiscal year (DEADLINES.md §6.5), whether the client asked for help with K10 (`AB` only), and a
link to the closing function in the client's system.

Which years show (our rule, as for VAT): every fiscal year that has ended and whose income tax
return is due on or after the first day of the tracking start month.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Final

import msgspec

from consumers import months
from consumers.company_facts import last_tracked_day, tracking_start
from consumers.deadlines import annual_report_due, income_tax_return_due, k10_due
from consumers.fiscal_years import (
    FiscalYear,
    ReportedFiscalYear,
    merged,
    with_reported,
    year_of,
    years_between,
)
from consumers.rulebook import Cause, HistoryEntry, Rulebook, Stamp, company_key, later
from consumers.stockholm import end_of_day, today
from consumers.tab import (
    TAB_INDEXES,
    TAB_MESSAGES,
    Tab,
    follow_company,
    listed,
    opened,
    summarized,
)
from contracts.clock import ClockTick
from contracts.closing import ClosingK10HelpChanged, ClosingProgressChanged
from contracts.commands import SetEngagement
from contracts.company import CompanyDetailsChanged, CompanyDisconnected

DOMAIN = "closing"

# Where a consultant opens the closing of one fiscal year in the client's accounting system.
DEFAULT_CLOSING_URL: Final = (
    "https://accounting.example/companies/{company_id}/closing/{fiscal_year_end}"
)

ClosingMessage = (
    CompanyDetailsChanged
    | CompanyDisconnected
    | SetEngagement
    | ClosingProgressChanged
    | ClosingK10HelpChanged
    | ClockTick
)


class ProgressFact(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    at: dt.datetime
    steps_completed: int
    steps_total: int


class K10Fact(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    at: dt.datetime
    requested: bool


class YearFacts(msgspec.Struct, kw_only=True):
    progress: list[ProgressFact] = msgspec.field(default_factory=list)
    k10: list[K10Fact] = msgspec.field(default_factory=list)


class Deadlines(msgspec.Struct, kw_only=True):
    annual_report: dt.date | None
    income_tax_return: dt.date
    k10: dt.date | None


class Row(msgspec.Struct, kw_only=True):
    period: str
    fiscal_year_start: dt.date
    fiscal_year_end: dt.date
    status: str
    steps_completed: int
    steps_total: int | None
    k10_help_requested: bool | None
    closing_url: str
    deadlines: Deadlines


class Header(msgspec.Struct, kw_only=True):
    legal_form: str | None = None
    fiscal_year_end: dt.date | None = None


class ClosingTab(Tab, kw_only=True):
    facts: dict[str, YearFacts] = msgspec.field(default_factory=dict)  # by fiscal year end
    # Fiscal years named by closing events: they place rows, but do not move tracking's start.
    closing_years: list[ReportedFiscalYear] = msgspec.field(default_factory=list)
    # Worked out from the facts by `evaluate`.
    header: Header = msgspec.field(default_factory=Header)
    periods: list[Row] = msgspec.field(default_factory=list)


Apply = Callable[[ClosingTab | None, ClosingMessage, dt.datetime], ClosingTab]


def make_apply(closing_url: str = DEFAULT_CLOSING_URL) -> Apply:
    """The rulebook's apply, with the link template of the deployment's accounting system."""

    def apply(tab: ClosingTab | None, message: ClosingMessage, now: dt.datetime) -> ClosingTab:
        tab = follow_company(opened(tab, message, ClosingTab), message)
        now = later(tab.now, now)
        match message:
            case ClosingProgressChanged():
                tab = _with_progress(tab, message)
            case ClosingK10HelpChanged():
                fact = K10Fact(
                    id=message.id, at=message.occurred_at, requested=message.data.requested
                )
                tab = _with_year_facts(tab, message.data.fiscal_year_end, k10=fact)
        return evaluate(tab, now, closing_url)

    return apply


def _with_progress(tab: ClosingTab, message: ClosingProgressChanged) -> ClosingTab:
    data = message.data
    # The event names the fiscal year's bounds: a fact about the fiscal year as well.
    year = FiscalYear(data.fiscal_year_start, data.fiscal_year_end)
    stamp = Stamp(message.occurred_at, message.id)
    closing_years = with_reported(tab.closing_years, year, stamp)
    fact = ProgressFact(
        id=message.id,
        at=message.occurred_at,
        steps_completed=data.steps_completed,
        steps_total=data.steps_total,
    )
    tab = msgspec.structs.replace(tab, closing_years=closing_years)
    return _with_year_facts(tab, data.fiscal_year_end, progress=fact)


def _with_year_facts(
    tab: ClosingTab,
    fiscal_year_end: dt.date,
    progress: ProgressFact | None = None,
    k10: K10Fact | None = None,
) -> ClosingTab:
    key = fiscal_year_end.isoformat()
    current = tab.facts.get(key, YearFacts())
    if progress and any(f.id == progress.id for f in current.progress):
        return tab
    if k10 and any(f.id == k10.id for f in current.k10):
        return tab
    updated = YearFacts(
        progress=sorted(
            [*current.progress, *([progress] if progress else [])], key=lambda f: (f.at, f.id)
        ),
        k10=sorted([*current.k10, *([k10] if k10 else [])], key=lambda f: (f.at, f.id)),
    )
    return msgspec.structs.replace(tab, facts={**tab.facts, key: updated})


def _all_years(tab: ClosingTab) -> list[ReportedFiscalYear]:
    return merged(tab.company.fiscal_years, tab.closing_years)


def shown_years(tab: ClosingTab, now: dt.datetime) -> list[FiscalYear]:
    company = tab.company
    details = company.details
    start_month = tracking_start(company)
    if details is None or start_month is None:
        return []
    tracking_day = months.first_day(start_month)
    last_day = last_tracked_day(company, now)
    earliest = months.first_day(months.shift(start_month, -36))
    return [
        year
        for year in years_between(_all_years(tab), earliest, last_day)
        if end_of_day(year.end) <= now
        and today(end_of_day(year.end)) <= last_day
        and income_tax_return_due(year.end, details.legal_form) >= tracking_day
    ]


def evaluate(
    tab: ClosingTab, now: dt.datetime, closing_url: str = DEFAULT_CLOSING_URL
) -> ClosingTab:
    details = tab.company.details
    rows: list[Row] = []
    history: list[HistoryEntry] = []
    for year in shown_years(tab, now):
        assert details is not None
        facts = tab.facts.get(year.end.isoformat(), YearFacts())
        row, entries = _year(tab.company_id, details.legal_form, year, facts, closing_url)
        rows.append(row)
        history.extend(entries)
    current = year_of(_all_years(tab), last_tracked_day(tab.company, now))
    header = Header(
        legal_form=details.legal_form if details else None,
        fiscal_year_end=current.end if current else None,
    )
    # Time alone changes the tab when the current fiscal year ends.
    due_at = end_of_day(current.end) if current else None
    return summarized(tab, now, rows, history, due_at, header=header)


def _status(fact: ProgressFact | None) -> str:
    if fact is None or fact.steps_completed == 0:
        return "new"
    return "done" if fact.steps_completed >= fact.steps_total else "incomplete"


def _year(
    company_id: str, legal_form: str, year: FiscalYear, facts: YearFacts, closing_url: str
) -> tuple[Row, list[HistoryEntry]]:
    label = f"{year.start.isoformat()}/{year.end.isoformat()}"
    shown = "new"
    history: list[HistoryEntry] = []
    for fact in facts.progress:
        status = _status(fact)
        if status != shown:
            history.append(
                HistoryEntry(DOMAIN, label, shown, status, fact.at, Cause("event", fact.id))
            )
            shown = status
    latest = facts.progress[-1] if facts.progress else None
    requested = facts.k10[-1].requested if facts.k10 else False
    row = Row(
        period=label,
        fiscal_year_start=year.start,
        fiscal_year_end=year.end,
        status=shown,
        steps_completed=latest.steps_completed if latest else 0,
        steps_total=latest.steps_total if latest else None,
        k10_help_requested=requested if legal_form == "AB" else None,
        closing_url=closing_url.format(company_id=company_id, fiscal_year_end=year.end.isoformat()),
        deadlines=Deadlines(
            annual_report=annual_report_due(year.end, legal_form),
            income_tax_return=income_tax_return_due(year.end, legal_form),
            k10=k10_due(year.end, legal_form, requested),
        ),
    )
    return row, history


def rulebook(closing_url: str = DEFAULT_CLOSING_URL) -> Rulebook[ClosingTab]:
    return Rulebook(
        collection="closing",
        state_type=ClosingTab,
        handles=TAB_MESSAGES | {"closing.progress_changed", "closing.k10_help_changed"},
        key=company_key,
        apply=make_apply(closing_url),
        follows_clock=True,
        indexes=TAB_INDEXES,
        listed=listed,
    )


RULEBOOK: Final = rulebook()
