"""The overview's listing shards: what each owner lists, when it writes them, and that they end
as the aggregates do, whatever the replicas, the order and the crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import directory, tab
from consumers.bookkeeping import BookkeepingTab
from consumers.directory import CompanyEntry
from consumers.listing import (
    COLLECTION,
    SHARDS,
    ListingHead,
    ListingShard,
    head_key,
    merged,
    newer,
    shard_key,
    shard_keys,
    shard_of,
)
from consumers.registry import CONSUMERS
from contracts.envelope import Message
from contracts.registry import encode
from services.listings import ListingWriter
from services.pipeline import Delivery, Pipeline
from services.signing import signature
from services.store import Stored, Write
from services.store.memory import MemoryStore
from tests import factories as f

WALL = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
KEY = f"{f.AGENCY}/{f.COMPANY}"


SECRET = "listing-test-secret-0123456789abcdef0123"


def pipeline(store: Any, consumer: str = "bookkeeping") -> Pipeline:
    return Pipeline(CONSUMERS[consumer], store, lambda: WALL, secret=SECRET)


def delivery(message: Message) -> Delivery:
    """As the runner hands it over: a consultant's command signed as the API signs it."""
    body = encode(message)
    if message.type.endswith("set_period_status"):
        return Delivery(body, "command", message.type, signature(SECRET, body))
    return Delivery(body, "event", message.type, None)


async def listed_entry(store: MemoryStore, kind: str, company_id: str = f.COMPANY) -> Any:
    key = shard_key(kind, f.AGENCY, shard_of(company_id))
    found = await store.load(COLLECTION, ListingShard, [key])
    return found[key].state.entries.get(company_id) if key in found else None


async def head(store: MemoryStore, kind: str) -> dict[int, int]:
    key = head_key(kind, f.AGENCY)
    found = await store.load(COLLECTION, ListingHead, [key])
    return found[key].state.versions if key in found else {}


async def stored(store: MemoryStore, kind: str, state_type: type[Any]) -> Any:
    return (await store.load(kind, state_type, [KEY]))[KEY].state


# ---------------------------------------------------------------- the rule, pure
def test_a_later_write_replaces_an_entry_and_an_earlier_one_never_does() -> None:
    assert newer(None, (1, "2026-01", "new", "new", 1))
    assert newer((3, "2026-01", "new"), (4, "2026-01", "done"))
    assert not newer((4, "2026-01", "done"), (3, "2026-01", "new"))
    assert not newer((4, "2026-01", "done"), (4, "2026-01", "done"))
    # The same write listed differently: the summary's code changed, the new form wins.
    assert newer((4, "2026-01", "done", {"done": 1}), (4, "2026-01", "done", "done", 1))


def test_a_merge_that_changes_nothing_writes_nothing() -> None:
    shard = ListingShard(kind="vat", agency_id="a", shard=0, entries={"c-1": (2, None, None)})
    assert merged(shard, "vat", "a", 0, {"c-1": (2, None, None)}) is None
    assert merged(shard, "vat", "a", 0, {"c-1": (1, "x", "y")}) is None
    grown = merged(shard, "vat", "a", 0, {"c-2": (1, None, None)})
    assert grown is not None and set(grown.entries) == {"c-1", "c-2"}


def test_a_company_lands_in_the_same_shard_in_every_process() -> None:
    """The API and every replica must agree: another interpreter, with another string hash
    seed, puts each company in the same shard."""
    companies = [f"c-{n}" for n in range(200)]
    script = (
        "import sys; from consumers.listing import shard_of;"
        "print(' '.join(str(shard_of(c)) for c in sys.argv[1:]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, *companies],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.split() == [str(shard_of(c)) for c in companies]
    assert {shard_of(c) for c in companies} == set(range(SHARDS))


# ---------------------------------------------------------------- the owners keep them
async def test_each_owner_lists_what_the_overview_shows_of_its_aggregates() -> None:
    store = MemoryStore()
    batch = [f.details("2026-02-01T09:00"), f.submitted("2026-01", "2026-02-01T10:00")]
    for consumer in ("directory", "bookkeeping"):
        await pipeline(store, consumer).handle([delivery(m) for m in batch])
    company = await stored(store, "companies", CompanyEntry)
    bookkeeping = await stored(store, "bookkeeping", BookkeepingTab)
    assert await listed_entry(store, "companies") == (
        company.listed_version,
        *directory.listed(company),
    )
    assert company.listed_version == 1 and company.name == "Bageriet i Byn AB"
    assert await listed_entry(store, "bookkeeping") == (
        bookkeeping.listed_version,
        bookkeeping.latest_period,
        bookkeeping.latest_status,
        *("new", 1, "waiting", 1),  # the counts, flat, by status
    )
    assert bookkeeping.counts == {"new": 1, "waiting": 1}


async def test_a_write_that_changes_nothing_shown_writes_no_shard_and_keeps_its_version() -> None:
    store = MemoryStore()
    p = pipeline(store)
    await p.handle([delivery(f.details("2026-02-01T09:00"))])
    before = await stored(store, "bookkeeping", BookkeepingTab)
    saved: list[str] = []
    original = store.save

    async def counting_save(collection: str, writes: Sequence[Write]) -> set[str]:
        saved.append(collection)
        return await original(collection, writes)

    store.save = counting_save  # type: ignore[method-assign]
    # An upload changes the tab's header, not its periods.
    await p.handle([delivery(f.uploaded("2026-02-03T09:00"))])
    after = await stored(store, "bookkeeping", BookkeepingTab)
    assert after.header != before.header
    assert saved == ["bookkeeping"]
    assert after.listed_version == before.listed_version == 1
    await p.handle([delivery(f.submitted("2026-02", "2026-02-04T09:00"))])
    assert saved == ["bookkeeping", "bookkeeping", COLLECTION, COLLECTION]  # a shard, its head
    assert (await stored(store, "bookkeeping", BookkeepingTab)).listed_version == 3


async def test_a_listing_lost_in_a_crash_is_written_when_the_message_comes_again() -> None:
    store = MemoryStore()
    original = store.save

    async def crashing_save(collection: str, writes: Sequence[Write]) -> set[str]:
        if collection == COLLECTION:
            raise ConnectionError("the process died between the two writes")
        return await original(collection, writes)

    await pipeline(store).handle([delivery(f.details("2026-02-01T09:00"))])
    store.save = crashing_save  # type: ignore[method-assign]
    message = f.submitted("2026-01", "2026-02-01T10:00")
    (outcome,) = await pipeline(store).handle([delivery(message)])
    assert outcome.kind == "failed"  # not acked: it comes again
    assert (await stored(store, "bookkeeping", BookkeepingTab)).counts == {"new": 1, "waiting": 1}
    assert (await listed_entry(store, "bookkeeping"))[3:] == ("waiting", 2)  # as before it
    store.save = original  # type: ignore[method-assign]
    head_before = await head(store, "bookkeeping")
    (outcome,) = await pipeline(store).handle([delivery(message)])
    assert outcome.kind == "applied"
    entry = await listed_entry(store, "bookkeeping")
    assert entry is not None and entry[3:] == ("new", 1, "waiting", 1)
    assert await head(store, "bookkeeping") == {
        shard_of(f.COMPANY): head_before[shard_of(f.COMPANY)] + 1
    }


async def test_a_head_a_dead_writer_left_behind_is_raised_when_the_message_comes_again() -> None:
    store = MemoryStore()
    await pipeline(store).handle([delivery(f.details("2026-02-01T09:00"))])
    original = store.save
    writes: list[str] = []

    async def dying_save(collection: str, batch: Sequence[Write]) -> set[str]:
        if collection == COLLECTION and batch[0].key == head_key("bookkeeping", f.AGENCY):
            raise ConnectionError("the process died between the shard and its head")
        writes.extend(w.key for w in batch)
        return await original(collection, batch)

    store.save = dying_save  # type: ignore[method-assign]
    message = f.submitted("2026-01", "2026-02-01T10:00")
    (outcome,) = await pipeline(store).handle([delivery(message)])
    assert outcome.kind == "failed"
    shard = shard_key("bookkeeping", f.AGENCY, shard_of(f.COMPANY))
    assert shard in writes  # the shard holds the entry, its head does not say so
    assert await head(store, "bookkeeping") == {shard_of(f.COMPANY): 1}
    store.save = original  # type: ignore[method-assign]
    (outcome,) = await pipeline(store).handle([delivery(message)])
    assert outcome.kind == "applied"
    assert await head(store, "bookkeeping") == {shard_of(f.COMPANY): 2}


async def test_a_replica_listing_an_older_write_late_leaves_the_newer_entry() -> None:
    store = MemoryStore()
    newer_tab = tab.Tab(
        agency_id=f.AGENCY, company_id=f.COMPANY, counts={"done": 1}, listed_version=6
    )
    older_tab = tab.Tab(
        agency_id=f.AGENCY, company_id=f.COMPANY, counts={"new": 1}, listed_version=5
    )
    first, late = ListingWriter(store), ListingWriter(store)
    assert await first.put("bookkeeping", tab.listed, [Stored(6, newer_tab)]) == 1
    assert await late.put("bookkeeping", tab.listed, [Stored(5, older_tab)]) == 0
    assert (await listed_entry(store, "bookkeeping"))[3:] == ("done", 1)


async def test_a_shard_another_replica_wrote_meanwhile_is_read_again_and_merged() -> None:
    store = MemoryStore()
    mine, theirs = ListingWriter(store), ListingWriter(store)
    other = next(c for c in (f"c-{n}" for n in range(100)) if shard_of(c) == shard_of(f.COMPANY))
    first = tab.Tab(agency_id=f.AGENCY, company_id=other, counts={"new": 1}, listed_version=1)
    await mine.put("bookkeeping", tab.listed, [Stored(1, first)])  # mine holds the shard
    later = tab.Tab(agency_id=f.AGENCY, company_id=other, counts={"done": 1}, listed_version=2)
    await theirs.put("bookkeeping", tab.listed, [Stored(2, later)])  # my copy is stale now
    own = tab.Tab(agency_id=f.AGENCY, company_id=f.COMPANY, counts={"done": 2}, listed_version=1)
    assert await mine.put("bookkeeping", tab.listed, [Stored(1, own)]) == 1
    assert (await listed_entry(store, "bookkeeping"))[3:] == ("done", 2)
    assert (await listed_entry(store, "bookkeeping", other))[3:] == ("done", 1)


# ---------------------------------------------------------------- whatever happens
@st.composite
def deliveries(draw: st.DrawFn) -> list[tuple[int, list[Message]]]:
    """Batches of bookkeeping events for two companies, each to one of two replicas, in any
    order, with repeats."""
    instants = st.integers(0, 60 * 24 * 60).map(
        lambda m: (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=m)).isoformat()
    )
    companies = st.sampled_from([f.COMPANY, "c-1002"])
    periods = st.sampled_from(["2026-01", "2026-02", "2026-03"])
    events: list[Message] = [
        f.details("2026-01-01T08:00", company_id=c) for c in (f.COMPANY, "c-1002")
    ]
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["submitted", "status", "uploaded"]))
        company, at = draw(companies), draw(instants)
        if kind == "submitted":
            events.append(f.submitted(draw(periods), at, company_id=company))
        elif kind == "status":
            status = draw(st.sampled_from(["done", "in_progress", "waiting"]))
            events.append(f.set_status(draw(periods), status, at, company_id=company))
        else:
            events.append(f.uploaded(at, company_id=company))
    repeats = draw(st.lists(st.sampled_from(events), max_size=4))
    order = draw(st.permutations([*events, *repeats]))
    batches: list[tuple[int, list[Message]]] = []
    while order:
        size = draw(st.integers(1, 4))
        batches.append((draw(st.integers(0, 1)), order[:size]))
        order = order[size:]
    return batches


@settings(max_examples=60, deadline=None)
@given(deliveries())
def test_two_replicas_in_any_order_leave_the_listing_as_the_tabs_are(
    batches: list[tuple[int, list[Message]]],
) -> None:
    async def run() -> None:
        store = MemoryStore()
        replicas = [pipeline(store), pipeline(store)]  # each with copies the other makes stale
        for replica, batch in batches:
            outcomes = await replicas[replica].handle([delivery(m) for m in batch])
            assert {o.kind for o in outcomes} <= {"applied", "rejected"}
        for company in (f.COMPANY, "c-1002"):
            key = f"{f.AGENCY}/{company}"
            found = (await store.load("bookkeeping", BookkeepingTab, [key]))[key].state
            assert await listed_entry(store, "bookkeeping", company) == (
                found.listed_version,
                *tab.listed(found),
            )
        shards = {
            s.state.shard: s.version
            for s in (
                await store.load(COLLECTION, ListingShard, shard_keys("bookkeeping", f.AGENCY))
            ).values()
        }
        assert await head(store, "bookkeeping") == shards  # a reader misses no shard's write

    asyncio.run(run())


async def test_aggregates_stored_before_the_listings_are_listed_once_when_a_consumer_starts() -> (
    None
):
    store = MemoryStore()
    await pipeline(store).handle([delivery(f.details("2026-02-01T09:00"))])
    store.collections[COLLECTION].clear()  # as a database from before the listings
    assert await listed_entry(store, "bookkeeping") is None
    assert await pipeline(store).prepare() == {"bookkeeping": 1}
    found = await stored(store, "bookkeeping", BookkeepingTab)
    assert await listed_entry(store, "bookkeeping") == (found.listed_version, *tab.listed(found))
    assert await pipeline(store).prepare() == {}  # built: the next start reads nothing


def test_a_tabs_counts_are_read_from_its_entry_flat_and_as_listed_before() -> None:
    summary = tab.listed(tab.Tab(agency_id="a", company_id="c", counts={"late": 2, "done": 1}))
    entry = (7, *summary)
    assert entry[3:] == ("done", 1, "late", 2)  # by status: equal counts list equally
    assert tab.listed_counts(entry, 3) == {"done": 1, "late": 2}
    assert [tab.listed_count(entry, 3, s) for s in ("late", "done", "waiting")] == [2, 1, 0]
    # An entry listed before the counts were flat, until the owner lists its kind again.
    before = (7, "2026-01", "late", {"late": 2})
    assert tab.listed_counts(before, 3) == {"late": 2}
    assert tab.listed_count(before, 3, "late") == 2 and tab.listed_count(before, 3, "new") == 0
    assert tab.listed_counts((7, None, None), 3) == {}
