"""The API's overview over the listing: what it reads per request, and that it shows every batch
its owners wrote. (Filters, order and paging against the running system: tests/e2e/test_api.py.)
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterable
from typing import Any

from consumers import tab
from consumers.bookkeeping import BookkeepingTab
from consumers.listing import COLLECTION
from consumers.registry import CONSUMERS
from contracts.envelope import Message
from contracts.registry import encode
from services.api.overview import Filters, Listing, sort_key
from services.listings import ListingWriter
from services.pipeline import Delivery, Pipeline
from services.store.memory import MemoryStore
from tests import factories as f

WALL = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
# In the order of their code points, as MongoDB sorts: "A" < "Z" < "b" < "Ö".
NAMES = {"c-1": "Öl & Bröd AB", "c-2": "Allt i Trä EF", "c-3": "bageri HB", "c-4": "Zeta AB"}


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []

    async def fetch(self, collection: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(ids)
        if collection == COLLECTION:
            self.fetched += ids
        return await super().fetch(collection, ids)


async def apply(store: MemoryStore, messages: list[Message]) -> None:
    for consumer in ("directory", "bookkeeping"):
        pipeline = Pipeline(CONSUMERS[consumer], store, lambda: WALL)
        handled = [m for m in messages if CONSUMERS[consumer].rulebook_for(m.type)]
        outcomes = await pipeline.handle(
            [Delivery(encode(m), "event", m.type, None) for m in handled]
        )
        assert {o.kind for o in outcomes} <= {"applied"}


def details(company: str) -> Message:
    return f.details("2026-02-01T09:00", company_id=company, name=NAMES[company])


async def test_the_overview_reads_the_heads_and_only_the_shards_that_moved() -> None:
    store = CountingStore()
    await apply(store, [details(c) for c in NAMES])
    await apply(store, [f.disconnected("2026-02-01T10:00", company_id="c-4")])
    listing = Listing(store)
    items, more = await listing.page(f.AGENCY, Filters(), 10, None)
    # By name (c-4 left the agency).
    assert [i.company_id for i in items] == ["c-2", "c-3", "c-1"]
    assert more is None
    assert items[0].domains["bookkeeping"].counts == {"waiting": 2}
    first_read = set(store.fetched)
    assert len(first_read) > 5  # the heads and every shard that exists

    store.fetched.clear()
    await listing.page(f.AGENCY, Filters(), 10, None)
    assert len(store.fetched) == 5  # nothing moved: the five heads only

    await apply(store, [f.submitted("2026-01", "2026-02-02T09:00", company_id="c-3")])
    store.fetched.clear()
    items, _ = await listing.page(f.AGENCY, Filters(domain="bookkeeping", status="new"), 10, None)
    assert [i.company_id for i in items] == ["c-3"]  # the batch just written shows
    assert len(store.fetched) == 6  # the heads, and the one shard whose head moved


async def test_pages_follow_the_order_and_the_filters() -> None:
    store = MemoryStore()
    await apply(store, [details(c) for c in NAMES])
    listing = Listing(store)
    first, after = await listing.page(f.AGENCY, Filters(), 2, None)
    assert [i.company_id for i in first] == ["c-2", "c-4"]
    assert after == sort_key("Zeta AB", "c-4")
    rest, more = await listing.page(f.AGENCY, Filters(), 2, after)
    assert [i.company_id for i in rest] == ["c-3", "c-1"] and more is None
    assert sort_key(None, "c-9") < sort_key("", "c-0")  # a company with no name yet: first
    by_text, _ = await listing.page(f.AGENCY, Filters(q="BRÖD"), 10, None)
    assert [i.company_id for i in by_text] == ["c-1"]  # case-insensitive, any part of the name
    mine, _ = await listing.page(f.AGENCY, Filters(responsible="u-nobody"), 10, None)
    assert mine == []


async def test_a_renamed_company_moves_and_a_company_listed_late_shows_its_tabs() -> None:
    store = MemoryStore()
    await apply(store, [details(c) for c in ("c-1", "c-2")])
    listing = Listing(store)
    items, _ = await listing.page(f.AGENCY, Filters(), 10, None)
    assert [i.company_id for i in items] == ["c-2", "c-1"]
    # A tab of a company the directory has not listed yet: nothing shows until it has.
    tab_first = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    early = f.details("2026-02-01T09:00", company_id="c-5", name="Mellan AB")
    await tab_first.handle([Delivery(encode(early), "event", early.type, None)])
    items, _ = await listing.page(f.AGENCY, Filters(), 10, None)
    assert [i.company_id for i in items] == ["c-2", "c-1"]
    renamed = f.details("2026-02-02T09:00", company_id="c-1", name="Aaa AB")
    late = Pipeline(CONSUMERS["directory"], store, lambda: WALL)
    await late.handle([Delivery(encode(m), "event", m.type, None) for m in (renamed, early)])
    items, _ = await listing.page(f.AGENCY, Filters(), 10, None)
    assert [i.company_id for i in items] == ["c-1", "c-2", "c-5"]
    assert items[2].domains["bookkeeping"].counts == {"waiting": 2}


async def test_a_listed_agency_leaves_nothing_for_the_collector_to_walk() -> None:
    """Why entries and rows are tuples: a full collection walks every tracked object and stops
    the whole process meanwhile. The API's joined rows and the writers' held shards hold one
    entry per company and kind; as lists, an agency of 10,000 companies was tens of thousands
    of objects in every pass."""
    store = MemoryStore()
    companies = [f"c-{n:03d}" for n in range(300)]
    messages = [f.details("2026-02-01T09:00", company_id=c, name=f"AB {c}") for c in companies]
    await apply(store, messages)
    tabs = await store.load("bookkeeping", BookkeepingTab, [f"{f.AGENCY}/{c}" for c in companies])
    gc.collect()
    before = len(gc.get_objects())
    listing = Listing(store)
    items, _ = await listing.page(f.AGENCY, Filters(), 10, None)
    assert items[0].domains["bookkeeping"].counts == {"waiting": 2}
    writer = ListingWriter(store)
    await writer.put("bookkeeping", tab.listed, tabs.values())  # holds the shards it read
    gc.collect()
    gc.collect()  # the second pass lets go of rows whose tabs it let go of in the first
    # As lists and objects: each company's row, its tabs, and an entry per kind, over 1,000.
    assert len(gc.get_objects()) - before < 100
