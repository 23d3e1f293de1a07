"""What the four tabs share: the company they follow, the messages every tab takes, and the
summary the overview reads (counts per status, the latest period and its status)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, ClassVar, Final, Protocol, TypeVar

import msgspec

from consumers.archive import PackedYear, packed, packed_counts, reopened
from consumers.company_facts import CompanyFacts, merge_company
from consumers.rulebook import HistoryEntry, Rejected
from contracts.commands import SetEngagement
from contracts.company import CompanyDetailsChanged, CompanyDisconnected
from contracts.envelope import CompanyMessage, Message
from contracts.outbound import OutboundMessage

# Every tab follows the company's details, its engagement and the clock.
TAB_MESSAGES: Final = frozenset(
    {"company.details_changed", "company.disconnected", "company.set_engagement", "clock.tick"}
)
TAB_INDEXES: Final = ((("agency_id", 1), ("company_id", 1)),)


class Tab(msgspec.Struct, kw_only=True):
    # What the store keeps as JSON text (services/store/port.py): no query looks into these.
    # The overview and the sweep read the top-level summary fields below.
    STORED_AS_TEXT: ClassVar[frozenset[str]] = frozenset(
        {
            "company",
            "history",
            "outbox",
            "facts",
            "header",
            "periods",
            "client_todo",
            "closing_years",
            "archive",
        }
    )

    # Whether settled years are packed (consumers/archive.py): the tabs with monthly periods.
    PACKS_YEARS: ClassVar[bool] = False
    # The store keeps the packed years' bytes in documents of their own (services/store/port.py).
    STORED_APART: ClassVar[str] = "archive"

    agency_id: str
    company_id: str
    company: CompanyFacts = msgspec.field(default_factory=CompanyFacts)
    now: dt.datetime | None = None
    # Worked out by the tab's `evaluate`, for the API to read.
    history: list[HistoryEntry] = msgspec.field(default_factory=list)
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    latest_period: str | None = None
    latest_status: str | None = None
    due_at: dt.datetime | None = None
    # What this tab's changes told the outside world and the relay has not yet seen confirmed
    # (services/outbox.py): written with the state, so a crash cannot lose it.
    outbox: list[OutboundMessage] = msgspec.field(default_factory=list)
    # The version of the write at which `listed` last changed, set by the runtime.
    listed_version: int = 0
    # Settled years by calendar year, packed; `counts` includes their rows.
    archive: dict[str, PackedYear] = msgspec.field(default_factory=dict)

    @staticmethod
    def settled_row(row: Any) -> bool:
        """Whether neither time nor anyone's to-do list can change this row any more."""
        return False

    @staticmethod
    def settled_facts(facts: Any, now: dt.datetime) -> bool:
        """Whether these facts of one period can be packed away at ``now``."""
        return False


def listed(tab: Tab) -> tuple[Any, ...]:
    """What the overview shows of a tab (consumers/listing.py): the latest period and its
    status, then the counts flat, status and number in turn, by status. Plain values only: a
    dict in the entry would keep the collector walking it (consumers/listing.py, `Entry`)."""
    return (tab.latest_period, tab.latest_status, *chain.from_iterable(sorted(tab.counts.items())))


def listed_count(entry: Sequence[Any], start: int, status: str) -> int:
    """The count of ``status`` in a listing entry whose counts begin at ``start``."""
    if len(entry) > start and isinstance(entry[start], dict):  # listed before LAYOUT's "flat"
        return int(entry[start].get(status, 0))
    try:
        return int(entry[entry.index(status, start) + 1])  # statuses are text, counts numbers
    except ValueError:
        return 0


def listed_counts(entry: Sequence[Any], start: int) -> dict[str, int]:
    """Every count of a listing entry whose counts begin at ``start``."""
    if len(entry) > start and isinstance(entry[start], dict):  # listed before LAYOUT's "flat"
        return dict(entry[start])
    flat = entry[start:]
    return dict(zip(flat[::2], flat[1::2], strict=True))


class _Row(Protocol):
    @property
    def period(self) -> str: ...

    @property
    def status(self) -> str: ...


T = TypeVar("T", bound=Tab)


def opened(tab: T | None, message: Message, new: type[T]) -> T:
    """The tab ``message`` applies to: a new one for the company's first message."""
    if tab is not None:
        return tab
    if not isinstance(message, CompanyMessage):  # a clock tick finds only existing tabs
        raise TypeError(f"{message.type} cannot open a tab")
    return new(agency_id=message.agency_id, company_id=message.company_id)


def follow_company(tab: T, message: Message) -> T:
    """The tab with ``message`` merged into its company facts, if it is about the company."""
    if isinstance(message, CompanyDetailsChanged | CompanyDisconnected | SetEngagement):
        return msgspec.structs.replace(tab, company=merge_company(tab.company, message))
    return tab


def reopened_for(previous: T | None, tab: T, years: Iterable[str] = ()) -> T:
    """``tab`` with the packed years a message may change unpacked: ``years``, or all of them
    when the message changed the company (its details, engagement or connection can move
    every deadline and which periods show)."""
    if not tab.archive:
        return tab
    if previous is not None and previous.company != tab.company:
        return reopened(tab, None)
    return reopened(tab, years)


def check_tracked(period: str, tracked: Sequence[str], domain: str) -> None:
    """A consultant's status is for a period the tab shows."""
    if period in tracked:
        return
    if not tracked:
        raise Rejected(f"the company has no {domain} periods yet")
    raise Rejected(f"period {period} is outside tracking ({tracked[0]} to {tracked[-1]})")


def history_by_period(tab: Tab) -> dict[str, list[HistoryEntry]]:
    """A tab's history entries by period, oldest first: what a period keeps when it is not
    worked out again."""
    entries: dict[str, list[HistoryEntry]] = {}
    for entry in tab.history:
        entries.setdefault(entry.period, []).append(entry)
    return entries


def summarized(
    tab: T,
    now: dt.datetime,
    rows: Sequence[_Row],
    history: list[HistoryEntry],
    due_at: dt.datetime | None,
    **fields: Any,
) -> T:
    """``tab`` with its rows, history (oldest first) and the overview's summary of them, and
    the years that have settled packed. ``rows`` are those of the years not packed; the last
    period is never in a packed year."""
    counts: dict[str, int] = {}
    for row in rows:  # a plain loop: a third of the time of a Counter, for every message
        counts[row.status] = counts.get(row.status, 0) + 1
    if tab.archive:
        counts = dict(Counter(counts) + packed_counts(tab.archive))
    return packed(
        msgspec.structs.replace(
            tab,
            now=now,
            periods=rows,
            history=sorted(history, key=lambda e: (e.at, e.period)),
            counts=counts,
            latest_period=rows[-1].period if rows else None,
            latest_status=rows[-1].status if rows else None,
            due_at=due_at if tab.company.connected else None,
            **fields,
        )
    )
