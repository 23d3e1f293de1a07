"""Batches under way at once (services/pipeline.py, services/runner.py): a later one is decoded,
loaded and applied while the store still writes an earlier one, takes up an aggregate the
earlier one holds only once that one has written it, and is acked only after it. As many are
under way as the prefetch holds. Whatever the interleaving, the tabs and the listing come out
as they do one batch at a time (a hypothesis property)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.bookkeeping import BookkeepingTab
from consumers.listing import COLLECTION as LISTINGS
from consumers.listing import ListingShard
from consumers.registry import CONSUMERS
from contracts.envelope import Message
from contracts.registry import encode
from services.config import Settings
from services.pipeline import Delivery, Pipeline, run_all
from services.runner import ConsumerRunner
from services.store import Stored, Write
from services.store.memory import MemoryStore
from services.store.port import from_document
from services.topology import ACCOUNTING_EXCHANGE
from tests import factories as f

WALL = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def key(company: str) -> str:
    return f"{f.AGENCY}/{company}"


class GatedStore(MemoryStore):
    """A store whose first write of tabs waits for ``gate``, and that tells what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gated = False
        self.asked: list[tuple[str, str, tuple[str, ...]]] = []  # (what, collection, keys)
        self.conflicts: list[set[str]] = []

    async def load(
        self, collection: str, state_type: type[Any], keys: Iterable[str]
    ) -> dict[str, Stored]:
        keys = list(keys)
        self.asked.append(("load", collection, tuple(keys)))
        return await super().load(collection, state_type, keys)

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        keys = tuple(w.key for w in writes)
        if collection == "bookkeeping" and not self.gated:
            self.gated = True
            self.asked.append(("save waits", collection, keys))
            await self.gate.wait()
        conflicts = await super().save(collection, writes)
        self.asked.append(("saved", collection, keys))
        self.conflicts.append(conflicts)
        return conflicts


def deliveries(messages: Iterable[Message]) -> list[Delivery]:
    return [Delivery(encode(m), "event", m.type) for m in messages]


def submissions(period: str, at: str, *companies: str) -> list[Delivery]:
    """Each company's submission of ``period`` at ``at``."""
    return deliveries(f.submitted(period, at, company_id=c) for c in companies)


async def turns(count: int = 50) -> None:
    """Lets the event loop run ``count`` times without any time passing."""
    for _ in range(count):
        await asyncio.sleep(0)


async def stored_companies(companies: Sequence[str]) -> GatedStore:
    """A gated store that holds the companies' tabs."""
    gated = GatedStore()
    gated.gated = True  # not the set-up's write
    setup = Pipeline(CONSUMERS["bookkeeping"], gated, lambda: WALL)
    details = [f.details("2026-01-02T08:00", company_id=c) for c in companies]
    assert {o.kind for o in await setup.handle(deliveries(details))} == {"applied"}
    gated.gated = False
    gated.asked.clear()
    gated.conflicts.clear()
    return gated


def periods(state: Any) -> set[str]:
    assert isinstance(state, BookkeepingTab)
    return set(state.facts)


async def test_a_later_batch_is_applied_and_written_while_the_earlier_one_is_written() -> None:
    store = await stored_companies(["c-1", "c-2", "c-3"])
    pipeline = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)  # nothing cached
    earlier = asyncio.create_task(
        pipeline.handle(submissions("2026-01", "2026-02-01T09:00", "c-1", "c-2"))
    )
    await turns()
    assert store.asked[-1] == ("save waits", "bookkeeping", (key("c-1"), key("c-2")))
    asked_before = len(store.asked)
    later = asyncio.create_task(
        pipeline.handle(submissions("2026-02", "2026-03-02T09:00", "c-2", "c-3"))
    )
    await turns()
    # The aggregate that only the later batch touches is loaded and written while the earlier
    # one writes; the one both touch waits for the earlier batch.
    assert store.asked[asked_before:] == [
        ("load", "bookkeeping", (key("c-3"),)),
        ("saved", "bookkeeping", (key("c-3"),)),
    ]
    assert not later.done()
    store.gate.set()
    assert [o.kind for o in await earlier] == ["applied"] * 2
    assert [o.kind for o in await later] == ["applied"] * 2
    # The shared aggregate came from the earlier batch's write, not from a second read, and no
    # write lost a race against the other batch.
    assert not any(
        what == "load" and key("c-2") in keys for what, _, keys in store.asked[asked_before:]
    )
    assert all(not conflicts for conflicts in store.conflicts)
    tabs = await store.load("bookkeeping", BookkeepingTab, [key(c) for c in ("c-1", "c-2", "c-3")])
    assert periods(tabs[key("c-1")].state) == {"2026-01"}
    assert periods(tabs[key("c-2")].state) == {"2026-01", "2026-02"}
    assert periods(tabs[key("c-3")].state) == {"2026-02"}


async def test_batches_without_a_shared_aggregate_write_at_once_and_list_both() -> None:
    store = await stored_companies(["c-1", "c-2"])
    pipeline = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    earlier = asyncio.create_task(
        pipeline.handle(submissions("2026-01", "2026-02-01T09:00", "c-1"))
    )
    await turns()
    later = asyncio.create_task(pipeline.handle(submissions("2026-01", "2026-02-01T09:00", "c-2")))
    await turns()
    # The later batch's tab is written while the earlier one's write still waits.
    assert ("saved", "bookkeeping", (key("c-2"),)) in store.asked
    assert not earlier.done()
    store.gate.set()
    assert [o.kind for o in await earlier] == [o.kind for o in await later] == ["applied"]
    # No write lost a race to the other batch, and both tabs' statuses are listed.
    assert all(not conflicts for conflicts in store.conflicts)
    listed = {
        company
        for document in store.collections[LISTINGS].values()
        if "entries" in document
        for company in from_document(document, ListingShard).state.entries
    }
    assert {"c-1", "c-2"} <= listed


class ListingGatedStore(GatedStore):
    """A store whose first write of listing shards waits for ``listing_gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.listing_gate = asyncio.Event()
        self.listing_gated = False

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        if collection == LISTINGS and not self.listing_gated:
            self.listing_gated = True
            self.asked.append(("listing waits", collection, tuple(w.key for w in writes)))
            await self.listing_gate.wait()
        return await super().save(collection, writes)


async def test_a_shared_aggregate_is_taken_up_once_written_while_the_earlier_listing_waits() -> (
    None
):
    store = ListingGatedStore()
    setup = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    details = [f.details("2026-01-02T08:00", company_id=c) for c in ("c-1", "c-2")]
    store.listing_gated = store.gated = True  # not the set-up's writes
    assert {o.kind for o in await setup.handle(deliveries(details))} == {"applied"}
    store.listing_gated = store.gated = False
    store.gate.set()  # tabs are written at once; the first listing write waits
    pipeline = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    earlier = asyncio.create_task(
        pipeline.handle(submissions("2026-01", "2026-02-01T09:00", "c-1", "c-2"))
    )
    await turns()
    assert store.asked[-1][0] == "listing waits"
    later = asyncio.create_task(pipeline.handle(submissions("2026-02", "2026-03-02T09:00", "c-2")))
    await turns()
    # The later batch wrote the tab both batches share while the earlier one's listing waits.
    assert store.asked[-1] == ("saved", "bookkeeping", (key("c-2"),))
    assert not earlier.done() and not later.done()
    store.listing_gate.set()
    assert [o.kind for o in await earlier] == ["applied"] * 2
    assert [o.kind for o in await later] == ["applied"]
    tabs = await store.load("bookkeeping", BookkeepingTab, [key("c-2")])
    assert periods(tabs[key("c-2")].state) == {"2026-01", "2026-02"}
    # Both batches changed what the overview shows of it; the later write is the one listed.
    assert listed(store)["c-2"][0] == tabs[key("c-2")].state.listed_version == 3


class WatermarkGatedStore(MemoryStore):
    """A store whose sweep watermark writes wait for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.listing_written = False

    async def lower(self, collection: str, id: str, field: str, value: dt.datetime) -> None:
        await self.gate.wait()
        await super().lower(collection, id, field, value)

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        conflicts = await super().save(collection, writes)
        self.listing_written |= collection == LISTINGS
        return conflicts


async def test_a_batch_writes_its_listing_while_its_sweep_watermark_is_written() -> None:
    store = WatermarkGatedStore()
    pipeline = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    handled = asyncio.create_task(
        pipeline.handle(deliveries([f.details("2026-01-02T08:00", company_id="c-1")]))
    )
    await turns()
    assert store.listing_written and not handled.done()
    store.gate.set()
    assert [o.kind for o in await handled] == ["applied"]


async def test_steps_at_once_all_end_before_the_first_failure_is_raised() -> None:
    ended: list[str] = []

    async def fails() -> None:
        raise ConnectionError("store gone")

    async def slow() -> None:
        await turns(5)
        ended.append("slow")

    try:
        await run_all([fails(), slow()])
    except ConnectionError as error:
        assert str(error) == "store gone"
    else:
        raise AssertionError("the failure was not raised")
    assert ended == ["slow"]


class Incoming:
    """A delivery as aio-pika hands it over, recording how it is settled."""

    exchange = ACCOUNTING_EXCHANGE
    headers = None
    reply_to = None
    correlation_id = None
    message_id = None

    def __init__(self, message: Message, settled: list[str], fail_ack: bool = False) -> None:
        self.body = encode(message)
        self.routing_key = message.type
        self.name = getattr(message, "company_id", "")
        self.settled = settled
        self.fail_ack = fail_ack

    async def ack(self, multiple: bool = False) -> None:
        if self.fail_ack:
            raise ConnectionError("channel closed")
        self.settled.append(f"ack {self.name}{' and before' if multiple else ''}")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append(f"nack {self.name}{' requeued' if requeue else ''}")


class Channel:
    is_closed = True  # the relay has nothing to publish on


async def runner_with_gated_store() -> tuple[ConsumerRunner, GatedStore]:
    store = await stored_companies(["c-1", "c-2"])
    return ConsumerRunner(CONSUMERS["bookkeeping"], Settings(), store), store


async def test_a_later_batch_is_acked_only_after_the_earlier_one() -> None:
    runner, store = await runner_with_gated_store()
    settled: list[str] = []
    stop = asyncio.Event()
    channel: Any = Channel()
    first: list[Any] = [
        Incoming(f.submitted("2026-01", "2026-02-01T09:00", company_id="c-1"), settled)
    ]
    second: list[Any] = [
        Incoming(f.submitted("2026-01", "2026-02-01T09:00", company_id="c-2"), settled)
    ]
    earlier = asyncio.create_task(runner._process(channel, first, stop))
    await turns()
    later = asyncio.create_task(runner._process(channel, second, stop, earlier))
    await turns(200)
    assert ("saved", "bookkeeping", (key("c-2"),)) in store.asked  # applied and written...
    assert settled == [] and not later.done()  # ...but an ack would cover the earlier batch
    store.gate.set()
    assert await earlier and await later
    assert settled == ["ack c-1 and before", "ack c-2 and before"]


async def test_a_later_batch_goes_back_to_the_queue_when_the_earlier_one_failed() -> None:
    runner, store = await runner_with_gated_store()
    settled: list[str] = []
    stop = asyncio.Event()
    channel: Any = Channel()
    failing = Incoming(f.submitted("2026-01", "2026-02-01T09:00", company_id="c-1"), settled, True)
    later_one = Incoming(f.submitted("2026-01", "2026-02-01T09:00", company_id="c-2"), settled)
    earlier = asyncio.create_task(runner._process(channel, [failing], stop))  # type: ignore[list-item]
    await turns()
    later = asyncio.create_task(runner._process(channel, [later_one], stop, earlier))  # type: ignore[list-item]
    store.gate.set()
    await asyncio.wait({earlier})
    assert isinstance(earlier.exception(), ConnectionError)
    # Its ack (multiple) would have acknowledged the earlier batch's deliveries too.
    assert await later is False
    assert settled == ["nack c-2 requeued"]


def submitted_by(company: str, settled: list[str]) -> list[Any]:
    return [Incoming(f.submitted("2026-01", "2026-02-01T09:00", company_id=company), settled)]


@pytest.mark.parametrize("batches_held", [2, 3])
async def test_as_many_batches_are_under_way_as_the_prefetch_holds(batches_held: int) -> None:
    store = await stored_companies(["c-1", "c-2", "c-3"])
    settings = Settings(batch_size=1, prefetch=batches_held)
    runner = ConsumerRunner(CONSUMERS["bookkeeping"], settings, store)
    settled: list[str] = []
    stop = asyncio.Event()
    channel: Any = Channel()
    companies = ["c-1", "c-2", "c-3"][:batches_held]
    for company in companies[:-1]:  # room for each while the first write waits
        await asyncio.wait_for(runner._hand_over(channel, submitted_by(company, settled), stop), 1)
    last = asyncio.create_task(
        runner._hand_over(channel, submitted_by(companies[-1], settled), stop)
    )
    await turns(300)
    # Every later batch's tab is written; the last hand-over waits for the first batch, which
    # still waits for the store, and nothing is acked before it.
    assert {("saved", "bookkeeping", (key(c),)) for c in companies[1:]} <= set(store.asked)
    assert not last.done() and settled == []
    store.gate.set()
    await last
    await runner._finish_under_way()
    assert settled == [f"ack {c} and before" for c in companies]


class YieldingStore(MemoryStore):
    """A store that lets other tasks run inside each load and save, a drawn number of times:
    two batches under way then interleave in many ways."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.random = random.Random(seed)

    async def _yield(self) -> None:
        for _ in range(self.random.randrange(4)):
            await asyncio.sleep(0)

    async def load(
        self, collection: str, state_type: type[Any], keys: Iterable[str]
    ) -> dict[str, Stored]:
        await self._yield()
        return await super().load(collection, state_type, keys)

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        await self._yield()
        return await super().save(collection, writes)


LATE_WALL = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)  # after every drawn event


async def applied(batches: list[list[Message]], store: MemoryStore, overlap: bool) -> None:
    """Hands ``batches`` over as the runner does: one at a time, or the next while those
    before are under way (at most three, as the default prefetch holds)."""
    pipeline = Pipeline(CONSUMERS["bookkeeping"], store, lambda: LATE_WALL)
    under_way: list[asyncio.Task[Any]] = []
    for batch in batches:
        task = asyncio.create_task(pipeline.handle(deliveries(batch)))
        if not overlap:
            await task
            continue
        under_way.append(task)
        if len(under_way) == Settings().prefetch // Settings().batch_size:
            await under_way.pop(0)
    for task in under_way:
        await task


def listed(store: MemoryStore) -> dict[str, Any]:
    return {
        company: entry
        for document in store.collections.get(LISTINGS, {}).values()
        if "entries" in document
        for company, entry in from_document(document, ListingShard).state.entries.items()
    }


@st.composite
def batched_events(draw: st.DrawFn) -> list[list[Message]]:
    companies = ["c-1", "c-2", "c-3"]
    events: list[Message] = [f.details("2026-01-02T08:00", company_id=c) for c in companies]
    for _ in range(draw(st.integers(0, 30))):
        company = draw(st.sampled_from(companies))
        at = f"2026-{draw(st.integers(2, 12)):02d}-{draw(st.integers(1, 28)):02d}T09:00"
        if draw(st.booleans()):
            period = f"2026-{draw(st.integers(1, 11)):02d}"
            events.append(f.submitted(period, at, company_id=company))
        else:
            events.append(f.uploaded(at, company_id=company))
    events = draw(st.permutations(events))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=8)))
    edges = [0, *cuts, len(events)]
    return [events[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=120, deadline=None)
@given(batched_events(), st.integers(0, 2**32))
def test_batches_under_way_leave_what_one_at_a_time_leaves(
    batches: list[list[Message]], seed: int
) -> None:
    one_at_a_time, overlapping = MemoryStore(), YieldingStore(seed)
    asyncio.run(applied(batches, one_at_a_time, overlap=False))
    asyncio.run(applied(batches, overlapping, overlap=True))
    assert overlapping.collections["bookkeeping"] == one_at_a_time.collections["bookkeeping"]
    assert listed(overlapping) == listed(one_at_a_time)


class SlowCountsStore(MemoryStore):
    """A store whose counters' writes wait for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.increments = 0

    async def increment(self, collection: str, id: str, counts: dict[str, int]) -> None:
        self.increments += 1
        await self.gate.wait()
        await super().increment(collection, id, counts)


async def test_a_batch_is_acked_without_waiting_for_the_counters_and_every_count_lands() -> None:
    store = SlowCountsStore()
    runner = ConsumerRunner(CONSUMERS["bookkeeping"], Settings(), store)
    settled: list[str] = []
    stop = asyncio.Event()
    channel: Any = Channel()
    for company in ("c-1", "c-2", "c-3"):
        batch: list[Any] = [Incoming(f.details("2026-01-02T08:00", company_id=company), settled)]
        async with asyncio.timeout(5):
            assert await runner._process(channel, batch, stop)  # the counters' write waits
    assert settled == [f"ack {c} and before" for c in ("c-1", "c-2", "c-3")]
    assert store.increments == 1  # one write under way; the later counts wait for it
    store.gate.set()
    async with asyncio.timeout(5):
        await runner._counted()
    assert store.increments == 2  # the first batch's count, then the two that came meanwhile
    (counts,) = store.collections["consumer_stats"].values()
    assert counts["applied"] == 3
