"""The overview from the owners' listing shards (consumers/listing.py): the companies of an
agency with what each tab shows of them, filtered, sorted by name and paged in memory.

The agency's five heads (one per kind) tell which shards moved past the copy held; only those
are read again. The heads are read at most every half of `max_age_s`, in the background while
requests are answered from the rows held (services/api/fresh.py), so a page shows every batch
its owners had acknowledged `max_age_s` before, and what this process's own commands changed
(`forget`). The joined list, sorted by name, is kept: a moved tab's shard only updates the rows
of its companies, and only a moved shard of the companies (a name may have changed) sorts it
again.
"""

from __future__ import annotations

import bisect
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from consumers.listing import (
    COLLECTION,
    Entry,
    ListingHead,
    ListingShard,
    head_key,
    shard_key,
    shard_keys,
)
from consumers.tab import listed_count, listed_counts
from services.api import schemas
from services.api.fresh import Fresh
from services.store import Store, Stored
from services.store.port import from_document

COMPANIES: Final = "companies"
# What consumers/directory.py `listed` and consumers/tab.py `listed` put after the version.
_NAME, _ORG, _DIGITS, _RESPONSIBLE, _CONNECTED = 1, 2, 3, 4, 5
_LATEST_PERIOD, _LATEST_STATUS, _COUNTS = 1, 2, 3
KINDS: Final = (COMPANIES, *schemas.DOMAINS)
DOMAIN_AT: Final[dict[str, int]] = {domain: place for place, domain in enumerate(schemas.DOMAINS)}
# Agencies whose joined list is kept (the shards' decoded entries go with it).
AGENCIES_KEPT: Final = 64

SortKey = tuple[bool, str, str]


def sort_key(name: str | None, company_id: str) -> SortKey:
    """By name, companies without one first, then by id: a total order for cursor paging."""
    return (name is not None, name or "", company_id)


# A row: (sort key, the company's entry, its tabs' entries in `DOMAINS` order, None where it has
# none). Plain tuples of plain values all through: the collector stops tracking those (not a
# tuple's subclass), so an agency of 10,000 companies held here adds next to nothing to its
# full passes, which stop the whole process.
_Row = tuple[SortKey, Entry, tuple[Entry | None, ...]]
_KEY: Final = 0
_COMPANY: Final = 1
_TABS: Final = 2


@dataclass
class _Agency:
    shards: dict[str, Stored]  # ListingShard states, by shard key
    rows: list[_Row]
    keys: list[SortKey]
    at: dict[str, int]  # each company's place in `rows`


@dataclass(frozen=True)
class Filters:
    responsible: str | None = None
    domain: str | None = None
    status: str | None = None
    q: str | None = None


class Listing:
    def __init__(self, store: Store, max_age_s: float = 0.0) -> None:
        self.store = store
        self._agencies: OrderedDict[str, _Agency] = OrderedDict()
        self._checked: Fresh[_Agency] = Fresh(max_age_s, AGENCIES_KEPT)

    def forget(self, agency_id: str) -> None:
        """The next page of the agency reads its heads first."""
        self._checked.forget(agency_id)

    async def page(
        self, agency_id: str, filters: Filters, limit: int, after: SortKey | None
    ) -> tuple[list[schemas.OverviewItem], SortKey | None]:
        """Up to ``limit`` connected companies after ``after`` that pass ``filters``, and the
        key to continue from when there are more."""
        agency = await self._checked.get(agency_id, lambda: self._agency(agency_id))
        start = 0 if after is None else bisect.bisect_right(agency.keys, after)
        matches = _matcher(filters)
        found: list[_Row] = []
        for row in agency.rows[start:] if start else agency.rows:
            if matches(row):
                found.append(row)
                if len(found) > limit:
                    break
        page = found[:limit]
        items = [_item(row) for row in page]
        return items, page[-1][_KEY] if len(found) > limit else None

    async def _agency(self, agency_id: str) -> _Agency:
        """The agency's rows as of its heads: only the shards whose head moved past the copy
        held are read again."""
        found = await self.store.fetch(COLLECTION, [head_key(kind, agency_id) for kind in KINDS])
        heads = [from_document(document, ListingHead).state for document in found]
        kept = self._agencies.get(agency_id)
        shards = dict(kept.shards) if kept is not None else {}
        stale = [
            key
            for head in heads
            for number, version in head.versions.items()
            if (held := shards.get(key := shard_key(head.kind, agency_id, number))) is None
            or held.version < version
        ]
        for document in await self.store.fetch(COLLECTION, stale) if stale else []:
            shards[document["_id"]] = from_document(document, ListingShard)
        if kept is not None and not any(key.startswith(f"{COMPANIES}/") for key in stale):
            # Only tabs moved: the order (by the companies' names) stands; the rows take the
            # moved shards' entries, without sorting the agency again.
            for key in stale:
                domain = DOMAIN_AT[key.split("/", 1)[0]]
                for company_id, entry in shards[key].state.entries.items():
                    if (place := kept.at.get(company_id)) is not None:
                        by, company, tabs = kept.rows[place]
                        kept.rows[place] = (
                            by,
                            company,
                            (*tabs[:domain], entry, *tabs[domain + 1 :]),
                        )
            kept.shards = shards
            self._agencies.move_to_end(agency_id)
            return kept
        agency = _join(agency_id, shards)
        self._agencies[agency_id] = agency
        self._agencies.move_to_end(agency_id)
        while len(self._agencies) > AGENCIES_KEPT:
            self._agencies.popitem(last=False)
        return agency


def _join(agency_id: str, shards: dict[str, Stored]) -> _Agency:
    by_kind: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for key in shard_keys(kind, agency_id):
            if key in shards:
                by_kind[kind].update(shards[key].state.entries)
    domains: Sequence[str] = schemas.DOMAINS
    rows = sorted(
        (
            (
                sort_key(company[_NAME], company_id),
                company,
                tuple(by_kind[d].get(company_id) for d in domains),
            )
            for company_id, company in by_kind[COMPANIES].items()
            if company[_CONNECTED]
        ),
        key=lambda row: row[_KEY],
    )
    return _Agency(
        shards,
        rows,
        [row[_KEY] for row in rows],
        {row[_KEY][2]: place for place, row in enumerate(rows)},
    )


def _matcher(filters: Filters) -> Any:
    """One predicate over a row for all the filters: the same meaning as the queries the
    overview made of the store before it had a listing."""
    text = re.compile(re.escape(filters.q), re.IGNORECASE) if filters.q else None
    digits = re.sub(r"\D", "", filters.q) if filters.q else ""
    domain = DOMAIN_AT[filters.domain] if filters.domain is not None else None

    def matches(row: _Row) -> bool:
        company = row[_COMPANY]
        if filters.responsible is not None and company[_RESPONSIBLE] != filters.responsible:
            return False
        if domain is not None and filters.status is not None:
            tab = row[_TABS][domain]
            if tab is None or not listed_count(tab, _COUNTS, filters.status) > 0:
                return False
        if text is not None:
            named = company[_NAME] is not None and text.search(company[_NAME]) is not None
            numbered = bool(digits) and (company[_DIGITS] or "").startswith(digits)
            if not (named or numbered):
                return False
        return True

    return matches


def _item(row: _Row) -> schemas.OverviewItem:
    company = row[_COMPANY]
    return schemas.OverviewItem(
        company_id=row[_KEY][2],
        name=company[_NAME],
        org_number=company[_ORG],
        responsible_user_id=company[_RESPONSIBLE],
        domains={
            domain: schemas.DomainSummary(
                latest_period=tab[_LATEST_PERIOD],
                latest_status=tab[_LATEST_STATUS],
                counts=listed_counts(tab, _COUNTS),
            )
            for domain, tab in zip(schemas.DOMAINS, row[_TABS], strict=True)
            if tab is not None
        },
    )
