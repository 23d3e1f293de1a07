"""The state comes out the same under redelivery, duplicates and reordering (DEVELOPERS.md).

Random event sequences are applied in order, and again as random permutations with random
duplicates; the final states must be equal. ``now`` for each message is what the runtime gives
it: an event's own time, a tick's time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import bookkeeping, closing, directory, payroll, vat
from consumers.rulebook import Rejected, Rulebook
from contracts.clock import ClockTick
from contracts.envelope import Message
from tests import factories as f

START = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


def instants() -> st.SearchStrategy[str]:
    # Whole minutes over ten months, plus the exact Stockholm midnights where statuses flip.
    minutes = st.integers(min_value=0, max_value=300 * 24 * 60)
    return minutes.map(lambda m: (START + dt.timedelta(minutes=m)).isoformat())


periods = st.sampled_from([f"2026-{m:02d}" for m in range(1, 10)] + ["2025-08", "2025-12"])


@st.composite
def company_details(draw: st.DrawFn, earliest: bool = False) -> Message:
    start = "2026-01-01" if earliest else draw(st.sampled_from(["2026-01-01", "2026-07-01"]))
    end = (dt.date.fromisoformat(start).replace(year=2027) - dt.timedelta(days=1)).isoformat()
    return f.details(
        draw(instants()),
        fiscal_year_start=start,
        fiscal_year_end=end,
        submission_day=draw(st.integers(min_value=1, max_value=28)),
        vat_frequency=draw(st.sampled_from(["monthly", "quarterly", "yearly", "none"])),
    )


@st.composite
def bookkeeping_events(draw: st.DrawFn) -> list[Message]:
    events: list[Message] = [draw(company_details())]
    events += draw(st.lists(company_details(), max_size=2))
    events += [f.submitted(draw(periods), draw(instants())) for _ in range(draw(st.integers(0, 8)))]
    events += [f.uploaded(draw(instants())) for _ in range(draw(st.integers(0, 3)))]
    events += [f.tick(draw(instants())) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        events.append(f.disconnected(draw(instants())))
    return events


def shuffled_with_duplicates(draw: st.DrawFn, events: Sequence[Message]) -> list[Message]:
    repeats = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    return draw(st.permutations([*events, *repeats]))


def replay(rulebook: Rulebook[Any], messages: Sequence[Message], state: Any = None) -> Any:
    for message in messages:
        if state is None and isinstance(message, ClockTick):
            continue  # the runtime hands ticks only to stored states
        state = rulebook.apply(state, message, message.occurred_at)
    return state


def in_order(messages: Sequence[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (m.occurred_at, m.id))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_bookkeeping_events_in_any_order(data: st.DataObject) -> None:
    events = data.draw(bookkeeping_events())
    delivered = shuffled_with_duplicates(data.draw, events)
    final_tick = f.tick("2026-10-15T12:00")
    expected = replay(bookkeeping.RULEBOOK, [*in_order(events), final_tick])
    actual = replay(bookkeeping.RULEBOOK, [*delivered, final_tick])
    assert actual == expected


@st.composite
def consultant_commands(draw: st.DrawFn) -> list[Message]:
    # Periods inside tracking whatever the order: the first fiscal year starts in January and
    # the state is evaluated in June before any command arrives.
    early = st.sampled_from([f"2026-{m:02d}" for m in range(1, 7)])
    statuses = st.sampled_from(["waiting", "late", "new", "in_progress", "incomplete", "done"])
    commands: list[Message] = []
    for _ in range(draw(st.integers(1, 6))):
        status = draw(statuses)
        deadline = draw(st.sampled_from([None, "2026-07-20", "2026-06-01"]))
        commands.append(
            f.set_status(
                draw(early),
                status,
                draw(instants()),
                deadline=deadline if status == "waiting" else None,
            )
        )
    return commands


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_bookkeeping_commands_and_events_in_any_order(data: st.DataObject) -> None:
    start = replay(
        bookkeeping.RULEBOOK,
        [data.draw(company_details(earliest=True)), f.tick("2026-06-15T12:00")],
    )
    events = data.draw(consultant_commands())
    events += [f.submitted(data.draw(periods), data.draw(instants())) for _ in range(4)]
    events += data.draw(st.lists(company_details(), max_size=2))
    delivered = shuffled_with_duplicates(data.draw, events)
    final_tick = f.tick("2026-10-15T12:00")
    expected = replay(bookkeeping.RULEBOOK, [*in_order(events), final_tick], start)
    actual = replay(bookkeeping.RULEBOOK, [*delivered, final_tick], start)
    assert actual == expected


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_bookkeeping_kept_rows_equal_rows_worked_out_afresh(data: st.DataObject) -> None:
    """A message re-evaluates only the periods it can change; after every message the tab must
    equal the one worked out from all its facts."""
    state = replay(bookkeeping.RULEBOOK, [data.draw(company_details(earliest=True))])
    events = data.draw(consultant_commands())
    events += [f.submitted(data.draw(periods), data.draw(instants())) for _ in range(6)]
    events += [f.tick(data.draw(instants())) for _ in range(3)]
    events += data.draw(st.lists(company_details(), max_size=2))
    for message in shuffled_with_duplicates(data.draw, events):
        try:
            state = bookkeeping.RULEBOOK.apply(state, message, message.occurred_at)
        except Rejected:
            continue
        assert state == bookkeeping.evaluate(state, state.now)


@st.composite
def directory_events(draw: st.DrawFn) -> list[Message]:
    events: list[Message] = [draw(company_details()) for _ in range(draw(st.integers(1, 3)))]
    events += [f.disconnected(draw(instants())) for _ in range(draw(st.integers(0, 2)))]
    events += [
        f.engagement(draw(periods), draw(instants())) for _ in range(draw(st.integers(0, 2)))
    ]
    return events


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_company_entry_in_any_order(data: st.DataObject) -> None:
    # Consultants act on companies the directory knows: start from one it knows.
    start = replay(directory.COMPANIES, [data.draw(company_details())])
    events = data.draw(directory_events())
    for _ in range(data.draw(st.integers(0, 3))):
        user = data.draw(st.sampled_from(["u-1", "u-2", "u-3"]))
        events.append(
            f.message(
                "company.add_user",
                {"user_id": user, "email": f"{user}@byran.se", "added_by": "u-1"},
                data.draw(instants()),
            )
        )
    delivered = shuffled_with_duplicates(data.draw, events)
    assert replay(directory.COMPANIES, delivered, start) == replay(
        directory.COMPANIES, in_order(events), start
    )


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_agency_user_in_any_order(data: st.DataObject) -> None:
    emails = st.sampled_from(["anna@byran.se", "Anna@Byran.se", "bo@byran.se"])
    events = [
        f.user_changed(
            "u-7", data.draw(emails), data.draw(instants()), active=data.draw(st.booleans())
        )
        for _ in range(data.draw(st.integers(1, 4)))
    ]
    delivered = shuffled_with_duplicates(data.draw, events)
    assert replay(directory.AGENCY_USERS, delivered) == replay(
        directory.AGENCY_USERS, in_order(events)
    )


# Payroll, VAT and closing: the same property over their own facts.
def common_company_events(draw: st.DrawFn) -> list[Message]:
    events: list[Message] = [draw(company_details())]
    events += draw(st.lists(company_details(), max_size=2))
    if draw(st.booleans()):
        events.append(f.engagement(draw(periods), draw(instants())))
    if draw(st.booleans()):
        events.append(f.disconnected(draw(instants())))
    events += [f.tick(draw(instants())) for _ in range(draw(st.integers(0, 2)))]
    return events


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_payroll_events_in_any_order(data: st.DataObject) -> None:
    events = common_company_events(data.draw)
    for _ in range(data.draw(st.integers(0, 6))):
        payment = data.draw(st.sampled_from([None, "2026-03-25", "2026-04-02"]))
        events.append(
            f.payroll_completed(
                data.draw(periods),
                data.draw(instants()),
                employees=data.draw(st.integers(0, 9)),
                payment_date=payment,
            )
        )
    delivered = shuffled_with_duplicates(data.draw, events)
    final_tick = f.tick("2026-10-15T12:00")
    assert replay(payroll.RULEBOOK, [*delivered, final_tick]) == replay(
        payroll.RULEBOOK, [*in_order(events), final_tick]
    )


quarters = st.sampled_from(
    [
        ("2026-01-01", "2026-03-31"),
        ("2026-04-01", "2026-06-30"),
        ("2026-02-01", "2026-02-28"),
        ("2025-10-01", "2025-12-31"),
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_vat_events_in_any_order(data: st.DataObject) -> None:
    events = common_company_events(data.draw)
    for _ in range(data.draw(st.integers(0, 8))):
        start, end = data.draw(quarters)
        if data.draw(st.booleans()):
            events.append(
                f.vat_step(
                    start,
                    end,
                    data.draw(st.integers(1, 3)),
                    data.draw(instants()),
                    completed=data.draw(st.booleans()),
                )
            )
        else:
            events.append(
                f.vat_reported(start, end, data.draw(instants()), reported=data.draw(st.booleans()))
            )
    events += [f.entry_created(data.draw(instants())) for _ in range(data.draw(st.integers(0, 2)))]
    delivered = shuffled_with_duplicates(data.draw, events)
    final_tick = f.tick("2026-10-15T12:00")
    assert replay(vat.RULEBOOK, [*delivered, final_tick]) == replay(
        vat.RULEBOOK, [*in_order(events), final_tick]
    )
    # A message re-evaluates only the periods it can change: after every message (and ticks
    # between them) the tab equals the one worked out from all its facts.
    state = None
    ticks = [f.tick(data.draw(instants())) for _ in range(3)]
    for message in shuffled_with_duplicates(data.draw, [*events, *ticks]):
        state = replay(vat.RULEBOOK, [message], state)
        if state is not None:
            assert state == vat.evaluate(state, state.now)


years = st.sampled_from(
    [("2025-01-01", "2025-12-31"), ("2025-07-01", "2025-12-31"), ("2026-01-01", "2026-12-31")]
)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_closing_events_in_any_order(data: st.DataObject) -> None:
    events = common_company_events(data.draw)
    for _ in range(data.draw(st.integers(0, 6))):
        start, end = data.draw(years)
        total = data.draw(st.integers(1, 5))
        if data.draw(st.booleans()):
            events.append(
                f.closing_progress(
                    start, end, data.draw(st.integers(0, total)), total, data.draw(instants())
                )
            )
        else:
            events.append(
                f.k10_help(end, data.draw(instants()), requested=data.draw(st.booleans()))
            )
    delivered = shuffled_with_duplicates(data.draw, events)
    final_tick = f.tick("2027-03-15T12:00")
    assert replay(closing.RULEBOOK, [*delivered, final_tick]) == replay(
        closing.RULEBOOK, [*in_order(events), final_tick]
    )
