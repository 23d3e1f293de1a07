"""DEADLINES.md: every worked example of §6.6, and cases derived from each rule for 2026–2028."""

from __future__ import annotations

import datetime as dt

import pytest

from consumers import months
from consumers.deadlines import (
    annual_report_due,
    bookkeeping_submission_deadline,
    employer_declaration_due,
    income_tax_return_due,
    k10_due,
    vat_return_due,
)
from consumers.holidays import (
    easter_sunday,
    is_deadline_day,
    move_to_deadline_day,
    non_business_days,
)

D = dt.date.fromisoformat


def vat(
    start: str,
    end: str,
    frequency: str,
    legal_form: str = "AB",
    *,
    large: bool = False,
    eu: bool = False,
) -> dt.date:
    return vat_return_due(
        period_start=D(start),
        period_end=D(end),
        frequency=frequency,
        legal_form=legal_form,
        large_vat_payer=large,
        eu_trade=eu,
    )


# §6.6, row by row.
def test_worked_vat_monthly_february_2026() -> None:
    assert vat("2026-02-01", "2026-02-28", "monthly") == D("2026-04-13")


def test_worked_vat_monthly_july_2026() -> None:
    assert vat("2026-07-01", "2026-07-31", "monthly") == D("2026-09-14")


def test_worked_vat_quarterly_q2_2026() -> None:
    assert vat("2026-04-01", "2026-06-30", "quarterly") == D("2026-08-17")


def test_worked_vat_monthly_large_november_2026() -> None:
    assert vat("2026-11-01", "2026-11-30", "monthly", large=True) == D("2026-12-28")


def test_worked_vat_yearly_hb() -> None:
    assert vat("2025-01-01", "2025-12-31", "yearly", "HB") == D("2026-02-26")


def test_worked_employer_declaration_december_2025() -> None:
    assert employer_declaration_due("2025-12", large_vat_payer=False) == D("2026-01-19")


def test_worked_annual_report_ab() -> None:
    assert annual_report_due(D("2026-12-31"), "AB") == D("2027-08-02")


def test_worked_income_tax_return_ab() -> None:
    assert income_tax_return_due(D("2025-12-31"), "AB") == D("2026-08-03")


def test_worked_income_tax_return_ef() -> None:
    assert income_tax_return_due(D("2026-12-31"), "EF") == D("2027-05-03")


def test_worked_bookkeeping_march_2026() -> None:
    assert bookkeeping_submission_deadline("2026-03", 5) == D("2026-04-07")


# §6.1: the calendar itself.
@pytest.mark.parametrize(
    ("year", "easter"), [(2026, "2026-04-05"), (2027, "2027-03-28"), (2028, "2028-04-16")]
)
def test_easter(year: int, easter: str) -> None:
    assert easter_sunday(year) == D(easter)


EXPECTED_2026_TO_2028 = {
    2026: [
        "01-01",
        "01-06",
        "04-03",
        "04-05",
        "04-06",
        "05-01",
        "05-14",
        "05-24",
        "06-06",
        "06-19",
        "06-20",
        "10-31",
        "12-24",
        "12-25",
        "12-26",
        "12-31",
    ],
    2027: [
        "01-01",
        "01-06",
        "03-26",
        "03-28",
        "03-29",
        "05-01",
        "05-06",
        "05-16",
        "06-06",
        "06-25",
        "06-26",
        "11-06",
        "12-24",
        "12-25",
        "12-26",
        "12-31",
    ],
    2028: [
        "01-01",
        "01-06",
        "04-14",
        "04-16",
        "04-17",
        "05-01",
        "05-25",
        "06-04",
        "06-06",
        "06-23",
        "06-24",
        "11-04",
        "12-24",
        "12-25",
        "12-26",
        "12-31",
    ],
}


@pytest.mark.parametrize("year", sorted(EXPECTED_2026_TO_2028))
def test_non_business_days_match_the_law(year: int) -> None:
    expected = {D(f"{year}-{md}") for md in EXPECTED_2026_TO_2028[year]}
    assert set(non_business_days(year)) == expected


def test_every_weekday_that_is_no_holiday_is_a_deadline_day() -> None:
    day = D("2026-01-01")
    while day.year < 2029:
        holiday = day in non_business_days(day.year)
        assert is_deadline_day(day) == (day.weekday() < 5 and not holiday), day
        day += dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("day", "moved"),
    [
        ("2026-01-06", "2026-01-07"),  # Epiphany, a Tuesday
        ("2026-04-03", "2026-04-07"),  # Good Friday → past Easter Monday
        ("2026-05-01", "2026-05-04"),  # May Day, a Friday
        ("2026-05-14", "2026-05-15"),  # Ascension Day
        ("2026-06-19", "2026-06-22"),  # Midsummer Eve, a Friday
        ("2027-06-25", "2027-06-28"),  # Midsummer Eve 2027
        ("2028-06-06", "2028-06-07"),  # National Day, a Tuesday
        ("2026-12-24", "2026-12-28"),  # Christmas Eve → past Boxing Day and Sunday
        ("2027-12-31", "2028-01-03"),  # New Year's Eve, a Friday
        ("2028-12-29", "2028-12-29"),  # an ordinary Friday stays
        ("2027-01-01", "2027-01-04"),  # New Year's Day, a Friday
        ("2027-01-06", "2027-01-07"),  # Epiphany, a Wednesday
        ("2027-03-26", "2027-03-30"),  # Good Friday 2027 → past Easter Monday
        ("2027-03-29", "2027-03-30"),  # Easter Monday
        ("2028-04-14", "2028-04-18"),  # Good Friday 2028
        ("2027-05-06", "2027-05-07"),  # Ascension Day 2027
        ("2028-05-25", "2028-05-26"),  # Ascension Day 2028
        ("2028-05-01", "2028-05-02"),  # May Day, a Monday
        ("2028-06-23", "2028-06-26"),  # Midsummer Eve 2028
        ("2026-12-25", "2026-12-28"),  # Christmas Day, a Friday
        ("2028-12-26", "2028-12-27"),  # Boxing Day, a Tuesday
        ("2026-12-31", "2027-01-04"),  # New Year's Eve, then New Year's Day and a weekend
    ],
)
def test_weekday_rule_moves_off_each_kind_of_day(day: str, moved: str) -> None:
    assert move_to_deadline_day(D(day)) == D(moved)


# §6.2
@pytest.mark.parametrize(
    ("period", "submission_day", "due"),
    [
        ("2026-01", None, "2026-02-05"),  # default day 5
        ("2026-04", 5, "2026-05-05"),
        ("2026-04", 1, "2026-05-04"),  # 1 May → Saturday 2 → Monday 4
        ("2026-12", 6, "2027-01-07"),  # Epiphany
        ("2027-05", 25, "2027-06-28"),  # Midsummer Eve on the 25th
        ("2026-11", 24, "2026-12-28"),  # Christmas Eve
        ("2027-12", 28, "2028-01-28"),
    ],
)
def test_bookkeeping_submission_day(period: str, submission_day: int | None, due: str) -> None:
    assert bookkeeping_submission_deadline(period, submission_day) == D(due)


# §6.3
@pytest.mark.parametrize(
    ("start", "end", "frequency", "form", "large", "eu", "due"),
    [
        ("2026-06-01", "2026-06-30", "monthly", "AB", False, False, "2026-08-17"),
        ("2026-11-01", "2026-11-30", "monthly", "AB", False, False, "2027-01-18"),  # 17 Jan Sun
        ("2027-10-01", "2027-12-31", "quarterly", "AB", False, False, "2028-02-14"),  # 12 Feb Sat
        ("2026-03-01", "2026-03-31", "monthly", "AB", True, False, "2026-04-27"),  # 26 Apr Sun
        ("2027-11-01", "2027-11-30", "monthly", "EF", True, False, "2027-12-27"),
        ("2026-07-01", "2026-09-30", "quarterly", "AB", True, False, "2026-11-12"),  # not month
        ("2026-01-01", "2026-12-31", "yearly", "KB", False, False, "2027-02-26"),
        ("2026-01-01", "2026-12-31", "yearly", "AB", False, True, "2027-02-26"),  # EU trade
        ("2026-01-01", "2026-12-31", "yearly", "EF", False, True, "2027-02-26"),
        ("2026-01-01", "2026-12-31", "yearly", "EF", False, False, "2027-05-12"),
        ("2026-05-01", "2027-04-30", "yearly", "AB", False, False, "2027-12-13"),  # 12 Dec Sun
        ("2026-07-01", "2027-06-30", "yearly", "EK", False, False, "2028-01-17"),
        ("2026-09-01", "2027-08-31", "yearly", "other", False, False, "2028-04-12"),
        ("2026-01-01", "2026-12-31", "yearly", "AB", False, False, "2027-08-17"),
    ],
)
def test_vat_return_due(
    start: str, end: str, frequency: str, form: str, large: bool, eu: bool, due: str
) -> None:
    assert vat(start, end, frequency, form, large=large, eu=eu) == D(due)


def test_no_vat_return_without_frequency() -> None:
    with pytest.raises(ValueError):
        vat("2026-01-01", "2026-12-31", "none")


# §6.4
@pytest.mark.parametrize(
    ("month", "large", "due"),
    [
        ("2026-07", False, "2026-08-17"),
        ("2026-03", False, "2026-04-13"),  # 12 Apr Sunday
        ("2026-04", True, "2026-05-26"),
        ("2026-12", True, "2027-01-26"),
        ("2027-05", False, "2027-06-14"),  # 12 Jun Saturday
    ],
)
def test_employer_declaration_due(month: str, large: bool, due: str) -> None:
    assert employer_declaration_due(month, large) == D(due)


# §6.5
@pytest.mark.parametrize(
    ("end", "form", "due"),
    [
        ("2026-06-30", "EK", "2027-02-01"),  # last day of the 7th month after, a Sunday
        ("2026-08-31", "AB", "2027-03-31"),
        ("2027-04-30", "AB", "2027-11-30"),
        ("2026-06-15", "AB", "2027-01-15"),
        ("2026-12-31", "HB", None),
        ("2026-12-31", "EF", None),
    ],
)
def test_annual_report_due(end: str, form: str, due: str | None) -> None:
    assert annual_report_due(D(end), form) == (D(due) if due else None)


@pytest.mark.parametrize(
    ("end", "form", "due"),
    [
        ("2026-04-30", "AB", "2026-12-01"),
        ("2026-06-30", "HB", "2027-01-15"),
        ("2026-08-31", "KB", "2027-04-01"),
        ("2027-12-31", "other", "2028-08-01"),
        ("2027-12-31", "EF", "2028-05-02"),
        ("2026-02-28", "EK", "2026-12-01"),
    ],
)
def test_income_tax_return_due(end: str, form: str, due: str) -> None:
    assert income_tax_return_due(D(end), form) == D(due)


def test_k10_only_for_ab_that_asked() -> None:
    assert k10_due(D("2026-12-31"), "AB", requested=True) == D("2027-05-03")
    assert k10_due(D("2026-12-31"), "AB", requested=False) is None
    assert k10_due(D("2026-12-31"), "EK", requested=True) is None


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("2025-11", "2026-02", ("2025-11", "2025-12", "2026-01", "2026-02")),
        ("2026-03", "2026-03", ("2026-03",)),
        ("2026-03", "2026-02", ()),
        ("0999-12", "1000-01", ("0999-12", "1000-01")),
    ],
)
def test_months_between_counts_every_month_across_years(
    first: str, last: str, expected: tuple[str, ...]
) -> None:
    assert months.months_between(first, last) == expected
    assert list(months.months_between(first, last)) == [
        months.shift(first, i) for i in range(len(expected))
    ]
