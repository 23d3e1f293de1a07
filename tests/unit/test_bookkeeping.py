"""SPEC §5.1 and §5.6 for bookkeeping, rule by rule, on the pure rulebook."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest

from consumers.bookkeeping import BookkeepingTab, Row, apply
from consumers.rulebook import Rejected
from consumers.stockholm import days_left
from contracts.envelope import Message
from tests.factories import (
    at,
    details,
    disconnected,
    engagement,
    set_status,
    submitted,
    tick,
    uploaded,
)


def replay(messages: Iterable[Message], now: str | None = None) -> BookkeepingTab:
    """Applies ``messages`` as the runtime would (each at its own time), then a tick at ``now``."""
    tab: BookkeepingTab | None = None
    for message in messages:
        tab = apply(tab, message, message.occurred_at)  # type: ignore[arg-type]
    assert tab is not None
    if now is not None:
        tab = apply(tab, tick(now), at(now))  # type: ignore[arg-type]
    return tab


def row(tab: BookkeepingTab, period: str) -> Row:
    return next(r for r in tab.periods if r.period == period)


# Rule 1: waiting until the deadline day has ended in Stockholm, then late.
def test_unsubmitted_period_waits_until_its_deadline_day_ends_in_stockholm() -> None:
    # March 2026 is due 7 April (Easter); Stockholm is UTC+2 then, so the day ends 22:00 UTC.
    before = replay([details()], "2026-04-07T21:59:59")
    assert row(before, "2026-03").status == "waiting"
    assert row(before, "2026-03").deadline == dt.date(2026, 4, 7)
    assert days_left(row(before, "2026-03").deadline, at("2026-04-07T21:59:59")) == 0
    after = replay([details()], "2026-04-07T22:00")
    assert row(after, "2026-03").status == "late"
    assert days_left(row(after, "2026-03").deadline, at("2026-04-07T22:00")) == -1


def test_days_left_counts_stockholm_days() -> None:
    # The API works the days left out when it reads a row (a stored row keeps the deadline).
    tab = replay([details()], "2026-04-01T23:30")  # already 2 April in Stockholm
    assert days_left(row(tab, "2026-03").deadline, at("2026-04-01T23:30")) == 5


def test_a_row_is_the_same_object_while_its_period_does_not_change() -> None:
    """What keeps a message's cost from growing with the company's age: an untouched period's
    row is kept as it was, not made again (nor worked out again) for every message."""
    before = replay([details()], "2026-04-01T12:00")
    after = apply(before, submitted("2026-03", "2026-04-02T09:00"), at("2026-04-02T09:00"))
    kept = {r.period for r in before.periods} - {"2026-03"}
    assert kept and all(row(after, p) is row(before, p) for p in kept)
    assert row(after, "2026-03").status == "new"


def test_submission_day_of_the_company_moves_the_deadline() -> None:
    tab = replay([details(submission_day=20)], "2026-02-19T12:00")
    assert row(tab, "2026-01").deadline == dt.date(2026, 2, 20)
    assert row(tab, "2026-01").status == "waiting"


# Rule 2: the client submits: new.
def test_client_submission_makes_the_period_new() -> None:
    tab = replay([details(), submitted("2026-02", "2026-03-04T09:12")], "2026-03-10T12:00")
    assert row(tab, "2026-02").status == "new"
    assert row(tab, "2026-02").updated_by_company_at == at("2026-03-04T09:12")


def test_late_submission_turns_late_into_new() -> None:
    tab = replay([details(), submitted("2026-01", "2026-02-20T09:00")], "2026-03-01T12:00")
    assert row(tab, "2026-01").status == "new"


# Rule 3: the consultant may set any status.
@pytest.mark.parametrize("status", ["in_progress", "incomplete", "done", "new", "late"])
def test_consultant_sets_a_status(status: str) -> None:
    tab = replay(
        [
            details(),
            submitted("2026-02", "2026-03-04T09:00"),
            set_status("2026-02", status, "2026-03-05T10:00", user="u-9"),
        ],
        "2026-03-06T12:00",
    )
    assert row(tab, "2026-02").status == status
    assert row(tab, "2026-02").status_set_by == "u-9"
    assert row(tab, "2026-02").status_set_at == at("2026-03-05T10:00")


def test_sending_back_puts_the_period_on_the_clients_todo_list() -> None:
    tab = replay(
        [
            details(),
            submitted("2026-02", "2026-03-02T09:00"),
            submitted("2026-01", "2026-02-02T09:00"),
            set_status("2026-02", "waiting", "2026-03-03T10:00"),
        ],
        "2026-03-04T12:00",
    )
    assert row(tab, "2026-02").status == "waiting"
    assert "2026-02" in tab.client_todo
    assert "2026-01" not in tab.client_todo
    # 2026-03 has not been submitted either: waiting, on the list.
    assert tab.client_todo == ["2026-02", "2026-03"]
    assert tab.header.client_todo_count == 2


def test_sent_back_as_late_is_on_the_todo_list() -> None:
    tab = replay(
        [
            details(),
            submitted("2026-02", "2026-03-02T09:00"),
            set_status("2026-02", "late", "2026-03-03T10:00"),
        ],
        "2026-03-04T12:00",
    )
    assert row(tab, "2026-02").status == "late"
    assert "2026-02" in tab.client_todo


def test_waiting_with_a_new_deadline_waits_until_that_day_then_turns_late() -> None:
    messages = [
        details(),
        submitted("2026-02", "2026-03-02T09:00"),
        set_status("2026-02", "waiting", "2026-03-10T10:00", deadline="2026-03-20"),
    ]
    waiting = replay(messages, "2026-03-20T12:00")
    assert row(waiting, "2026-02").status == "waiting"
    assert row(waiting, "2026-02").deadline == dt.date(2026, 3, 20)
    late = replay(messages, "2026-03-20T23:00")  # the 20th has ended in Stockholm (UTC+1)
    assert row(late, "2026-02").status == "late"


def test_waiting_set_after_the_deadline_shows_late() -> None:
    tab = replay(
        [
            details(),
            submitted("2026-01", "2026-02-02T09:00"),
            set_status("2026-01", "waiting", "2026-02-10T10:00"),
        ],
        "2026-02-10T11:00",
    )
    assert row(tab, "2026-01").status == "late"


def test_waiting_with_a_new_deadline_lifts_a_late_period() -> None:
    tab = replay(
        [details(), set_status("2026-01", "waiting", "2026-02-10T10:00", deadline="2026-02-16")],
        "2026-02-11T11:00",
    )
    assert row(tab, "2026-01").status == "waiting"


# Rule 4: the latest fact by occurred_at wins.
def test_submission_after_consultant_status_makes_the_period_new_again() -> None:
    tab = replay(
        [
            details(),
            submitted("2026-02", "2026-03-02T09:00"),
            set_status("2026-02", "waiting", "2026-03-03T10:00"),
            submitted("2026-02", "2026-03-04T08:00"),
        ],
        "2026-03-04T12:00",
    )
    assert row(tab, "2026-02").status == "new"


def test_old_submission_arriving_late_changes_nothing() -> None:
    in_order = replay(
        [details(), set_status("2026-02", "in_progress", "2026-03-03T10:00")], "2026-03-05T12:00"
    )
    stale = submitted("2026-02", "2026-03-02T09:00")
    late_arrival = replay(
        [details(), set_status("2026-02", "in_progress", "2026-03-03T10:00"), stale],
        "2026-03-05T12:00",
    )
    assert row(late_arrival, "2026-02").status == "in_progress" == row(in_order, "2026-02").status


def test_duplicate_delivery_changes_nothing() -> None:
    d, s = details(), submitted("2026-02", "2026-03-02T09:00")
    once = replay([d, s], "2026-03-05T12:00")
    twice = replay([d, s, d, s], "2026-03-05T12:00")
    assert once == twice


def test_time_never_goes_back() -> None:
    tab = replay([details()], "2026-04-08T12:00")
    older = apply(tab, tick("2026-04-01T12:00"), at("2026-04-01T12:00"))  # type: ignore[arg-type]
    assert older == tab


# Which periods the tab shows.
def test_periods_run_from_the_fiscal_year_start_through_the_current_month() -> None:
    tab = replay(
        [details(fiscal_year_start="2025-07-01", fiscal_year_end="2026-06-30")], "2026-03-15T12:00"
    )
    assert [r.period for r in tab.periods] == [
        "2025-07",
        "2025-08",
        "2025-09",
        "2025-10",
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
    ]
    assert tab.latest_period == "2026-03"


def test_a_new_fiscal_year_keeps_the_periods_of_the_old_one() -> None:
    tab = replay(
        [
            details(),
            details(
                "2027-01-02T08:00", fiscal_year_start="2027-01-01", fiscal_year_end="2027-12-31"
            ),
        ],
        "2027-02-01T12:00",
    )
    assert tab.periods[0].period == "2026-01"
    assert tab.periods[-1].period == "2027-02"
    assert tab.header.fiscal_year_end == dt.date(2027, 12, 31)


def test_a_submission_for_a_future_month_shows_once_the_month_has_come() -> None:
    early = submitted("2026-04", "2026-03-31T12:00")
    tab = replay([details(), early], "2026-03-31T12:00")
    assert tab.latest_period == "2026-03"
    tab = apply(tab, tick("2026-04-01T08:00"), at("2026-04-01T08:00"))  # type: ignore[arg-type]
    assert row(tab, "2026-04").status == "new"


def test_a_new_month_appears_at_stockholm_midnight() -> None:
    tab = replay([details()], "2026-03-31T21:59")  # 23:59 in Stockholm
    assert tab.latest_period == "2026-03"
    assert tab.due_at == at("2026-03-31T22:00")
    tab = apply(tab, tick("2026-03-31T22:00"), at("2026-03-31T22:00"))  # type: ignore[arg-type]
    assert tab.latest_period == "2026-04"


def test_no_details_no_periods_and_no_clock() -> None:
    tab = replay([submitted("2026-02", "2026-03-02T09:00")])
    assert tab.periods == []
    assert tab.due_at is None


def test_disconnected_company_stops_at_its_last_month() -> None:
    tab = replay([details(), disconnected("2026-03-10T09:00")], "2026-06-01T12:00")
    assert tab.latest_period == "2026-03"
    assert tab.due_at is None
    back = apply(tab, details("2026-07-01T09:00"), at("2026-07-01T09:00"))  # type: ignore[arg-type]
    assert back.latest_period == "2026-07"


# The header.
def test_header_shows_the_latest_upload_and_company_details() -> None:
    tab = replay(
        [
            details(vat_frequency="monthly"),
            uploaded("2026-03-03T10:15"),
            uploaded("2026-03-01T10:15"),
        ],
        "2026-03-05T12:00",
    )
    assert tab.header.last_upload_at == at("2026-03-03T10:15")
    assert tab.header.vat_frequency == "monthly"
    assert tab.header.fiscal_year_end == dt.date(2026, 12, 31)


def test_counts_per_status() -> None:
    tab = replay([details(), submitted("2026-02", "2026-03-02T09:00")], "2026-03-04T12:00")
    assert tab.counts == {"late": 1, "new": 1, "waiting": 1}


# Commands the owner refuses.
def test_status_for_a_period_outside_tracking_is_rejected() -> None:
    tab = replay([details()], "2026-03-04T12:00")
    with pytest.raises(Rejected, match="outside tracking"):
        apply(tab, set_status("2025-12", "done", "2026-03-04T12:00"), at("2026-03-04T12:00"))  # type: ignore[arg-type]
    with pytest.raises(Rejected, match="outside tracking"):
        apply(tab, set_status("2026-04", "done", "2026-03-04T12:00"), at("2026-03-04T12:00"))  # type: ignore[arg-type]


def test_status_for_an_unknown_company_is_rejected() -> None:
    with pytest.raises(Rejected):
        apply(None, set_status("2026-02", "done", "2026-03-04T12:00"), at("2026-03-04T12:00"))  # type: ignore[arg-type]


def test_a_redelivered_command_is_not_rejected_later() -> None:
    command = set_status("2026-02", "done", "2026-03-04T12:00")
    tab = replay([details(), command], "2026-03-05T12:00")
    gone = replay([details(), disconnected("2026-03-05T12:30"), command], "2026-03-05T13:00")
    assert apply(tab, command, at("2026-03-05T12:00")) == tab  # type: ignore[arg-type]
    assert gone.latest_period == "2026-03"


# §5.6 history.
def test_history_records_each_change_with_its_cause() -> None:
    s = submitted("2026-01", "2026-02-20T09:00")
    tab = replay(
        [details(), s, set_status("2026-01", "in_progress", "2026-02-21T10:00", user="u-9")],
        "2026-02-22T12:00",
    )
    january = [
        (e.from_, e.to, e.at, e.cause.kind, e.cause.id)
        for e in tab.history
        if e.period == "2026-01"
    ]
    assert january == [
        ("waiting", "late", at("2026-02-05T23:00"), "time", None),
        ("late", "new", at("2026-02-20T09:00"), "event", s.id),
        ("new", "in_progress", at("2026-02-21T10:00"), "user", "u-9"),
    ]


def test_history_has_no_entry_when_the_shown_status_stays() -> None:
    tab = replay(
        [details(), set_status("2026-01", "waiting", "2026-02-10T10:00")], "2026-02-11T12:00"
    )
    january = [e for e in tab.history if e.period == "2026-01"]
    assert [(e.from_, e.to) for e in january] == [("waiting", "late")]


# Tracking follows the engagement (SPEC §4).
def test_tracking_starts_at_the_engagement_start_month() -> None:
    tab = replay([details(), engagement("2026-02", "2026-02-10T09:00")], "2026-03-10T12:00")
    assert [r.period for r in tab.periods] == ["2026-02", "2026-03"]


def test_a_later_start_hides_earlier_periods_and_an_earlier_one_brings_them_back() -> None:
    s = submitted("2026-01", "2026-02-02T09:00")
    later_start = engagement("2026-03", "2026-03-01T09:00")
    hidden = replay([details(), s, later_start], "2026-03-10T12:00")
    assert [r.period for r in hidden.periods] == ["2026-03"]
    assert all(e.period != "2026-01" for e in hidden.history)
    back = apply(hidden, engagement("2026-01", "2026-03-05T09:00"), at("2026-03-05T09:00"))  # type: ignore[arg-type]
    assert row(back, "2026-01").status == "new"  # the facts were kept
