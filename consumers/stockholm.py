"""Swedish calendar time: deadlines are days in Europe/Stockholm, facts are UTC instants."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@lru_cache(maxsize=1024)  # a rule asks it several times about the same instant
def today(now: dt.datetime) -> dt.date:
    return now.astimezone(STOCKHOLM).date()


@lru_cache(maxsize=4096)  # every row's deadline, for every message: a few hundred days recur
def end_of_day(day: dt.date) -> dt.datetime:
    """The instant (UTC) at which ``day`` has ended in Stockholm: the next day's midnight."""
    following = day + dt.timedelta(days=1)
    return dt.datetime.combine(following, dt.time(), STOCKHOLM).astimezone(dt.UTC)


def next_month_start(now: dt.datetime) -> dt.datetime:
    """The first instant of the next calendar month in Stockholm: a new monthly period."""
    return _start_of_month_after(today(now))


@lru_cache(maxsize=1024)  # every message asks it; date arithmetic costs microseconds
def _start_of_month_after(day: dt.date) -> dt.datetime:
    first_of_next = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return end_of_day(first_of_next - dt.timedelta(days=1))


def days_left(deadline: dt.date, now: dt.datetime) -> int:
    return days_until(deadline, today(now))


def days_until(deadline: dt.date, day: dt.date) -> int:
    """``days_left`` for a Stockholm day already worked out: a tab asks it for every row."""
    return (deadline - day).days
