from __future__ import annotations

import datetime as dt

from consumers.fiscal_years import (
    FiscalYear,
    ReportedFiscalYear,
    effective,
    with_reported,
    year_of,
    years_between,
)
from consumers.rulebook import Stamp
from tests.factories import at

D = dt.date.fromisoformat


def year(start: str, end: str) -> FiscalYear:
    return FiscalYear(D(start), D(end))


def reported(*years: tuple[str, str, str]) -> list[ReportedFiscalYear]:
    found: list[ReportedFiscalYear] = []
    for start, end, when in years:
        found = with_reported(found, year(start, end), Stamp(at(when), when))
    return found


def test_a_later_report_replaces_the_year_it_overlaps() -> None:
    history = reported(
        ("2026-01-01", "2026-12-31", "2026-01-02T00:00"),
        ("2026-01-01", "2027-06-30", "2026-03-01T00:00"),
    )
    assert effective(history) == [year("2026-01-01", "2027-06-30")]


def test_the_order_of_arrival_does_not_matter() -> None:
    a = ("2026-01-01", "2026-12-31", "2026-01-02T00:00")
    b = ("2026-01-01", "2027-06-30", "2026-03-01T00:00")
    assert effective(reported(a, b)) == effective(reported(b, a))


def test_years_before_and_after_are_twelve_months_and_a_gap_is_one_year() -> None:
    history = reported(
        ("2025-01-01", "2025-12-31", "2025-01-02T00:00"),
        ("2026-07-01", "2027-06-30", "2026-07-02T00:00"),
    )
    assert years_between(history, D("2024-03-01"), D("2028-01-01")) == [
        year("2024-01-01", "2024-12-31"),
        year("2025-01-01", "2025-12-31"),
        year("2026-01-01", "2026-06-30"),  # the shortened year between the two reported
        year("2026-07-01", "2027-06-30"),
        year("2027-07-01", "2028-06-30"),
    ]
    assert year_of(history, D("2026-03-15")) == year("2026-01-01", "2026-06-30")


def test_no_reports_no_years() -> None:
    assert years_between([], D("2026-01-01"), D("2026-12-31")) == []
