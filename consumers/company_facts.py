"""The company details a tab depends on, kept by each consumer from the same events.

Each consumer keeps its own copy (it receives ``company.details_changed`` on its own queue)
instead of reading the directory's documents: an aggregate has one writer and depends on no other
aggregate's storage, so consumers can be deployed and replayed independently.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from consumers.rulebook import Stamp
from contracts.company import CompanyDetails, CompanyDetailsChanged, CompanyDisconnected


class CompanyFacts(msgspec.Struct, kw_only=True):
    details: CompanyDetails | None = None
    details_stamp: Stamp | None = None
    disconnected_stamp: Stamp | None = None
    # The earliest fiscal year ever reported: when the fiscal year rolls over, tracking (which
    # starts at the fiscal year's first month when no engagement is set) keeps the old periods.
    first_fiscal_year_start: dt.date | None = None

    @property
    def connected(self) -> bool:
        """Connected unless the latest of (details, disconnection) is the disconnection."""
        if self.disconnected_stamp is None:
            return True
        return self.details_stamp is not None and self.details_stamp > self.disconnected_stamp


def merge_company(
    facts: CompanyFacts, message: CompanyDetailsChanged | CompanyDisconnected
) -> CompanyFacts:
    """The facts after ``message``; the latest fact of each kind wins, whatever the arrival."""
    stamp = Stamp(message.occurred_at, message.id)
    if isinstance(message, CompanyDisconnected):
        if facts.disconnected_stamp is None or stamp > facts.disconnected_stamp:
            return msgspec.structs.replace(facts, disconnected_stamp=stamp)
        return facts
    start = message.data.fiscal_year_start
    first = facts.first_fiscal_year_start
    first = start if first is None else min(first, start)
    if facts.details_stamp is None or stamp > facts.details_stamp:
        return msgspec.structs.replace(
            facts, details=message.data, details_stamp=stamp, first_fiscal_year_start=first
        )
    return msgspec.structs.replace(facts, first_fiscal_year_start=first)
