"""Swedish deadlines (DEADLINES.md §§6.2–6.5), every one moved by the weekday rule of §6.1.

Each function takes what the rule depends on and nothing else, so that a test can state a rule's
case in one line.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Final

from consumers import months
from consumers.holidays import move_to_deadline_day

DEFAULT_SUBMISSION_DAY: Final = 5


def _day_of_month(period: str, day: int) -> dt.date:
    return months.first_day(period).replace(day=day)


@lru_cache(maxsize=4096)  # asked for every period a message replays; a few hundred recur
def bookkeeping_submission_deadline(period: str, submission_day: int | None) -> dt.date:
    """§6.2: the client's last submission day for a bookkeeping month."""
    day = submission_day or DEFAULT_SUBMISSION_DAY
    return move_to_deadline_day(_day_of_month(months.shift(period, 1), day))


def _twelfth_or_seventeenth(period: str) -> dt.date:
    """The 12th of ``period``'s month, the 17th when it is January or August."""
    day = 17 if period[5:7] in ("01", "08") else 12
    return _day_of_month(period, day)


def vat_return_due(
    *,
    period_start: dt.date,
    period_end: dt.date,
    frequency: str,
    legal_form: str,
    large_vat_payer: bool,
    eu_trade: bool,
) -> dt.date:
    """§6.3: the statutory due date of the VAT return for one period; the first row that fits."""
    end_month = months.month_of(period_end)
    if frequency == "monthly" and large_vat_payer:
        following = months.shift(end_month, 1)
        day = 27 if period_end.month == 11 else 26
        return move_to_deadline_day(_day_of_month(following, day))
    if frequency in ("monthly", "quarterly"):
        return move_to_deadline_day(_twelfth_or_seventeenth(months.shift(end_month, 2)))
    if frequency != "yearly":
        raise ValueError(f"no VAT return for frequency {frequency!r}")
    if legal_form in ("HB", "KB") or eu_trade:
        return move_to_deadline_day(_day_of_month(months.shift(end_month, 2), 26))
    if legal_form == "EF":
        return move_to_deadline_day(dt.date(period_end.year + 1, 5, 12))
    return move_to_deadline_day(_by_fiscal_year_end(period_end, VAT_YEARLY_BY_END_MONTH))


# (last month of the range, month, day, years after the fiscal year's end)
_Schedule = tuple[tuple[int, int, int, int], ...]

VAT_YEARLY_BY_END_MONTH: Final[_Schedule] = (
    (4, 12, 12, 0),
    (6, 1, 17, 1),
    (8, 4, 12, 1),
    (12, 8, 17, 1),
)

INCOME_TAX_RETURN_BY_END_MONTH: Final[_Schedule] = (
    (4, 12, 1, 0),
    (6, 1, 15, 1),
    (8, 4, 1, 1),
    (12, 8, 1, 1),
)


def _by_fiscal_year_end(fiscal_year_end: dt.date, schedule: _Schedule) -> dt.date:
    for last_month, month, day, years_after in schedule:
        if fiscal_year_end.month <= last_month:
            return dt.date(fiscal_year_end.year + years_after, month, day)
    raise AssertionError("the schedule covers every month")


def employer_declaration_due(pay_month: str, large_vat_payer: bool) -> dt.date:
    """§6.4: the employer declaration for pay paid out in ``pay_month``."""
    following = months.shift(pay_month, 1)
    if large_vat_payer:
        return move_to_deadline_day(_day_of_month(following, 26))
    return move_to_deadline_day(_twelfth_or_seventeenth(following))


def annual_report_due(fiscal_year_end: dt.date, legal_form: str) -> dt.date | None:
    """§6.5: the annual report to Bolagsverket, for `AB` and `EK` only."""
    if legal_form not in ("AB", "EK"):
        return None
    end_month = months.month_of(fiscal_year_end)
    if fiscal_year_end == months.last_day(end_month):
        due = months.last_day(months.shift(end_month, 7))
    else:
        target = months.shift(end_month, 7)
        due = months.first_day(target).replace(
            day=min(fiscal_year_end.day, months.last_day(target).day)
        )
    return move_to_deadline_day(due)


def income_tax_return_due(fiscal_year_end: dt.date, legal_form: str) -> dt.date:
    """§6.5: the income tax return (digital filing)."""
    if legal_form == "EF":
        return move_to_deadline_day(dt.date(fiscal_year_end.year + 1, 5, 2))
    return move_to_deadline_day(
        _by_fiscal_year_end(fiscal_year_end, INCOME_TAX_RETURN_BY_END_MONTH)
    )


def k10_due(fiscal_year_end: dt.date, legal_form: str, requested: bool) -> dt.date | None:
    """§6.5: K10 goes with the owner's own return; only for `AB` when help was asked for."""
    if legal_form != "AB" or not requested:
        return None
    return move_to_deadline_day(dt.date(fiscal_year_end.year + 1, 5, 2))
