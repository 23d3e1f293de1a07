"""SPEC §8 from the pipeline's writes: what each change tells subscribers, and what it does not."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import bookkeeping
from consumers.bookkeeping import BookkeepingTab
from consumers.outbound import _changed
from contracts.envelope import Message
from contracts.fields import instants_as_text
from contracts.outbound import Cause, ClientActionRequired, StatusChanged, encode_outbound
from services.pipeline import Pipeline
from services.store.memory import MemoryStore
from tests import factories as f
from tests.unit.test_ordering_properties import bookkeeping_events
from tests.unit.test_pipeline import CONSUMERS, SECRET, WALL, delivery

KEY = f"{f.AGENCY}/{f.COMPANY}"


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline(CONSUMERS["bookkeeping"], MemoryStore(), lambda: WALL, secret=SECRET)


async def told(
    p: Pipeline, message: Message, source: Any = "event", period: str | None = "2026-02"
) -> list[Any]:
    """What one message adds to the outbox (the relay's view) about ``period``, as published.
    (Applying a message moves the tab's time too: an earlier period may turn late with it.)"""
    (outcome,) = await p.handle([delivery(message, source)])
    assert outcome.kind == "applied", outcome
    taken = p.outbox.take()
    for item in taken:  # as if the broker confirmed everything
        p.published([item])
    return [m for item in taken for m in item.messages if period in (None, m.period)]


async def test_a_submission_says_new_caused_by_the_event(pipeline: Pipeline) -> None:
    await told(pipeline, f.details())
    submission = f.submitted("2026-02", "2026-03-02T09:00")
    (changed,) = await told(pipeline, submission)
    assert isinstance(changed, StatusChanged)
    assert (changed.domain, changed.period, changed.from_, changed.to) == (
        "bookkeeping",
        "2026-02",
        "waiting",
        "new",
    )
    assert changed.routing_key == "status.bookkeeping.new"
    assert (changed.cause.kind, changed.cause.id) == ("event", submission.id)
    assert changed.at == submission.occurred_at
    assert changed.id.startswith(f"bookkeeping/{KEY}/2/")  # the aggregate, its write's version
    # The same event again, or any redelivery, says nothing.
    assert await told(pipeline, submission) == []


async def test_a_send_back_says_waiting_by_the_user_and_asks_the_client(
    pipeline: Pipeline,
) -> None:
    await told(pipeline, f.details())
    await told(pipeline, f.submitted("2026-02", "2026-03-02T09:00"))
    command = f.set_status("2026-02", "waiting", "2026-03-05T09:00", deadline="2026-03-20")
    changed, asked = await told(pipeline, command, "command")
    assert isinstance(changed, StatusChanged) and isinstance(asked, ClientActionRequired)
    assert (changed.from_, changed.to) == ("new", "waiting")
    assert (changed.cause.kind, changed.cause.id, changed.cause.command_id) == (
        "user",
        "u-7",
        command.id,
    )
    assert (asked.period, asked.status, str(asked.deadline), asked.user_id) == (
        "2026-02",
        "waiting",
        "2026-03-20",
        "u-7",
    )
    assert asked.command_id == command.id
    assert await told(pipeline, command, "command") == []  # redelivered: nothing new


async def test_a_deadline_passing_says_late_caused_by_time(pipeline: Pipeline) -> None:
    await told(pipeline, f.details("2026-01-02T08:00"))
    tick = f.tick("2026-03-10T00:00")  # the January and February deadlines have passed
    await pipeline.handle([delivery(tick, "clock")])
    while pipeline.sweeping:
        await pipeline.sweep_step()
    messages = [m for item in pipeline.outbox.take() for m in item.messages]
    late = sorted((m.period, m.from_, m.to, m.cause.kind, m.cause.id) for m in messages)
    assert late == [
        ("2026-01", "waiting", "late", "time", tick.id),
        ("2026-02", "waiting", "late", "time", tick.id),
    ]


async def test_an_older_fact_arriving_late_says_nothing(pipeline: Pipeline) -> None:
    await told(pipeline, f.details())
    await told(pipeline, f.set_status("2026-02", "done", "2026-03-05T09:00"), "command")
    # The client's submission from before the consultant's status arrives only now: the
    # history gains an entry in the past, the period still shows done.
    assert await told(pipeline, f.submitted("2026-02", "2026-03-02T09:00")) == []


async def test_the_outbox_is_written_with_the_state_and_cleared_once_confirmed(
    pipeline: Pipeline,
) -> None:
    store = pipeline.store
    assert isinstance(store, MemoryStore)
    await told(pipeline, f.details())
    await pipeline.handle([delivery(f.submitted("2026-02", "2026-03-02T09:00"))])
    (stored,) = (await store.load("bookkeeping", BookkeepingTab, [KEY])).values()
    outbox = [(m.period, m.to) for m in stored.state.outbox]
    assert ("2026-02", "new") in outbox  # in the same write as the state
    assert await store.pending_outboxes("bookkeeping", BookkeepingTab)
    (item,) = pipeline.outbox.take()
    pipeline.published([item])
    assert await pipeline.tidy() == 1  # when idle, the consumer clears the stored outbox
    (stored,) = (await store.load("bookkeeping", BookkeepingTab, [KEY])).values()
    assert stored.state.outbox == []
    assert await store.pending_outboxes("bookkeeping", BookkeepingTab) == {}


async def test_what_a_crashed_writer_left_is_found_and_published_again(pipeline: Pipeline) -> None:
    await told(pipeline, f.details())
    await pipeline.handle([delivery(f.submitted("2026-02", "2026-03-02T09:00"))])
    (lost,) = pipeline.outbox.take()  # the writer stops before publishing
    successor = Pipeline(CONSUMERS["bookkeeping"], pipeline.store, lambda: WALL, secret=SECRET)
    assert await successor.recover_outboxes() == 1
    (found,) = successor.outbox.take()
    assert [m.id for m in found.messages] == [m.id for m in lost.messages]  # the same ids


async def test_confirmed_messages_are_cleared_even_when_the_writer_forgot_the_aggregate(
    pipeline: Pipeline,
) -> None:
    """A writer may lose its remembered copy (another writer won a race) between publishing and
    tidying: it then reads the stored document, and clears what the broker confirmed."""
    store = pipeline.store
    assert isinstance(store, MemoryStore)
    await told(pipeline, f.details())
    await pipeline.handle([delivery(f.submitted("2026-02", "2026-03-02T09:00"))])
    (item,) = pipeline.outbox.take()
    pipeline._cache.clear()  # forgotten, as after a conflict
    pipeline.published([item])
    # Loading it again holds its outbox, but nothing confirmed is sent a second time.
    await pipeline.handle([delivery(f.uploaded("2026-03-03T09:00"))])
    assert [
        m
        for i in pipeline.outbox.take()
        for m in i.messages
        if m.id in {m.id for m in item.messages}
    ] == []
    assert await pipeline.tidy() == 1
    (stored,) = (await store.load("bookkeeping", BookkeepingTab, [KEY])).values()
    assert not {m.id for m in stored.state.outbox} & {m.id for m in item.messages}


def test_the_fast_encoding_writes_every_instant_as_the_deep_one_does() -> None:
    """encode_outbound rewrites the top level only: a nested instant added to an outbound type
    would leave that level unformatted, and this comparison would fail."""
    at = dt.datetime(2026, 3, 2, 9, 0, 0, 40_000, tzinfo=dt.UTC)
    messages = [
        StatusChanged(
            id="bookkeeping/a/1/0",
            occurred_at=at,
            agency_id=f.AGENCY,
            company_id=f.COMPANY,
            domain="bookkeeping",
            period="2026-02",
            from_="waiting",
            to="new",
            at=at,
            cause=Cause(kind="user", id="u-1", command_id="cmd-1"),
        ),
        ClientActionRequired(
            id="bookkeeping/a/1/1",
            occurred_at=at,
            agency_id=f.AGENCY,
            company_id=f.COMPANY,
            period="2026-02",
            status="waiting",
            deadline=dt.date(2026, 3, 12),
            user_id="u-1",
            command_id="cmd-1",
        ),
    ]
    for message in messages:
        deep = instants_as_text(msgspec.to_builtins(message, builtin_types=(dt.datetime,)))
        assert msgspec.json.decode(encode_outbound(message)) == deep
        assert b'"2026-03-02T09:00:00.040Z"' in encode_outbound(message)


def _changed_period_by_period(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """Each period whose status differs, found by period: what ``_changed`` answers in one pass
    when the periods line up."""
    old = {row.period: row.status for row in getattr(before, "periods", ())}
    found = []
    for row in after.periods:
        was = old.get(row.period) or next(
            (e.from_ for e in after.history if e.period == row.period), None
        )
        if was is not None and was != row.status:
            found.append((row.period, was, row.status))
    return found


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_changes_found_in_one_pass_are_those_found_period_by_period(
    data: st.DataObject,
) -> None:
    events = data.draw(bookkeeping_events())
    messages = data.draw(st.permutations(events))
    tab = None
    for message in messages:
        if tab is None and message.type == "clock.tick":
            continue
        after = bookkeeping.RULEBOOK.apply(tab, message, message.occurred_at)
        found = [(row.period, was, row.status) for row, was in _changed(tab, after)]
        assert found == _changed_period_by_period(tab, after)
        tab = after


async def test_a_period_that_begins_already_submitted_says_new(pipeline: Pipeline) -> None:
    await told(pipeline, f.details("2026-01-02T08:00"))
    # Submitted on 20 February for March, which the tab shows only once March has begun.
    assert await told(pipeline, f.submitted("2026-03", "2026-02-20T09:00"), period="2026-03") == []
    tick = f.tick("2026-03-01T12:00")
    await pipeline.handle([delivery(tick, "clock")])
    while pipeline.sweeping:
        await pipeline.sweep_step()
    messages = [m for item in pipeline.outbox.take() for m in item.messages]
    march = [(m.from_, m.to, m.cause.kind) for m in messages if m.period == "2026-03"]
    assert march == [("waiting", "new", "event")]
