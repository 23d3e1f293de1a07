"""The passage of time on the in-memory store: a tick starts a sweep, which reads what is due
through one cursor while it applies it in steps, and a watermark spares the ticks that find
nothing due."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from consumers.bookkeeping import BookkeepingTab
from services.pipeline import UNAVAILABLE, Outcome, Pipeline
from services.store import StoreUnavailable
from services.store.memory import MemoryStore
from services.store.port import VERSION_FIELD, from_document, plain
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


async def filled(store: MemoryStore, count: int, **settings: Any) -> tuple[Pipeline, list[str]]:
    """A pipeline on ``store``, with the tabs of ``count`` companies in it."""
    p = pipeline(store, **settings)
    names = companies(count)
    await fill(p, names)
    return p, names


async def tick(p: Pipeline, at: str = "2026-03-10T12:00") -> Outcome:
    (outcome,) = await p.handle([delivery(f.tick(at), "clock")])
    return outcome


def statuses(store: MemoryStore, name: str) -> list[str]:
    document = plain(store.collections["bookkeeping"][f"{f.AGENCY}/{name}"], BookkeepingTab)
    return [row["status"] for row in document["periods"]]


class CountingStore(MemoryStore):
    """Records each read of what is due, and how many batches it has handed over; a test may
    hold a read after its first batch (``gate``) or fail writes (``failing_saves``)."""

    def __init__(self) -> None:
        super().__init__()
        self.due_queries: list[tuple[dt.datetime, int, Any]] = []
        self.since: list[Any] = []
        self.handed = 0
        self.gate: asyncio.Event | None = None
        self.failing_saves = 0

    async def due(
        self,
        collection: str,
        now: dt.datetime,
        *,
        after: Any = None,
        since: Any = None,
        batch: int = 512,
    ) -> AsyncGenerator[list[tuple[dt.datetime, str]], None]:
        self.due_queries.append((now, batch, after))
        self.since.append(since)
        async for pairs in super().due(collection, now, after=after, since=since, batch=batch):
            yield pairs
            self.handed += 1
            if self.gate is not None:
                await self.gate.wait()

    async def save(self, collection: str, writes: Any) -> set[str]:
        if self.failing_saves:
            self.failing_saves -= 1
            raise StoreUnavailable("no answer in 5 s")
        return await super().save(collection, writes)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def pipeline(
    store: MemoryStore, *, chunk: int = 128, page: int = 512, wall: dt.datetime = WALL
) -> Pipeline:
    return Pipeline(
        CONSUMERS["bookkeeping"],
        store,
        lambda: wall,
        tick_chunk=chunk,
        sweep_page=page,
        secret=SECRET,
    )


async def test_a_tick_is_applied_at_once_and_the_sweep_follows_in_steps(
    store: CountingStore,
) -> None:
    p, names = await filled(store, 5, chunk=2, page=3)
    assert statuses(store, names[0]) == ["late", "waiting", "waiting"]

    outcome = await tick(p)
    assert (outcome.kind, outcome.detail) == ("applied", {"sweeping": ["bookkeeping"]})
    assert statuses(store, names[0]) == ["late", "waiting", "waiting"]  # not yet swept

    assert [n for n in await sweep_all(p) if n] == [2, 2, 1]
    for name in names:
        assert statuses(store, name) == ["late", "late", "waiting"]
    # One read through, in batches of 3, however many steps applied it; and at the end one
    # look for what another writer may have made due meanwhile, which finds nothing.
    assert store.due_queries == [(dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC), 3, None)] * 2
    assert store.handed == 2


async def test_a_step_applies_what_is_read_while_the_rest_is_still_being_read(
    store: CountingStore,
) -> None:
    p, names = await filled(store, 6, chunk=2, page=2)
    store.gate = asyncio.Event()  # the server is slow to hand over more than a first batch
    await tick(p)
    assert await asyncio.wait_for(p.sweep_step(), 5) == 2
    assert store.handed == 1
    assert [statuses(store, n)[1] for n in names] == ["late"] * 2 + ["waiting"] * 4
    store.gate.set()
    assert sum(await sweep_all(p)) == 4
    assert all(statuses(store, n)[1] == "late" for n in names)
    assert len(store.due_queries) == 2  # the read through, and the end's look


async def test_the_reader_keeps_only_so_many_keys_ahead_of_the_steps(
    store: CountingStore,
) -> None:
    p = pipeline(store, chunk=1, page=1)
    p.sweeper.ahead = 2
    await fill(p, companies(6))
    await tick(p)
    await p.sweep_step()
    assert store.handed <= 3  # 2 ahead, and the one applied
    assert sum(await sweep_all(p)) == 5


@pytest.mark.parametrize("failing", ["the read", "a chunk's write"])
async def test_a_step_that_fails_is_told_and_leaves_nothing_due_behind(
    store: CountingStore, failing: str
) -> None:
    """A read that fails: the next step reads again what is still due. A chunk that fails to
    apply: it goes back, for the next step."""
    p, names = await filled(store, 3, chunk=1)
    await tick(p)
    if failing == "the read":
        store.fail_next = StoreUnavailable("no answer in 5 s")
    else:
        store.failing_saves = 1
    with pytest.raises(StoreUnavailable):
        await p.sweep_step()
    assert p.sweeping
    assert sum(await sweep_all(p)) == 3
    assert all(statuses(store, n)[1] == "late" for n in names)
    assert store.collections[SWEEPS]["bookkeeping"][NEXT_DUE] > dt.datetime(
        2026, 3, 10, 12, 0, tzinfo=UTC
    )


async def test_forgetting_a_sweep_stops_its_reader(store: CountingStore) -> None:
    p = pipeline(store, chunk=1, page=1)
    await fill(p, companies(3))
    store.gate = asyncio.Event()
    await tick(p)
    await p.sweep_step()
    (reader,) = [s.reader for s in p.sweeper._sweeps.values()]
    assert reader is not None and not reader.done()
    p.forget()
    await asyncio.sleep(0)
    assert reader.cancelled() and not p.sweeping


async def test_ticks_before_the_watermark_query_nothing(store: CountingStore) -> None:
    p = pipeline(store)
    await fill(p, companies(3))
    await tick(p, "2026-03-01T09:00")
    await sweep_all(p)  # the watermark was unknown: this sweep finds nothing and sets it
    assert store.since == [None, None]  # ... asking the whole collection (and at its end)
    mark = store.collections[SWEEPS]["bookkeeping"][NEXT_DUE]
    assert mark == dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # the next Stockholm midnight
    store.due_queries.clear()

    outcome = await tick(p, "2026-03-01T22:59")
    assert outcome.detail == {"sweeping": []}
    assert not p.sweeping and store.due_queries == []

    # Midnight: the collection is asked for that day only, and nothing is due until February's
    # deadline day (5 March, by the factory's submission day) ends.
    for day in ("2026-03-01T23:00", "2026-03-02T23:00", "2026-03-03T23:00", "2026-03-04T23:00"):
        outcome = await tick(p, day)
        assert outcome.detail == {"sweeping": ["bookkeeping"]}
        await sweep_all(p)
    assert statuses(store, "c-000") == ["late", "waiting", "waiting"]
    assert store.since[-1] == dt.datetime(2026, 3, 4, 23, 0, tzinfo=UTC)
    outcome = await tick(p, "2026-03-05T23:00")
    await sweep_all(p)
    assert statuses(store, "c-000") == ["late", "late", "waiting"]


async def test_a_write_of_an_earlier_due_lowers_the_watermark(store: CountingStore) -> None:
    p = pipeline(store)
    store.collections[SWEEPS] = {"bookkeeping": {"_id": "bookkeeping", NEXT_DUE: NEVER}}
    await fill(p, ["c-new"])
    mark = store.collections[SWEEPS]["bookkeeping"][NEXT_DUE]
    assert mark == dt.datetime(2026, 3, 5, 23, 0, tzinfo=UTC)
    outcome = await tick(p, "2026-03-06T00:00")
    assert outcome.detail == {"sweeping": ["bookkeeping"]}


async def test_a_sweep_keeps_a_lowering_that_another_writer_made_while_it_ran(
    store: CountingStore,
) -> None:
    """A partition's replica letting go of it lowers the watermark while the one taking it over
    sweeps: the sweep's end does not write over that lowering, and the next tick reads back
    to it. Without the other writer, the same sweep raises the watermark to the next midnight,
    with a version, so the next lowering is guarded too."""
    p, _ = await filled(store, 3, chunk=1)
    await tick(p, "2026-03-01T09:00")
    await sweep_all(p)  # the watermark is known from here on
    await tick(p)
    await p.sweep_step()
    assert p.sweeping
    # Another writer's due_at, before the watermark the sweep began from (1 March's end).
    earlier = dt.datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    await store.lower(SWEEPS, "bookkeeping", NEXT_DUE, earlier)
    await sweep_all(p)
    assert store.collections[SWEEPS]["bookkeeping"][NEXT_DUE] == earlier
    outcome = await tick(p, "2026-03-10T12:01")
    assert outcome.detail == {"sweeping": ["bookkeeping"]}
    await sweep_all(p)
    mark = store.collections[SWEEPS]["bookkeeping"]
    assert mark[NEXT_DUE] == dt.datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    assert isinstance(mark[VERSION_FIELD], int)


async def test_a_sweep_finds_at_its_end_what_another_writer_made_due_after_its_reader_passed(
    store: CountingStore,
) -> None:
    """Another writer (a partition's replica letting go of it) writes a tab that was due before
    the tick, but not before the watermark, so its lowering changes nothing, after this sweep's
    reader has read everything due: the sweep's end lowers the watermark to it, and the next
    tick moves that tab on."""
    p, _ = await filled(store, 3, chunk=1)
    await tick(p, "2026-03-01T09:00")
    await sweep_all(p)  # the watermark: 1 March's end
    await tick(p)
    await p.sweep_step()  # the reader has read all three
    other = pipeline(store)
    await fill(other, ["c-late"])  # due at 5 March's end, before the tick of 10 March
    assert statuses(store, "c-late") == ["late", "waiting", "waiting"]
    await sweep_all(p)
    assert store.collections[SWEEPS]["bookkeeping"][NEXT_DUE] == dt.datetime(
        2026, 3, 5, 23, 0, tzinfo=UTC
    )
    assert (await tick(p, "2026-03-10T12:01")).detail == {"sweeping": ["bookkeeping"]}
    await sweep_all(p)
    assert statuses(store, "c-late") == ["late", "late", "waiting"]


async def test_a_sweep_sets_the_watermark_no_later_than_the_next_midnight(
    store: CountingStore,
) -> None:
    p = pipeline(store)
    await tick(p, "2026-03-06T00:00")
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
    later = dt.datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
    p, names = await filled(store, 3, chunk=1, wall=later)
    await tick(p)
    assert await p.sweep_step() == 1
    await tick(p, "2026-04-10T12:00")
    await sweep_all(p)

    alone = CountingStore()  # the same companies, swept once at the later tick
    q = pipeline(alone, wall=later)
    await fill(q, names)
    await tick(q, "2026-04-10T12:00")
    await sweep_all(q)
    assert statuses(alone, names[0])[2] == "late"  # March's deadline passed too
    assert [statuses(store, n) for n in names] == [statuses(alone, n) for n in names]
    # The extension read on from the first tick rather than reading it all again.
    first, later, end = (at for at, _, _ in store.due_queries)
    assert store.due_queries[1][2] == first and later > first
    assert end == later and store.due_queries[2][2] is None  # the end's look, from the mark


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
    await tick(p0)
    await sweep_all(p0)
    assert statuses(shared, "c-a") == ["late", "late", "waiting"]
    assert statuses(shared, "c-b") == ["late", "waiting", "waiting"]  # p1's, not yet ticked
    marks = shared.collections[SWEEPS]
    assert "bookkeeping@p0" in marks and "bookkeeping@p1" not in marks

    await tick(p1)
    await sweep_all(p1)
    assert statuses(shared, "c-b") == ["late", "late", "waiting"]
    assert {d["partition"] for d in shared.collections["bookkeeping"].values()} == {0, 1}
