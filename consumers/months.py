"""Calendar months as ``YYYY-MM`` strings, the period key of bookkeeping and payroll."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def first_day(period: str) -> dt.date:
    return dt.date(int(period[:4]), int(period[5:7]), 1)


def shift(period: str, months: int) -> str:
    index = int(period[:4]) * 12 + int(period[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def last_day(period: str) -> dt.date:
    return first_day(shift(period, 1)) - dt.timedelta(days=1)


def months_between(first: str, last: str) -> Iterator[str]:
    """Every month from ``first`` through ``last`` (none when ``last`` is earlier)."""
    period = first
    while period <= last:
        yield period
        period = shift(period, 1)
