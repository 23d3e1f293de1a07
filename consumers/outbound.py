"""What a tab's change tells the outside world (SPEC §8): pure, from the tab before and after one
message.

A status change is a period whose *current* status differs after the message: a duplicate, or a
fact arriving late that only rewrites the past, changes no current status and says nothing. The
cause is that of the history entry that produced the new status, so a period that turns `late`
while an unrelated event is applied is still said to be late because of time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from consumers.archive import moved_years, unpacked
from consumers.tab import Tab
from contracts.clock import ClockTick
from contracts.commands import SetBookkeepingPeriodStatus
from contracts.envelope import Message
from contracts.outbound import Cause, ClientActionRequired, OutboundMessage, StatusChanged

SENT_BACK = frozenset({"waiting", "late"})


def outbound(
    domain: str,
    before: Tab | None,
    after: Tab,
    message: Message,
    recorded_at: dt.datetime,
    next_id: Callable[[], str],
) -> list[OutboundMessage]:
    """The messages ``message`` gives rise to, in the order the subscribers should see them."""
    if before is not None and before.archive is not after.archive:
        # A packed year opened (and maybe packed again): compare its periods too. The years
        # packed the same way in both have the same rows in both.
        moved = moved_years(before.archive, after.archive)
        before, after = unpacked(before, moved), unpacked(after, moved)
    found: list[OutboundMessage] = []
    for row, old in _changed(before, after):
        at, cause = _why(after, row.period, row.status, message)
        found.append(
            StatusChanged(
                id=next_id(),
                occurred_at=recorded_at,
                agency_id=after.agency_id,
                company_id=after.company_id,
                domain=domain,  # type: ignore[arg-type]
                period=row.period,
                from_=old,
                to=row.status,
                at=at,
                cause=cause,
            )
        )
    if isinstance(message, SetBookkeepingPeriodStatus) and message.data.status in SENT_BACK:
        row = _row(after, message.data.period)
        if row is not None and _sent_back_by(row, _row(before, row.period), message):
            found.append(
                ClientActionRequired(
                    id=next_id(),
                    occurred_at=recorded_at,
                    agency_id=after.agency_id,
                    company_id=after.company_id,
                    period=row.period,
                    status=message.data.status,  # type: ignore[arg-type]
                    deadline=row.deadline,
                    user_id=message.data.user_id,
                    command_id=message.id,
                )
            )
    return found


def _changed(before: Tab | None, after: Tab) -> list[tuple[Any, str]]:
    """Each row of ``after`` whose status differs from ``before``'s, with the status before.

    Called for every message applied, so the common cases, the same periods in the same order
    and maybe periods just begun after them (a message whose time is in a new month), are one
    pass over both lists."""
    old_rows: Any = getattr(before, "periods", ())
    new_rows: Any = getattr(after, "periods", ())
    if len(old_rows) <= len(new_rows):
        changed = []
        for old, new in zip(old_rows, new_rows, strict=False):  # new rows may follow
            if old is new:  # a period the message did not touch keeps its row
                continue
            if old.period != new.period:
                break
            if old.status != new.status:
                changed.append((new, old.status))
        else:
            for row in new_rows[len(old_rows) :]:  # later than every period before
                status = _initial(after, row.period)
                if status is not None and status != row.status:
                    changed.append((row, status))
            return changed
    rows_before = {row.period: row for row in old_rows}
    changed = []
    for row in new_rows:
        if row.period in rows_before:
            status = rows_before[row.period].status
        else:
            # A period that has just begun shows for the first time: it changed if it no longer
            # shows the status it started with (a submission made before its month began).
            status = _initial(after, row.period)
        if status is not None and status != row.status:
            changed.append((row, status))
    return changed


def _row(tab: Tab | None, period: str) -> Any:
    return next((r for r in getattr(tab, "periods", ()) if r.period == period), None)


def _initial(tab: Tab, period: str) -> str | None:
    """The status a period started with: the ``from`` of its first history entry."""
    return next((e.from_ for e in tab.history if e.period == period), None)


def _sent_back_by(row: Any, before: Any, command: SetBookkeepingPeriodStatus) -> bool:
    """The row now shows this command's status: not a repeat of it (the row is as it was), nor
    a command older than the status the row shows."""

    def shown(r: Any) -> tuple[Any, ...]:
        return (r.status, r.deadline, r.status_set_by, r.status_set_at)

    return (
        (before is None or shown(before) != shown(row))
        and row.status_set_at == command.occurred_at
        and row.status_set_by == command.data.user_id
    )


def _why(tab: Tab, period: str, status: str, message: Message) -> tuple[dt.datetime, Cause]:
    entry = next((e for e in reversed(tab.history) if e.period == period and e.to == status), None)
    if entry is None:  # no entry says how (cannot happen for a rulebook that records history)
        return message.occurred_at, _cause_of(message)
    kind, who = entry.cause.kind, entry.cause.id
    if kind == "time":
        return entry.at, Cause(
            kind="time", id=message.id if isinstance(message, ClockTick) else None
        )
    if kind == "user":
        data: Any = getattr(message, "data", None)
        by_this = getattr(data, "user_id", None) == who and message.type.endswith(
            "set_period_status"
        )
        return entry.at, Cause(kind="user", id=who, command_id=message.id if by_this else None)
    return entry.at, Cause(kind="event", id=who)


def _cause_of(message: Message) -> Cause:
    if isinstance(message, ClockTick):
        return Cause(kind="time", id=message.id)
    data: Any = getattr(message, "data", None)
    user = getattr(data, "user_id", None)
    if user is not None:
        return Cause(kind="user", id=user, command_id=message.id)
    return Cause(kind="event", id=message.id)
