"""SPEC §5.4: a row per ended fiscal year, statuses from the client's closing, its deadlines."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consumers import closing
from consumers.closing import ClosingTab, Row
from tests import factories as f
from tests.unit.tabs import replay

FY2025 = ("2025-01-01", "2025-12-31")
FY2026 = ("2026-01-01", "2026-12-31")


def tab(*messages: Any, now: str | None = None) -> ClosingTab:
    state = replay(closing.RULEBOOK, messages, now)
    assert isinstance(state, ClosingTab)
    return state


def only(state: ClosingTab) -> Row:
    (row,) = state.periods
    return row


def test_an_ended_year_shows_as_new_with_its_deadlines() -> None:
    row = only(tab(f.details(), now="2026-03-01T12:00"))
    assert (row.fiscal_year_start, row.fiscal_year_end) == (
        dt.date(2025, 1, 1),
        dt.date(2025, 12, 31),
    )
    assert (row.status, row.steps_completed, row.steps_total) == ("new", 0, None)
    assert row.deadlines.annual_report == dt.date(2026, 7, 31)
    assert row.deadlines.income_tax_return == dt.date(2026, 8, 3)
    assert row.deadlines.k10 is None
    assert row.k10_help_requested is False
    assert row.closing_url == ("https://accounting.example/companies/c-2002/closing/2025-12-31")


def test_a_year_appears_once_its_last_day_has_passed_in_stockholm() -> None:
    before = tab(f.details(), now="2026-12-31T22:59")
    assert [r.fiscal_year_end for r in before.periods] == [dt.date(2025, 12, 31)]
    after = tab(f.details(), now="2026-12-31T23:00")
    assert [r.fiscal_year_end for r in after.periods] == [
        dt.date(2025, 12, 31),
        dt.date(2026, 12, 31),
    ]
    assert before.due_at == f.at("2026-12-31T23:00")


def test_progress_makes_it_incomplete_then_done() -> None:
    partly = f.closing_progress(*FY2025, 2, 5, "2026-02-10T09:00")
    row = only(tab(f.details(), partly, now="2026-03-01T12:00"))
    assert (row.status, row.steps_completed, row.steps_total) == ("incomplete", 2, 5)
    fully = f.closing_progress(*FY2025, 5, 5, "2026-02-20T09:00")
    state = tab(f.details(), fully, partly, now="2026-03-01T12:00")
    assert only(state).status == "done"
    assert [(e.from_, e.to, e.cause.id) for e in state.history] == [
        ("new", "incomplete", partly.id),
        ("incomplete", "done", fully.id),
    ]


def test_k10_help_is_for_limited_companies() -> None:
    asked = f.k10_help(FY2025[1], "2026-02-11T09:00")
    row = only(tab(f.details(), asked, now="2026-03-01T12:00"))
    assert (row.k10_help_requested, row.deadlines.k10) == (True, dt.date(2026, 5, 4))
    withdrawn = f.k10_help(FY2025[1], "2026-02-12T09:00", requested=False)
    assert only(tab(f.details(), withdrawn, asked, now="2026-03-01T12:00")).deadlines.k10 is None
    sole_trader = only(tab(f.details(legal_form="EF"), asked, now="2026-03-01T12:00"))
    assert (sole_trader.k10_help_requested, sole_trader.deadlines.annual_report) == (None, None)
    assert sole_trader.deadlines.income_tax_return == dt.date(2026, 5, 4)


def test_only_years_whose_tax_return_is_due_after_tracking_starts() -> None:
    state = tab(f.details(), f.engagement("2026-09", "2026-09-01T09:00"), now="2026-10-01T12:00")
    assert state.periods == []  # FY2025's return was due 3 Aug 2026


def test_a_progress_event_tells_the_fiscal_year_too() -> None:
    broken_year = f.closing_progress("2025-07-01", "2025-12-31", 1, 4, "2026-02-01T09:00")
    state = tab(f.details(), broken_year, now="2026-03-01T12:00")
    # Before it, a year of twelve months is assumed, whose return was due on 15 January.
    assert [(r.fiscal_year_start, r.fiscal_year_end, r.status) for r in state.periods] == [
        (dt.date(2024, 7, 1), dt.date(2025, 6, 30), "new"),
        (dt.date(2025, 7, 1), dt.date(2025, 12, 31), "incomplete"),
    ]


def test_closing_url_comes_from_the_deployment() -> None:
    rulebook = closing.rulebook("https://erp.example/{company_id}/{fiscal_year_end}")
    state = replay(rulebook, [f.details()], "2026-03-01T12:00")
    assert state.periods[0].closing_url == "https://erp.example/c-2002/2025-12-31"
