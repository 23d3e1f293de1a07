"""SPEC §5.3: VAT periods by frequency, statuses from the client's report and the due date."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consumers import vat
from consumers.archive import unpacked
from consumers.stockholm import days_left
from consumers.vat import Row, VatTab
from tests import factories as f
from tests.unit.tabs import replay

Q1 = ("2026-01-01", "2026-03-31")


def tab(*messages: Any, now: str | None = None) -> VatTab:
    state = replay(vat.RULEBOOK, messages, now)
    assert isinstance(state, VatTab)
    return state


def rows(state: VatTab) -> list[tuple[str, str]]:
    """Every row the tab shows, settled years packed or not."""
    return [(r.period, r.status) for r in unpacked(state).periods]


def row(state: VatTab, period: str) -> Row:
    return next(r for r in unpacked(state).periods if r.period == period)


def test_quarterly_periods_that_have_begun_and_are_due_after_tracking_starts() -> None:
    state = tab(f.details(), now="2026-05-01T12:00")
    assert rows(state) == [("2025-Q4", "late"), ("2026-Q1", "new"), ("2026-Q2", "waiting")]
    q1 = row(state, "2026-Q1")
    assert (q1.period_start, q1.period_end) == (dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    assert (q1.deadline, q1.steps_completed, q1.reported) == (dt.date(2026, 5, 12), 0, False)
    assert days_left(q1.deadline, f.at("2026-05-01T12:00")) == 11


def test_a_january_start_sees_the_returns_still_due() -> None:
    state = tab(f.details(vat_frequency="monthly"), now="2026-02-10T12:00")
    assert rows(state) == [
        ("2025-11", "late"),
        ("2025-12", "new"),
        ("2026-01", "new"),
        ("2026-02", "waiting"),
    ]
    assert row(state, "2025-12").deadline == dt.date(2026, 2, 12)


def test_steps_then_sent_then_done() -> None:
    base = [f.details(), f.vat_step(*Q1, 1, "2026-04-20T09:00")]
    assert row(tab(*base, now="2026-04-21T12:00"), "2026-Q1").status == "in_progress"
    steps = [*base, f.vat_step(*Q1, 2, "2026-04-21T09:00"), f.vat_step(*Q1, 3, "2026-04-22T09:00")]
    sent = row(tab(*steps, now="2026-04-23T12:00"), "2026-Q1")
    assert (sent.status, sent.steps_completed) == ("sent", 3)
    done = row(
        tab(*steps, f.vat_reported(*Q1, "2026-05-08T09:00"), now="2026-06-01T12:00"), "2026-Q1"
    )
    assert (done.status, done.reported) == ("done", True)


def test_reported_is_done_even_without_steps() -> None:
    state = tab(f.details(), f.vat_reported(*Q1, "2026-05-08T09:00"), now="2026-05-09T12:00")
    assert row(state, "2026-Q1").status == "done"


def test_late_once_the_due_date_has_passed_unless_sent() -> None:
    one_step = [f.details(), f.vat_step(*Q1, 1, "2026-04-20T09:00")]
    assert row(tab(*one_step, now="2026-05-12T21:59"), "2026-Q1").status == "in_progress"
    assert row(tab(*one_step, now="2026-05-12T22:00"), "2026-Q1").status == "late"
    all_steps = [
        *one_step,
        f.vat_step(*Q1, 2, "2026-04-20T10:00"),
        f.vat_step(*Q1, 3, "2026-04-20T11:00"),
    ]
    assert row(tab(*all_steps, now="2026-06-01T12:00"), "2026-Q1").status == "sent"


def test_a_step_marked_undone_counts_no_more() -> None:
    state = tab(
        f.details(),
        f.vat_step(*Q1, 1, "2026-04-20T09:00"),
        f.vat_step(*Q1, 1, "2026-04-21T09:00", completed=False),
        now="2026-04-22T12:00",
    )
    assert (row(state, "2026-Q1").status, row(state, "2026-Q1").steps_completed) == ("new", 0)


def test_the_latest_fact_of_a_step_wins_whatever_the_arrival() -> None:
    undone = f.vat_step(*Q1, 1, "2026-04-21T09:00", completed=False)
    done = f.vat_step(*Q1, 1, "2026-04-20T09:00")
    assert (
        row(tab(f.details(), undone, done, now="2026-04-22T12:00"), "2026-Q1").steps_completed == 0
    )


def test_history_has_the_time_entries_and_the_event_entries() -> None:
    step = f.vat_step(*Q1, 1, "2026-04-20T09:00")
    state = tab(f.details(), step, now="2026-05-13T12:00")
    q1 = [(e.from_, e.to, e.at, e.cause.kind) for e in state.history if e.period == "2026-Q1"]
    assert q1 == [
        ("waiting", "new", f.at("2026-03-31T22:00"), "time"),
        ("new", "in_progress", f.at("2026-04-20T09:00"), "event"),
        ("in_progress", "late", f.at("2026-05-12T22:00"), "time"),
    ]


def test_yearly_periods_are_fiscal_years_with_the_legal_forms_due_date() -> None:
    state = tab(f.details(vat_frequency="yearly"), now="2026-03-01T12:00")
    assert rows(state) == [("2025-01-01/2025-12-31", "new"), ("2026-01-01/2026-12-31", "waiting")]
    assert row(state, "2025-01-01/2025-12-31").deadline == dt.date(2026, 8, 17)
    hb = tab(f.details(vat_frequency="yearly", legal_form="HB"), now="2026-03-01T12:00")
    assert row(hb, "2025-01-01/2025-12-31").deadline == dt.date(2026, 2, 26)
    assert row(hb, "2025-01-01/2025-12-31").status == "late"


def test_no_vat_no_periods() -> None:
    assert tab(f.details(vat_frequency="none"), now="2026-05-01T12:00").periods == []


def test_a_reported_period_stays_when_the_frequency_changes() -> None:
    january = ("2026-01-01", "2026-01-31")
    state = tab(
        f.details(vat_frequency="monthly"),
        f.vat_reported(*january, "2026-03-10T09:00"),
        f.details("2026-04-01T08:00", vat_frequency="quarterly"),
        now="2026-07-15T12:00",
    )
    assert rows(state)[:2] == [("2025-Q4", "late"), ("2026-01", "done")]
    assert "2026-Q1" not in [p for p, _ in rows(state)]  # it overlaps the reported January
    assert ("2026-Q2", "new") in rows(state)


def test_large_payer_monthly_due_date() -> None:
    state = tab(f.details(vat_frequency="monthly", large_vat_payer=True), now="2026-12-01T12:00")
    assert row(state, "2026-11").deadline == dt.date(2026, 12, 28)


def test_header() -> None:
    state = tab(
        f.details(),
        f.entry_created("2026-03-06T12:00"),
        f.entry_created("2026-03-05T12:00"),
        now="2026-03-07T12:00",
    )
    assert state.header.last_bookkeeping_at == f.at("2026-03-06T12:00")
    assert state.header.vat_frequency == "quarterly"
    assert state.header.next_fiscal_year_end == dt.date(2026, 12, 31)
    # Time next changes the tab when Q1 ends, which is also when April begins.
    assert state.due_at == f.at("2026-03-31T22:00")


def test_the_tab_is_due_when_a_return_falls_due_not_every_midnight() -> None:
    state = tab(f.details(), now="2026-05-05T12:00")
    q1 = next(row for row in state.periods if row.period == "2026-Q1")
    assert (q1.status, q1.deadline) == ("new", dt.date(2026, 5, 12))
    assert state.due_at == f.at("2026-05-12T22:00")  # the day Q1's return is due ends


def test_the_engagement_start_month_moves_which_returns_show() -> None:
    state = tab(f.details(), f.engagement("2026-06", "2026-06-02T09:00"), now="2026-07-01T12:00")
    # Q1 was due on 12 May, before June: not this engagement's.
    assert rows(state) == [("2026-Q2", "new"), ("2026-Q3", "waiting")]
