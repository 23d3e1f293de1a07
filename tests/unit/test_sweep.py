"""The passage of time on the in-memory store: a tick starts a sweep, which pages by
(due_at, _id) in steps, and a watermark spares the ticks that find nothing due."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from consumers.bookkeeping import BookkeepingTab
from services.pipeline import UNAVAILABLE, Pipeline
from services.store import StoreUnavailable
from services.store.memory import MemoryStore
from services.store.port import from_document, plain
from services.sweep import NEVER, NEXT_DUE, SWEEPS
from tests import factories as f
from tests.unit.test_pipeline import CONSUMERS, SECRET, WALL, delivery

UTC = dt.UTC


def companies(n: int) -> list[str]:
    return [f"c-{i:03d}" for i in range(n)]


async def fill(p: Pipeline, names: list[str], at: str = "2026-03-01T08:00") -> None:
    await p.handle([delivery(f.details(at, company_id=name)) for name in names])


async def sweep_all(p: Pipeline) -> list[int]:
    steps = []
    while p.sweeping:
        steps.append(await p.sweep_step())
    return steps


def statuses(store: MemoryStore, name: str) -> list[str]:
    document = plain(store.collections["bookkeeping"][f"{f.AGENCY}/{name}"], BookkeepingTab)
    return [row["status"] for row in document["periods"]]


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.due_queries: list[tuple[dt.datetime, int, Any]] = []
        self.since: list[Any] = []

    async def due(
        self, collection: str, now: dt.datetime, limit: int, after: Any = None, since: Any = None
    ) -> Any:
        self.due_queries.append((now, limit, after))
        self.since.append(since)
        return await super().due(collection, now, limit, after, since)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def pipeline(store: MemoryStore, *, chunk: int = 128, page: int = 2000) -> Pipeline:
    return Pipeline(
        CONSUMERS["bookkeeping"],
        store,
        lambda: WALL,
        tick_chunk=chunk,
        sweep_page=page,
        secret=SECRET,
    )


async def test_a_tick_is_applied_at_once_and_the_sweep_follows_in_steps(
    store: CountingStore,
) -> None:
    p = pipeline(store, chunk=2, page=3)
    names = companies(5)
    await fill(p, names)
    assert statuses(store, names[0]) == ["late", "waiting", "waiting"]

    (outcome,) = await p.handle([delivery(f.tick("2026-03-10T12:00"), "clock")])
    assert (outcome.kind, outcome.detail) == ("applied", {"sweeping": ["bookkeeping"]})
    assert statuses(store, names[0]) == ["late", "waiting", "waiting"]  # not yet swept

    # Pages of 3 keys, applied 2 at a time: 2+1 from the first page, 2 from the second.
    assert [n for n in await sweep_all(p) if n] == [2, 1, 2]
    for name in names:
        assert statuses(store, name) == ["late", "late", "waiting"]
    pages = [after for _, limit, after in store.due_queries if limit == 3]
    assert pages[0] is None
    assert pages[1] is not None and pages[1][1] == f"{f.AGENCY}/{names[2]}"


async def test_the_sweep_pages_in_due_order(store: CountingStore) -> None:
    p = pipeline(store, chunk=1, page=1)
    await fill(p, ["c-b"], "2026-03-01T08:00")
    await fill(p, ["c-a"], "2026-03-01T08:00")
    await p.handle([delivery(f.tick("2026-03-10T12:00"), "clock")])
    await sweep_all(p)
    afters = [after[1] for _, limit, after in store.due_queries if limit == 1 and after]
    assert afters[:2] == [f"{f.AGENCY}/c-a", f"{f.AGENCY}/c-b"]


async def test_ticks_before_the_watermark_query_nothing(store: CountingStore) -> None:
    p = pipeline(store)
    await fill(p, companies(3))
    await p.handle([delivery(f.tick("2026-03-01T09:00"), "clock")])
    await sweep_all(p)  # the watermark was unknown: this sweep finds nothing and sets it
    assert store.since == [None]  # ... asking the whole collection, once
    mark = store.collections[SWEEPS]["bookkeeping"][NEXT_DUE]
    assert mark == dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # the next Stockholm midnight
    store.due_queries.clear()

    (outcome,) = await p.handle([delivery(f.tick("2026-03-01T22:59"), "clock")])
    assert outcome.detail == {"sweeping": []}
    assert not p.sweeping and store.due_queries == []

    # Midnight: the collection is asked for that day only, and nothing is due until February's
    # deadline day (5 March, by the factory's submission day) ends.
    for day in ("2026-03-01T23:00", "2026-03-02T23:00", "2026-03-03T23:00", "2026-03-04T23:00"):
        (outcome,) = await p.handle([delivery(f.tick(day), "clock")])
        assert outcome.detail == {"sweeping": ["bookkeeping"]}
        await sweep_all(p)
    assert statuses(store, "c-000") == ["late", "waiting", "waiting"]
    assert store.since[-1] == dt.datetime(2026, 3, 4, 23, 0, tzinfo=UTC)
    (outcome,) = await p.handle([delivery(f.tick("2026-03-05T23:00"), "clock")])
    await sweep_all(p)
    assert statuses(store, "c-000") == ["late", "late", "waiting"]


async def test_a_write_of_an_earlier_due_lowers_the_watermark(store: CountingStore) -> None:
    p = pipeline(store)
    store.collections[SWEEPS] = {"bookkeeping": {"_id": "bookkeeping", NEXT_DUE: NEVER}}
    await fill(p, ["c-new"])
    mark = store.collections[SWEEPS]["bookkeeping"][NEXT_DUE]
    assert mark == dt.datetime(2026, 3, 5, 23, 0, tzinfo=UTC)
    (outcome,) = await p.handle([delivery(f.tick("2026-03-06T00:00"), "clock")])
    assert outcome.detail == {"sweeping": ["bookkeeping"]}


async def test_a_sweep_sets_the_watermark_no_later_than_the_next_midnight(
    store: CountingStore,
) -> None:
    p = pipeline(store)
    await p.handle([delivery(f.tick("2026-03-06T00:00"), "clock")])
    await sweep_all(p)  # an empty collection
    assert store.collections[SWEEPS]["bookkeeping"][NEXT_DUE] == dt.datetime(
        2026, 3, 6, 23, 0, tzinfo=UTC
    )


async def test_a_due_at_passes_only_when_something_shown_changes(store: CountingStore) -> None:
    p = pipeline(store)
    await fill(p, ["c-1"])
    document = store.collections["bookkeeping"][f"{f.AGENCY}/c-1"]
    assert document["due_day"] == "2026-03-06"  # the day that begins then, to find it by
    state = from_document(document, BookkeepingTab).state
    # Not every midnight: the next deadline day end (February's, 5 March) comes first.
    assert state.due_at == dt.datetime(2026, 3, 5, 23, 0, tzinfo=UTC)


async def test_a_store_that_does_not_answer_is_told_apart(store: CountingStore) -> None:
    store.fail_next = StoreUnavailable("no answer in 5 s")
    outcomes = await pipeline(store).handle([delivery(f.details())])
    assert [(o.kind, o.code) for o in outcomes] == [("failed", UNAVAILABLE)]


async def test_a_later_tick_extends_the_sweep_under_way(store: CountingStore) -> None:
    p = pipeline(store, chunk=1, page=1)
    await fill(p, companies(2))
    await p.handle([delivery(f.tick("2026-03-03T12:00"), "clock")])  # nothing due yet
    await p.sweep_step()
    await p.handle([delivery(f.tick("2026-03-10T12:00"), "clock")])
    await sweep_all(p)
    assert statuses(store, "c-001") == ["late", "late", "waiting"]


async def test_a_partition_sweeps_only_its_own_aggregates_with_a_watermark_of_its_own() -> None:
    """Two partitions of one consumer on one collection: a tick to one of them moves its own
    tabs and leaves the other's to the other (which alone writes them)."""
    shared = MemoryStore()

    def partition(number: int) -> Pipeline:
        return Pipeline(
            CONSUMERS["bookkeeping"], shared, lambda: WALL, secret=SECRET, partition=number
        )

    p0, p1 = partition(0), partition(1)
    await fill(p0, ["c-a"])
    await fill(p1, ["c-b"])
    await p0.handle([delivery(f.tick("2026-03-10T12:00"), "clock")])
    await sweep_all(p0)
    assert statuses(shared, "c-a") == ["late", "late", "waiting"]
    assert statuses(shared, "c-b") == ["late", "waiting", "waiting"]  # p1's, not yet ticked
    marks = shared.collections[SWEEPS]
    assert "bookkeeping@p0" in marks and "bookkeeping@p1" not in marks

    await p1.handle([delivery(f.tick("2026-03-10T12:00"), "clock")])
    await sweep_all(p1)
    assert statuses(shared, "c-b") == ["late", "late", "waiting"]
    assert {d["partition"] for d in shared.collections["bookkeeping"].values()} == {0, 1}
