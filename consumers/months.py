"""Calendar months as ``YYYY-MM`` strings, the period key of bookkeeping and payroll."""

from __future__ import annotations

import datetime as dt
import functools


@functools.lru_cache(maxsize=4096)  # asked for every period of every message; formatting costs
def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def first_day(period: str) -> dt.date:
    return dt.date(int(period[:4]), int(period[5:7]), 1)


def shift(period: str, months: int) -> str:
    index = int(period[:4]) * 12 + int(period[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def last_day(period: str) -> dt.date:
    return first_day(shift(period, 1)) - dt.timedelta(days=1)


@functools.lru_cache(maxsize=4096)
def months_between(first: str, last: str) -> tuple[str, ...]:
    """Every month from ``first`` through ``last`` (none when ``last`` is earlier). Remembered:
    every message to a tab asks for the months it tracks, the same ones until a month begins."""
    start = int(first[:4]) * 12 + int(first[5:7]) - 1
    end = int(last[:4]) * 12 + int(last[5:7]) - 1
    return tuple(f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(start, end + 1))
