"""Swedish days on which no deadline falls (DEADLINES.md §6.1).

A deadline on a Saturday, Sunday, public holiday (Lag 1989:253), Midsummer Eve, Christmas Eve or
New Year's Eve moves to the next day that is none of these (Lag 1930:173 § 2). Written out here
rather than taken from a holiday library: the rule is a page long, and the eves, which are not
public holidays, are exactly where libraries differ.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

ONE_DAY = dt.timedelta(days=1)


def easter_sunday(year: int) -> dt.date:
    """Gregorian Easter (the anonymous algorithm of Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _saturday_between(first: dt.date) -> dt.date:
    """The Saturday in the seven days starting at ``first``."""
    return first + dt.timedelta(days=(5 - first.weekday()) % 7)


@lru_cache(maxsize=64)
def non_business_days(year: int) -> dict[dt.date, str]:
    """Public holidays and the three eves of ``year`` (weekends are not listed)."""
    easter = easter_sunday(year)
    midsummer_day = _saturday_between(dt.date(year, 6, 20))
    return {
        dt.date(year, 1, 1): "New Year's Day",
        dt.date(year, 1, 6): "Epiphany",
        easter - 2 * ONE_DAY: "Good Friday",
        easter: "Easter Sunday",
        easter + ONE_DAY: "Easter Monday",
        dt.date(year, 5, 1): "May Day",
        easter + 39 * ONE_DAY: "Ascension Day",
        easter + 49 * ONE_DAY: "Whit Sunday",
        dt.date(year, 6, 6): "National Day",
        midsummer_day - ONE_DAY: "Midsummer Eve",
        midsummer_day: "Midsummer Day",
        _saturday_between(dt.date(year, 10, 31)): "All Saints' Day",
        dt.date(year, 12, 24): "Christmas Eve",
        dt.date(year, 12, 25): "Christmas Day",
        dt.date(year, 12, 26): "Boxing Day",
        dt.date(year, 12, 31): "New Year's Eve",
    }


def is_deadline_day(day: dt.date) -> bool:
    """Whether a deadline may fall on ``day``."""
    return day.weekday() < 5 and day not in non_business_days(day.year)


def move_to_deadline_day(day: dt.date) -> dt.date:
    """``day`` itself, or the next day on which a deadline may fall."""
    while not is_deadline_day(day):
        day += ONE_DAY
    return day
