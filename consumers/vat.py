"""VAT (SPEC §5.3): the periods of the company's VAT frequency and the client's VAT report.

Statuses come only from the client's report; the consultant cannot set them. In order:
reported → `done`; all three steps done → `sent`; the return's due date has passed → `late`;
one or two steps done → `in_progress`; the period has not ended → `waiting`; else `new`.

Which periods show (our rules): every period that has begun and whose return is due on or after
the first day of the tracking start month. Periods follow the company's current frequency; a
period the client has reported on (any step or the reported mark) stays as it was reported even
when the frequency changes, and a period of the new frequency that overlaps it is not shown.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import msgspec

from consumers import months
from consumers.company_facts import CompanyFacts, last_tracked_day, tracking_start
from consumers.deadlines import vat_return_due
from consumers.fiscal_years import year_of, years_between
from consumers.rulebook import Cause, HistoryEntry, Rulebook, company_key, later
from consumers.stockholm import end_of_day, next_month_start
from consumers.tab import (
    TAB_INDEXES,
    TAB_MESSAGES,
    Tab,
    follow_company,
    history_by_period,
    listed,
    opened,
    reopened_for,
    summarized,
)
from contracts.bookkeeping import BookkeepingEntryCreated
from contracts.clock import ClockTick
from contracts.commands import SetEngagement
from contracts.company import CompanyDetails, CompanyDetailsChanged, CompanyDisconnected
from contracts.vat import VatReportReportedChanged, VatReportStepChanged

DOMAIN = "vat"
STEPS = 3

VatMessage = (
    CompanyDetailsChanged
    | CompanyDisconnected
    | SetEngagement
    | BookkeepingEntryCreated
    | VatReportStepChanged
    | VatReportReportedChanged
    | ClockTick
)


class ReportFact(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One change to a period's report: a step marked (un)done, or the report (un)marked."""

    id: str
    at: dt.datetime
    step: int | None = None  # None: the reported mark
    value: bool


class PeriodFacts(msgspec.Struct, kw_only=True):
    period_start: dt.date
    period_end: dt.date
    facts: list[ReportFact] = msgspec.field(default_factory=list)


class Row(msgspec.Struct, kw_only=True):
    period: str
    period_start: dt.date
    period_end: dt.date
    status: str
    steps_completed: int
    reported: bool
    deadline: dt.date


class Header(msgspec.Struct, kw_only=True):
    last_bookkeeping_at: dt.datetime | None = None
    vat_frequency: str | None = None
    next_fiscal_year_end: dt.date | None = None


class VatTab(Tab, kw_only=True):
    PACKS_YEARS: ClassVar[bool] = True

    facts: dict[str, PeriodFacts] = msgspec.field(default_factory=dict)
    # Worked out from the facts by `evaluate`.
    header: Header = msgspec.field(default_factory=Header)
    periods: list[Row] = msgspec.field(default_factory=list)

    # A period that runs into the next year stays unpacked: which periods of the next year show
    # depends on it (a reported period hides the generated ones it overlaps).
    @staticmethod
    def settled_row(row: Row) -> bool:
        return row.status in _SETTLED and row.period_end.year == row.period_start.year

    @staticmethod
    def settled_facts(facts: PeriodFacts, now: dt.datetime) -> bool:
        return facts.period_end.year == facts.period_start.year and all(
            fact.at <= now for fact in facts.facts
        )


def apply(tab: VatTab | None, message: VatMessage, now: dt.datetime) -> VatTab:
    previous = tab
    tab = follow_company(opened(tab, message, VatTab), message)
    if isinstance(message, VatReportStepChanged | VatReportReportedChanged):
        span = range(message.data.period_start.year, message.data.period_end.year + 1)
        tab = reopened_for(previous, tab, [str(year) for year in span])
    else:
        tab = reopened_for(previous, tab)
    now = later(tab.now, now)
    match message:
        case BookkeepingEntryCreated():
            last = tab.header.last_bookkeeping_at
            if last is None or message.occurred_at > last:
                header = msgspec.structs.replace(
                    tab.header, last_bookkeeping_at=message.occurred_at
                )
                tab = msgspec.structs.replace(tab, header=header)
        case VatReportStepChanged():
            step = message.data
            fact = ReportFact(
                id=message.id, at=message.occurred_at, step=step.step, value=step.completed
            )
            tab = _with_fact(tab, step.period_start, step.period_end, fact)
        case VatReportReportedChanged():
            mark = message.data
            fact = ReportFact(id=message.id, at=message.occurred_at, value=mark.reported)
            tab = _with_fact(tab, mark.period_start, mark.period_end, fact)
    return evaluate(tab, now, previous)


def _key(start: dt.date, end: dt.date) -> str:
    return f"{start.isoformat()}/{end.isoformat()}"


def _with_fact(tab: VatTab, start: dt.date, end: dt.date, fact: ReportFact) -> VatTab:
    key = _key(start, end)
    current = tab.facts.get(key, PeriodFacts(period_start=start, period_end=end))
    if any(f.id == fact.id for f in current.facts):
        return tab
    facts = sorted([*current.facts, fact], key=lambda f: (f.at, f.id))
    updated = msgspec.structs.replace(current, facts=facts)
    return msgspec.structs.replace(tab, facts={**tab.facts, key: updated})


def period_label(start: dt.date, end: dt.date) -> str:
    """`YYYY-MM` for a month, `YYYY-Qn` for a quarter, else `start/end`."""
    if start.day == 1 and end == months.last_day(months.month_of(start)):
        return months.month_of(start)
    if (
        start.day == 1
        and start.month % 3 == 1
        and end == months.last_day(months.shift(months.month_of(start), 2))
    ):
        return f"{start.year}-Q{start.month // 3 + 1}"
    return _key(start, end)


def _frequency_of(start: dt.date, end: dt.date) -> str:
    label = period_label(start, end)
    if len(label) == 7 and label[4] == "-" and label[5] != "Q":
        return "monthly"
    if "-Q" in label:
        return "quarterly"
    return "yearly"


def _due(details: CompanyDetails, start: dt.date, end: dt.date) -> dt.date:
    return vat_return_due(
        period_start=start,
        period_end=end,
        frequency=_frequency_of(start, end),
        legal_form=details.legal_form,
        large_vat_payer=details.large_vat_payer,
        eu_trade=details.eu_trade,
    )


Span = tuple[dt.date, dt.date]


def _overlap(a: Span, b: Span) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _generated(company: CompanyFacts, first: dt.date, last: dt.date) -> list[Span]:
    """Periods of the current frequency with a day in ``[first, last]``."""
    details = company.details
    if details is None or details.vat_frequency == "none":
        return []
    if details.vat_frequency == "yearly":
        return [(y.start, y.end) for y in years_between(company.fiscal_years, first, last)]
    step = 1 if details.vat_frequency == "monthly" else 3
    month = months.month_of(first)
    month = months.shift(month, -((int(month[5:7]) - 1) % step))  # align quarters
    found = []
    while months.first_day(month) <= last:
        end_month = months.shift(month, step - 1)
        found.append((months.first_day(month), months.last_day(end_month)))
        month = months.shift(month, step)
    return found


def shown_periods(tab: VatTab, now: dt.datetime) -> list[Span]:
    """The periods the tab shows, oldest first (see the module's rules)."""
    details = tab.company.details
    start_month = tracking_start(tab.company)
    if details is None or start_month is None:
        return []
    tracking_day = months.first_day(start_month)
    last_day = last_tracked_day(tab.company, now)

    def wanted(start: dt.date, end: dt.date) -> bool:
        return start <= last_day and _due(details, start, end) >= tracking_day

    reported = [(p.period_start, p.period_end) for p in tab.facts.values()]
    # A return is due at most some 8 months after its period ends: look back far enough.
    earliest = months.first_day(months.shift(start_month, -24))
    generated = [
        span
        for span in _generated(tab.company, earliest, last_day)
        if not any(_overlap(span, other) for other in reported)
    ]
    return sorted(p for p in {*reported, *generated} if wanted(*p))


def evaluate(tab: VatTab, now: dt.datetime, previous: VatTab | None = None) -> VatTab:
    """Rows, header, counts and history of ``tab`` at ``now``; ``previous``, the tab as last
    evaluated, lets an unchanged period keep its row and history (as in bookkeeping)."""
    details = tab.company.details
    rows: list[Row] = []
    history: list[HistoryEntry] = []
    kept = _unchanged_periods(tab, now, previous)
    for start, end in shown_periods(tab, now):
        assert details is not None
        if tab.archive and str(start.year) in tab.archive:
            continue  # packed: settled, and shown from the archive
        if (start, end) in kept:
            row, entries = kept[(start, end)]
        else:
            facts = tab.facts.get(_key(start, end))
            row, entries = _period(
                start, end, facts.facts if facts else [], _due(details, start, end), now
            )
        rows.append(row)
        history.extend(entries)
    today_year = year_of(tab.company.fiscal_years, last_tracked_day(tab.company, now))
    header = msgspec.structs.replace(
        tab.header,
        vat_frequency=details.vat_frequency if details else None,
        next_fiscal_year_end=today_year.end if today_year else None,
    )
    due_at = None
    if details:
        due_at = _next_change(rows, today_year.end if today_year else None, now)
    return summarized(tab, now, rows, history, due_at, header=header)


def _unchanged_periods(
    tab: VatTab, now: dt.datetime, previous: VatTab | None
) -> dict[Span, tuple[Row, list[HistoryEntry]]]:
    """The rows and history of ``previous`` that come out the same at ``now``: the company and
    the period's facts are as they were, no fact lies after the previous evaluation, and
    neither of the two moments time acts at (the period ends, the return falls due) has come
    since."""
    if previous is None or previous.now is None or previous.company != tab.company:
        return {}
    before = previous.now
    entries = history_by_period(previous)
    kept = {}
    for row in previous.periods:
        key = _key(row.period_start, row.period_end)
        facts = tab.facts.get(key)
        if facts != previous.facts.get(key) or any(
            f.at > before for f in (facts.facts if facts else [])
        ):
            continue
        moments = (end_of_day(row.period_end), end_of_day(row.deadline))
        if any(before < moment <= now for moment in moments):
            continue
        kept[(row.period_start, row.period_end)] = (row, entries.get(row.period, []))
    return kept


# Statuses that time no longer changes.
_SETTLED = frozenset({"done", "sent", "late"})


def _next_change(rows: list[Row], year_end: dt.date | None, now: dt.datetime) -> dt.datetime:
    """When time alone next changes what the tab shows: a period ends (`waiting` → `new`), a
    return falls due (→ `late`), a month or a fiscal year begins (a new period, the header's
    next fiscal year end). Days left are worked out when read."""
    moments = [next_month_start(now)]
    if year_end is not None:
        moments.append(end_of_day(year_end))
    for row in rows:
        if row.status not in _SETTLED:
            moments += [end_of_day(row.period_end), end_of_day(row.deadline)]
    return min(m for m in moments if m > now)


def _status(
    steps: dict[int, bool], reported: bool, end: dt.date, due: dt.date, at: dt.datetime
) -> str:
    completed = sum(steps.values())
    if reported:
        return "done"
    if completed == STEPS:
        return "sent"
    if at >= end_of_day(due):
        return "late"
    if completed:
        return "in_progress"
    return "waiting" if at < end_of_day(end) else "new"


def _period(
    start: dt.date, end: dt.date, facts: list[ReportFact], due: dt.date, now: dt.datetime
) -> tuple[Row, list[HistoryEntry]]:
    """Replays the report's facts and the two moments time acts (the period ends, the return
    falls due) in the order they happened."""
    label = period_label(start, end)
    steps = {n: False for n in range(1, STEPS + 1)}
    reported = False
    shown = "waiting"
    history: list[HistoryEntry] = []
    moments: list[tuple[dt.datetime, str, ReportFact | None]] = [(f.at, f.id, f) for f in facts]
    moments += [(t, "", None) for t in (end_of_day(end), end_of_day(due)) if t <= now]
    for at, _, fact in sorted(moments, key=lambda m: (m[0], m[1])):
        if fact is None:
            cause = Cause("time")
        else:
            if fact.step is None:
                reported = fact.value
            else:
                steps[fact.step] = fact.value
            cause = Cause("event", fact.id)
        status = _status(steps, reported, end, due, at)
        if status != shown:
            history.append(HistoryEntry(DOMAIN, label, shown, status, at, cause))
            shown = status
    row = Row(
        period=label,
        period_start=start,
        period_end=end,
        status=_status(steps, reported, end, due, now),
        steps_completed=sum(steps.values()),
        reported=reported,
        deadline=due,
    )
    return row, history


RULEBOOK: Rulebook[VatTab] = Rulebook(
    collection="vat",
    state_type=VatTab,
    handles=TAB_MESSAGES
    | {"bookkeeping.entry_created", "vat.report_step_changed", "vat.report_reported_changed"},
    key=company_key,
    apply=apply,
    follows_clock=True,
    indexes=TAB_INDEXES,
    listed=listed,
)
