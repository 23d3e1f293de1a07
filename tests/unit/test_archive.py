"""Settled years packed (consumers/archive.py): a tab's cost stays flat as the company ages, and
packing changes nothing anyone sees: the rows, counts, history and outbound events are those
of the same tab kept whole, in any order of its messages."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import bookkeeping, payroll, vat
from consumers.archive import loaded, unpacked
from consumers.bookkeeping import BookkeepingTab
from consumers.deadlines import bookkeeping_submission_deadline
from consumers.outbound import outbound
from consumers.payroll import PayrollTab
from consumers.registry import CONSUMERS
from consumers.rulebook import Rulebook
from consumers.vat import VatTab
from contracts.envelope import Message
from contracts.outbound import StatusChanged
from services.pipeline import Pipeline
from services.store import Write
from services.store.memory import MemoryStore
from services.store.port import plain
from tests import factories as f
from tests.unit.test_ordering_properties import in_order, replay, shuffled_with_duplicates
from tests.unit.test_pipeline import SECRET, delivery

FIRST = 2023
YEARS = [str(y) for y in range(FIRST, 2027)]


@contextmanager
def kept_whole() -> Iterator[None]:
    """The tabs as they were before years were packed: the reference packing must not change."""
    types = (BookkeepingTab, PayrollTab, VatTab)
    for tab_type in types:
        tab_type.PACKS_YEARS = False
    try:
        yield
    finally:
        for tab_type in types:
            tab_type.PACKS_YEARS = True


def whole(rulebook: Rulebook[Any], messages: Sequence[Message], state: Any = None) -> Any:
    with kept_whole():
        return replay(rulebook, messages, state)


def company(at: str = "2023-01-02T08:00", **changes: Any) -> Message:
    return f.details(
        at, fiscal_year_start=f"{FIRST}-01-01", fiscal_year_end=f"{FIRST}-12-31", **changes
    )


def months(first: int = FIRST, last: int = 2025) -> list[str]:
    return [f"{y}-{m:02d}" for y in range(first, last + 1) for m in range(1, 13)]


def submissions(periods: Sequence[str]) -> list[Message]:
    """Each period submitted a few days after its month."""
    found = []
    for period in periods:
        year, month = int(period[:4]), int(period[5:])
        after = dt.date(year + month // 12, month % 12 + 1, 3)
        found.append(f.submitted(period, f"{after.isoformat()}T09:00"))
    return found


# ---------------------------------------------------------------- bookkeeping, by example
def test_settled_years_are_packed_and_the_tab_shows_them_as_before() -> None:
    messages = [company(), *submissions(months())]
    state = replay(bookkeeping.RULEBOOK, [*messages, f.tick("2026-03-20T12:00")])
    reference = whole(bookkeeping.RULEBOOK, [*messages, f.tick("2026-03-20T12:00")])
    assert list(state.archive) == ["2023", "2024", "2025"]
    assert [row.period for row in state.periods] == ["2026-01", "2026-02", "2026-03"]
    assert not any(key < "2026" for key in state.facts)
    assert state.counts == reference.counts == {"new": 36, "late": 2, "waiting": 1}
    assert unpacked(state) == reference


def test_a_year_with_a_period_on_the_clients_to_do_list_stays_unpacked() -> None:
    periods = [p for p in months() if p != "2024-05"]  # never submitted: late
    state = replay(
        bookkeeping.RULEBOOK,
        [company(), *submissions(periods), f.tick("2026-03-20T12:00")],
    )
    assert list(state.archive) == ["2023", "2025"]
    assert "2024-05" in state.client_todo
    assert [r.period for r in state.periods][:12] == months(2024, 2024)


def test_a_status_for_a_packed_period_opens_its_year_and_packs_it_again() -> None:
    messages = [company(), *submissions(months()), f.tick("2026-03-20T12:00")]
    before = replay(bookkeeping.RULEBOOK, messages)
    command = f.set_status("2024-05", "done", "2026-03-21T10:00")
    after = bookkeeping.RULEBOOK.apply(before, command, command.occurred_at)
    assert list(after.archive) == ["2023", "2024", "2025"]
    assert after.archive["2023"] is before.archive["2023"]  # untouched years ride along
    assert after.archive["2024"] != before.archive["2024"]
    assert after.counts == {"new": 35, "done": 1, "late": 2, "waiting": 1}
    assert unpacked(after) == whole(bookkeeping.RULEBOOK, [*messages, command])
    (told,) = outbound("bookkeeping", before, after, command, f.at("2026-03-21T10:00"), f.next_id)
    assert isinstance(told, StatusChanged)
    assert (told.period, told.from_, told.to) == ("2024-05", "new", "done")
    assert told.cause.command_id == command.id


def test_sending_a_packed_period_back_to_the_client_unpacks_it_for_good() -> None:
    messages = [company(), *submissions(months()), f.tick("2026-03-20T12:00")]
    before = replay(bookkeeping.RULEBOOK, messages)
    command = f.set_status("2024-05", "late", "2026-03-21T10:00")
    after = bookkeeping.RULEBOOK.apply(before, command, command.occurred_at)
    assert list(after.archive) == ["2023", "2025"]
    assert "2024-05" in after.client_todo
    kinds = [type(m).__name__ for m in outbound("bookkeeping", before, after, command, WALL, ids())]
    assert kinds == ["StatusChanged", "ClientActionRequired"]


def test_a_change_of_the_company_works_every_packed_year_out_again() -> None:
    messages = [company(), *submissions(months()), f.tick("2026-03-20T12:00")]
    before = replay(bookkeeping.RULEBOOK, messages)
    moved = company("2026-03-21T08:00", submission_day=5)
    after = bookkeeping.RULEBOOK.apply(before, moved, moved.occurred_at)
    assert list(after.archive) == ["2023", "2024", "2025"]
    assert unpacked(after) == whole(bookkeeping.RULEBOOK, [*messages, moved])
    assert all(
        row.deadline == bookkeeping_submission_deadline(row.period, 5)
        for row in unpacked(after).periods
    )


def test_the_tab_a_message_reads_and_writes_stays_the_same_size_as_the_company_ages() -> None:
    """Packed years are bytes the message carries through; what it decodes, works out and
    encodes is the year not packed."""

    def worked(years: int) -> tuple[int, int]:
        first = 2026 - years
        details = f.details(
            f"{first}-01-02T08:00",
            fiscal_year_start=f"{first}-01-01",
            fiscal_year_end=f"{first}-12-31",
        )
        state = replay(
            bookkeeping.RULEBOOK,
            [details, *submissions(months(first, 2025)), f.tick("2026-03-20T12:00")],
        )
        rest = msgspec.structs.replace(state, archive={})
        return len(state.periods), len(msgspec.json.encode(rest))

    one, ten = worked(1), worked(10)
    assert one[0] == ten[0] == 3
    assert ten[1] <= one[1] * 1.1


# ---------------------------------------------------------------- VAT and payroll, by example
def test_a_vat_period_running_into_the_next_year_stays_unpacked() -> None:
    broken = f.details(
        "2023-01-02T08:00",
        vat_frequency="yearly",
        fiscal_year_start="2023-07-01",
        fiscal_year_end="2024-06-30",
    )
    reported = [
        f.vat_reported(f"{y}-07-01", f"{y + 1}-06-30", f"{y + 1}-09-01T10:00") for y in (2023, 2024)
    ]
    state = replay(vat.RULEBOOK, [broken, *reported, f.tick("2026-03-20T12:00")])
    assert state.archive == {}
    assert unpacked(state) == state


def test_monthly_vat_packs_its_settled_years() -> None:
    messages: list[Message] = [company(vat_frequency="monthly")]
    for period in months(2023, 2024):
        messages.append(reported_month(period, f"{period}-28T10:00"))
    messages.append(f.tick("2026-03-20T12:00"))
    state = replay(vat.RULEBOOK, messages)
    # 2022's returns still due when tracking began show, late; so does every month of 2025.
    assert list(state.archive) == ["2022", "2023", "2024", "2025"]
    assert state.counts == {"late": 15, "done": 24, "new": 1, "waiting": 1}
    assert unpacked(state) == whole(vat.RULEBOOK, messages)


def reported_month(period: str, at: str) -> Message:
    start = dt.date.fromisoformat(f"{period}-01")
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return f.vat_reported(start.isoformat(), end.isoformat(), at)


def test_payroll_shows_the_latest_completed_month_from_a_packed_year() -> None:
    messages = [
        company(),
        f.payroll_completed("2024-11", "2024-12-01T10:00", employees=7),
        f.tick("2026-03-20T12:00"),
    ]
    state = replay(payroll.RULEBOOK, messages)
    assert "2024" in state.archive
    assert state.header.latest_completed_month == "2024-11"
    assert state.header.employees == 7
    assert unpacked(state) == whole(payroll.RULEBOOK, messages)


# ---------------------------------------------------------------- properties
WALL = f.at("2026-10-15T12:00")


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"id-{next(counter)}"


def instant_after(draw: st.DrawFn, period: str) -> str:
    """An instant after ``period``'s month (a consultant acts on a month that has begun)."""
    start = dt.datetime(int(period[:4]), int(period[5:]), 1, tzinfo=dt.UTC)
    minutes = draw(st.integers(0, int((WALL - start).total_seconds() // 60) - 1))
    return (start + dt.timedelta(minutes=minutes)).isoformat()


@st.composite
def aging_bookkeeping(draw: st.DrawFn) -> list[Message]:
    """Most months of three years submitted, some again and some late; consultants' statuses
    on old and new periods; the company's details changed now and then."""
    periods = months(FIRST, 2026)[:-3]
    missing = draw(st.sets(st.sampled_from(periods), max_size=4))
    events = submissions([p for p in periods if p not in missing])
    for _ in range(draw(st.integers(0, 4))):
        period = draw(st.sampled_from(periods))
        events.append(f.submitted(period, instant_after(draw, period)))
    for _ in range(draw(st.integers(0, 5))):
        period = draw(st.sampled_from(periods))
        status = draw(st.sampled_from(["waiting", "late", "new", "in_progress", "done"]))
        events.append(f.set_status(period, status, instant_after(draw, period)))
    for _ in range(draw(st.integers(0, 2))):
        day = draw(st.integers(1, 28))
        events.append(company(instant_after(draw, "2023-02"), submission_day=day))
    events += [f.tick(instant_after(draw, "2023-02")) for _ in range(draw(st.integers(0, 3)))]
    return events


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_bookkeeping_packed_in_any_order_is_the_tab_kept_whole(data: st.DataObject) -> None:
    start = replay(bookkeeping.RULEBOOK, [company(), f.tick("2023-01-20T12:00")])
    events = data.draw(aging_bookkeeping())
    delivered = shuffled_with_duplicates(data.draw, events)
    final = f.tick("2026-10-15T12:00")
    packed = replay(bookkeeping.RULEBOOK, [*delivered, final], start)
    assert packed == replay(bookkeeping.RULEBOOK, [*in_order(events), final], start)
    assert unpacked(packed) == whole(bookkeeping.RULEBOOK, [*delivered, final], start)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_packed_years_tell_the_same_outbound_events_as_the_tab_kept_whole(
    data: st.DataObject,
) -> None:
    """After every message: the tab equals itself worked out again, and what it tells the
    outside world is what the tab kept whole tells."""
    start = replay(bookkeeping.RULEBOOK, [company(), f.tick("2023-01-20T12:00")])
    packed_tab, whole_tab = start, start
    for message in shuffled_with_duplicates(data.draw, data.draw(aging_bookkeeping())):
        now = message.occurred_at
        after = bookkeeping.RULEBOOK.apply(packed_tab, message, now)
        assert after == bookkeeping.evaluate(after, after.now)
        with kept_whole():
            after_whole = bookkeeping.RULEBOOK.apply(whole_tab, message, now)
        told = outbound("bookkeeping", packed_tab, after, message, WALL, ids())
        assert told == outbound("bookkeeping", whole_tab, after_whole, message, WALL, ids())
        packed_tab, whole_tab = after, after_whole
    assert unpacked(packed_tab) == whole_tab


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_payroll_and_vat_packed_in_any_order_are_the_tabs_kept_whole(
    data: st.DataObject,
) -> None:
    periods = months(FIRST, 2026)[:-3]
    frequency = data.draw(st.sampled_from(["monthly", "quarterly"]))
    events: list[Message] = []
    for period in data.draw(st.lists(st.sampled_from(periods), max_size=12)):
        events.append(f.payroll_completed(period, instant_after(data.draw, period)))
    for period in data.draw(st.lists(st.sampled_from(periods), max_size=3)):
        status = data.draw(st.sampled_from(["waiting", "done"]))
        events.append(f.payroll_status(period, status, instant_after(data.draw, period)))
    for period in data.draw(st.lists(st.sampled_from(periods), max_size=30)):
        events.append(reported_month(period, instant_after(data.draw, period)))
    if data.draw(st.booleans()):
        events.append(company(instant_after(data.draw, "2024-01"), vat_frequency="quarterly"))
    events.append(f.tick(instant_after(data.draw, "2023-02")))
    delivered = shuffled_with_duplicates(data.draw, events)
    final = f.tick("2026-10-15T12:00")
    for rulebook in (payroll.RULEBOOK, vat.RULEBOOK):
        # Consultants act on companies the tab knows: start from one it knows.
        start = replay(rulebook, [company(vat_frequency=frequency), f.tick("2023-01-20T12:00")])
        mine = [m for m in delivered if m.type in rulebook.handles]
        packed = replay(rulebook, [*mine, final], start)
        assert packed == replay(rulebook, [*in_order(mine), final], start)
        assert unpacked(packed) == whole(rulebook, [*mine, final], start)


# ---------------------------------------------------------------- through the pipeline
PIPELINE_WALL = f.at("2026-10-15T12:00")
KEY = f"{f.AGENCY}/{f.COMPANY}"


def pipeline(store: MemoryStore) -> Pipeline:
    """A consumer process of its own: nothing cached from another."""
    return Pipeline(CONSUMERS["bookkeeping"], store, lambda: PIPELINE_WALL, secret=SECRET)


def source(message: Message) -> Any:
    return "command" if message.type.endswith("set_period_status") else "event"


async def stored_whole(store: MemoryStore) -> BookkeepingTab:
    """The stored tab with every packed year loaded from its own document, unpacked."""
    state = (await store.load("bookkeeping", BookkeepingTab, [KEY]))[KEY].state
    digests = {year: packed.digest for year, packed in state.archive.items()}
    found = await store.parts("bookkeeping", KEY, digests)
    assert set(found) == set(digests)
    return unpacked(loaded(state, found))


def as_shown(state: BookkeepingTab) -> BookkeepingTab:
    """What the rules work out, without what the runtime adds (outbox, listed version)."""
    return msgspec.structs.replace(state, outbox=[], listed_version=0)


async def test_the_pipeline_keeps_packed_years_apart_and_loads_one_when_a_message_needs_it() -> (
    None
):
    store = MemoryStore()
    sent: list[int] = []  # packed years whose bytes each write of the tab sends
    save = store.save

    async def saved(collection: str, writes: Sequence[Write]) -> set[str]:
        if collection == "bookkeeping":
            sent.extend(sum(1 for p in w.state.archive.values() if p.packed) for w in writes)
        return await save(collection, writes)

    store.save = saved  # type: ignore[method-assign]
    first = pipeline(store)
    history = [company(), *submissions(months()), f.uploaded("2026-03-20T12:00")]
    outcomes = await first.handle([delivery(m) for m in history])
    assert {o.kind for o in outcomes} == {"applied"}
    # The same process writes the tab again: the years it packed are stored, not sent again.
    history.append(f.uploaded("2026-03-20T13:00"))
    await first.handle([delivery(history[-1])])
    assert sent == [3, 0]
    archive = plain(store.collections["bookkeeping"][KEY], BookkeepingTab)["archive"]
    assert set(archive) == {"2023", "2024", "2025"}
    assert all(set(year) == {"counts", "digest"} for year in archive.values())  # no bytes
    assert len(store.collections["bookkeeping_packed"]) == 3

    # Another process, nothing cached: a consultant's status for a packed period.
    asked: list[dict[str, str]] = []
    parts = store.parts

    async def counted(collection: str, key: str, digests: Any) -> dict[str, bytes]:
        asked.append(dict(digests))
        return await parts(collection, key, digests)

    store.parts = counted  # type: ignore[method-assign]
    other = pipeline(store)
    command = f.set_status("2024-05", "done", "2026-03-21T10:00")
    (outcome,) = await other.handle([delivery(command, "command")])
    assert outcome.kind == "applied", outcome
    assert [set(a) for a in asked] == [{"2024"}]  # that year only
    version = store.collections["bookkeeping"][KEY]["_v"]
    told = [m for item in other.outbox.take() for m in item.messages]
    told = [m for m in told if m.id.startswith(f"bookkeeping/{KEY}/{version}/")]  # this write's
    assert [(m.period, m.from_, m.to) for m in told] == [("2024-05", "new", "done")]
    state = await stored_whole(store)
    assert next(r for r in state.periods if r.period == "2024-05").status == "done"
    assert as_shown(state) == whole(bookkeeping.RULEBOOK, [*history, command])

    # A message about the unpacked year only reads none.
    asked.clear()
    upload = f.uploaded("2026-03-22T12:00")
    assert [o.kind for o in await pipeline(store).handle([delivery(upload)])] == ["applied"]
    assert asked == []


async def test_a_packed_year_missing_from_the_store_fails_the_message_instead_of_guessing() -> None:
    store = MemoryStore()
    history = [company(), *submissions(months()), f.uploaded("2026-03-20T12:00")]
    await pipeline(store).handle([delivery(m) for m in history])
    store.collections["bookkeeping_packed"].clear()
    command = f.set_status("2024-05", "done", "2026-03-21T10:00")
    (outcome,) = await pipeline(store).handle([delivery(command, "command")])
    assert outcome.kind == "failed"
    assert "MissingPackedYears" in (outcome.reason or "") and "2024" in (outcome.reason or "")


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_through_the_pipeline_in_any_batches_the_stored_tab_is_the_tab_kept_whole(
    data: st.DataObject,
) -> None:
    """Each batch by a process of its own (so packed years come from the store), in any order
    and batching; the stored tab, its packed years loaded, is the tab kept whole."""
    known = company()
    events = [m for m in data.draw(aging_bookkeeping()) if m.type != "clock.tick"]  # (sweeps)
    delivered = shuffled_with_duplicates(data.draw, events)
    final = f.uploaded("2026-10-15T11:00")
    sizes = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=8))

    async def run() -> BookkeepingTab:
        store = MemoryStore()
        rest = [known, *delivered]  # the company first: consultants act on known ones
        while rest:
            batch, rest = rest[: sizes[0]], rest[sizes[0] :]
            sizes.append(sizes.pop(0))
            await pipeline(store).handle([delivery(m, source(m)) for m in batch])
        await pipeline(store).handle([delivery(final)])
        return await stored_whole(store)

    expected = whole(bookkeeping.RULEBOOK, [known, *in_order(events), final])
    assert as_shown(asyncio.run(run())) == expected
