"""The company facts a tab depends on, kept by each consumer from the same messages.

Each consumer keeps its own copy (it receives ``company.details_changed`` and the engagement on
its own queue) instead of reading the directory's documents: an aggregate has one writer and
depends on no other aggregate's storage, so consumers can be deployed and replayed independently.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from consumers import months
from consumers.fiscal_years import FiscalYear, ReportedFiscalYear, with_reported
from consumers.rulebook import Stamp
from consumers.stockholm import today
from contracts.commands import SetEngagement
from contracts.company import CompanyDetails, CompanyDetailsChanged, CompanyDisconnected

CompanyMessage = CompanyDetailsChanged | CompanyDisconnected | SetEngagement


class CompanyFacts(msgspec.Struct, kw_only=True):
    details: CompanyDetails | None = None
    details_stamp: Stamp | None = None
    disconnected_stamp: Stamp | None = None
    fiscal_years: list[ReportedFiscalYear] = msgspec.field(default_factory=list)
    engagement_start: str | None = None
    responsible_user_id: str | None = None
    engagement_stamp: Stamp | None = None

    @property
    def connected(self) -> bool:
        """Connected unless the latest of (details, disconnection) is the disconnection."""
        if self.disconnected_stamp is None:
            return True
        return self.details_stamp is not None and self.details_stamp > self.disconnected_stamp


def merge_company(facts: CompanyFacts, message: CompanyMessage) -> CompanyFacts:
    """The facts after ``message``; the latest fact of each kind wins, whatever the arrival."""
    stamp = Stamp(message.occurred_at, message.id)
    match message:
        case CompanyDisconnected():
            if facts.disconnected_stamp is None or stamp > facts.disconnected_stamp:
                return msgspec.structs.replace(facts, disconnected_stamp=stamp)
        case SetEngagement():
            if facts.engagement_stamp is None or stamp > facts.engagement_stamp:
                return msgspec.structs.replace(
                    facts,
                    engagement_start=message.data.start_month,
                    responsible_user_id=message.data.responsible_user_id,
                    engagement_stamp=stamp,
                )
        case CompanyDetailsChanged():
            year = FiscalYear(message.data.fiscal_year_start, message.data.fiscal_year_end)
            facts = msgspec.structs.replace(
                facts, fiscal_years=with_reported(facts.fiscal_years, year, stamp)
            )
            if facts.details_stamp is None or stamp > facts.details_stamp:
                return msgspec.structs.replace(facts, details=message.data, details_stamp=stamp)
    return facts


def tracking_start(facts: CompanyFacts) -> str | None:
    """The first tracked month (SPEC §4): the engagement's start month, or else (our rule) the
    first month of the earliest fiscal year reported, so that a fiscal year rolling over keeps
    the old periods. None while the company's details are unknown."""
    if facts.details is None:
        return None
    if facts.engagement_start is not None:
        return facts.engagement_start
    return months.month_of(min(r.year.start for r in facts.fiscal_years))


def last_tracked_day(facts: CompanyFacts, now: dt.datetime) -> dt.date:
    """Today in Stockholm; for a disconnected company, the day it left."""
    if not facts.connected and facts.disconnected_stamp is not None:
        return min(today(now), today(facts.disconnected_stamp.at))
    return today(now)


def tracked_months(facts: CompanyFacts, now: dt.datetime) -> list[str]:
    """Bookkeeping and payroll periods: from the tracking start through the current month (a
    disconnected company: through the month it left in)."""
    first = tracking_start(facts)
    if first is None:
        return []
    return list(months.months_between(first, months.month_of(last_tracked_day(facts, now))))
