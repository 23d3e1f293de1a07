"""SPEC §5.2: payroll statuses are the consultant's; the client's completion is shown only."""

from __future__ import annotations

import datetime as dt

import pytest

from consumers import payroll
from consumers.payroll import PayrollTab, Row
from consumers.rulebook import Rejected
from tests import factories as f
from tests.unit.tabs import replay


def tab(*messages: object, now: str | None = None) -> PayrollTab:
    state = replay(payroll.RULEBOOK, messages, now)  # type: ignore[arg-type]
    assert isinstance(state, PayrollTab)
    return state


def row(state: PayrollTab, period: str) -> Row:
    return next(r for r in state.periods if r.period == period)


def test_periods_start_waiting_and_never_turn_late_by_themselves() -> None:
    state = tab(f.details(), now="2026-12-20T12:00")
    assert [r.period for r in state.periods][:2] == ["2026-01", "2026-02"]
    assert {r.status for r in state.periods} == {"waiting"}


def test_a_completed_month_shows_in_the_row_and_header_but_keeps_the_status() -> None:
    state = tab(
        f.details(),
        f.payroll_completed("2026-02", "2026-02-25T07:30", employees=4, payment_date="2026-02-25"),
        now="2026-03-01T12:00",
    )
    february = row(state, "2026-02")
    assert february.status == "waiting"
    assert february.updated_by_company_at == f.at("2026-02-25T07:30")
    assert state.header.latest_completed_month == "2026-02"
    assert state.header.employees == 4
    assert state.header.employer_declaration_due == dt.date(2026, 3, 12)


def test_the_header_takes_the_latest_month_and_its_latest_report() -> None:
    state = tab(
        f.details(),
        f.payroll_completed("2026-03", "2026-03-25T07:00", employees=5),
        f.payroll_completed("2026-02", "2026-02-25T07:00", employees=4),
        f.payroll_completed("2026-03", "2026-03-26T07:00", employees=6),
        now="2026-04-01T12:00",
    )
    assert (state.header.latest_completed_month, state.header.employees) == ("2026-03", 6)
    assert state.header.employer_declaration_due == dt.date(2026, 4, 13)  # 12 Apr is a Sunday


def test_the_declaration_follows_the_payment_date_and_size() -> None:
    paid_in_january = tab(
        f.details(large_vat_payer=True),
        f.payroll_completed("2026-12", "2026-12-20T07:00", payment_date="2027-01-25"),
        now="2027-01-02T12:00",
    )
    assert paid_in_january.header.employer_declaration_due == dt.date(2027, 2, 26)


@pytest.mark.parametrize("status", ["waiting", "late", "new", "in_progress", "incomplete", "done"])
def test_the_consultant_sets_any_status(status: str) -> None:
    state = tab(
        f.details(),
        f.payroll_status("2026-02", status, "2026-03-01T10:00", user="u-9"),
        now="2026-03-02T12:00",
    )
    assert (row(state, "2026-02").status, row(state, "2026-02").status_set_by) == (status, "u-9")


def test_the_latest_status_by_occurred_at_wins() -> None:
    newer = f.payroll_status("2026-02", "done", "2026-03-02T10:00")
    older = f.payroll_status("2026-02", "in_progress", "2026-03-01T10:00")
    state = tab(f.details(), newer, older, now="2026-03-03T12:00")
    assert row(state, "2026-02").status == "done"
    assert [(e.from_, e.to, e.cause.kind) for e in state.history] == [
        ("waiting", "in_progress", "user"),
        ("in_progress", "done", "user"),
    ]


def test_a_status_outside_tracking_is_refused() -> None:
    state = tab(f.details(), now="2026-03-03T12:00")
    with pytest.raises(Rejected, match="outside tracking"):
        payroll.apply(
            state,
            f.payroll_status("2026-05", "done", "2026-03-03T12:00"),  # type: ignore[arg-type]
            f.at("2026-03-03T12:00"),
        )


def test_the_next_month_is_due_at_its_first_stockholm_midnight() -> None:
    state = tab(f.details(), now="2026-03-03T12:00")
    assert state.due_at == f.at("2026-03-31T22:00")


def test_the_engagement_start_month_starts_tracking() -> None:
    state = tab(f.details(), f.engagement("2026-06", "2026-07-01T09:00"), now="2026-08-03T12:00")
    assert [r.period for r in state.periods] == ["2026-06", "2026-07", "2026-08"]
