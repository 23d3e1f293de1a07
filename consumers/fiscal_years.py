"""Fiscal years: the ones the company reported, and the ones that follow from them.

Upstream reports only the current fiscal year. Each tab keeps every year ever reported; where two
overlap, the one reported later is the correction and wins. Years before the earliest and after
the latest are taken to be twelve months long, and a gap between two reported years is one
(shortened or extended) year of its own.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from consumers.rulebook import Stamp
from contracts.fields import add_months

ONE_DAY = dt.timedelta(days=1)


class FiscalYear(msgspec.Struct, frozen=True, order=True):
    start: dt.date
    end: dt.date

    def overlaps(self, other: FiscalYear) -> bool:
        return self.start <= other.end and other.start <= self.end


class ReportedFiscalYear(msgspec.Struct, frozen=True):
    year: FiscalYear
    stamp: Stamp


def with_reported(
    reported: list[ReportedFiscalYear], year: FiscalYear, stamp: Stamp
) -> list[ReportedFiscalYear]:
    """``reported`` plus one report, in stamp order; a year keeps only its latest report."""
    same = next((r for r in reported if r.year == year), None)
    if same is not None and same.stamp >= stamp:
        return reported
    others = [r for r in reported if r.year != year]
    return sorted([*others, ReportedFiscalYear(year, stamp)], key=lambda r: r.stamp)


def merged(*lists: list[ReportedFiscalYear]) -> list[ReportedFiscalYear]:
    result: list[ReportedFiscalYear] = []
    for reported in lists:
        for entry in reported:
            result = with_reported(result, entry.year, entry.stamp)
    return result


def effective(reported: list[ReportedFiscalYear]) -> list[FiscalYear]:
    """The reported years that stand, oldest first: a later report replaces what it overlaps."""
    standing: list[FiscalYear] = []
    for entry in reported:  # in stamp order
        standing = [y for y in standing if not y.overlaps(entry.year)]
        standing.append(entry.year)
    return sorted(standing)


def years_between(
    reported: list[ReportedFiscalYear], first: dt.date, last: dt.date
) -> list[FiscalYear]:
    """Every fiscal year that has a day in ``[first, last]``, oldest first."""
    known = effective(reported)
    if not known or last < first:
        return []
    timeline: list[FiscalYear] = []
    for year in known:
        if timeline and year.start > timeline[-1].end + ONE_DAY:
            timeline.append(FiscalYear(timeline[-1].end + ONE_DAY, year.start - ONE_DAY))
        timeline.append(year)
    while timeline[0].start > first:
        start = timeline[0].start
        timeline.insert(0, FiscalYear(add_months(start, -12), start - ONE_DAY))
    while timeline[-1].end < last:
        start = timeline[-1].end + ONE_DAY
        timeline.append(FiscalYear(start, add_months(start, 12) - ONE_DAY))
    return [y for y in timeline if y.end >= first and y.start <= last]


def year_of(reported: list[ReportedFiscalYear], day: dt.date) -> FiscalYear | None:
    years = years_between(reported, day, day)
    return years[0] if years else None
