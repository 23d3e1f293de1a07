"""The writer's ledger of its outboxes (services/outbox.py): each outbound message is handed to
the relay once, again only when its publish failed, and cleared from the documents once
confirmed."""

from __future__ import annotations

import datetime as dt

from contracts.outbound import Cause, OutboundMessage, StatusChanged
from services.outbox import OutboxLedger, Unpublished

AT = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
TAB = ("bookkeeping", "a/c-1")


def changed(message_id: str) -> StatusChanged:
    return StatusChanged(
        id=message_id,
        occurred_at=AT,
        agency_id="a",
        company_id="c-1",
        domain="bookkeeping",
        period="2026-02",
        from_="waiting",
        to="new",
        at=AT,
        cause=Cause(kind="event", id="e-1"),
    )


def confirmed(ledger: OutboxLedger, key: str, ids: list[str]) -> None:
    """As the relay reports a commit of these messages of ``key``."""
    ledger.confirm([Unpublished("bookkeeping", key, 1, tuple(changed(i) for i in ids))])


def test_each_message_is_handed_over_once_until_its_publish_fails() -> None:
    ledger = OutboxLedger()
    first, second, third = changed("m-1"), changed("m-2"), changed("m-3")
    ledger.hold(*TAB, 1, [first])
    (taken,) = ledger.take()
    assert taken == Unpublished(*TAB, 1, (first,)) and ledger.take() == []
    # The next write still holds the first (not confirmed yet) beside a new one.
    ledger.hold(*TAB, 2, [first, second])
    (newer,) = ledger.take()
    assert newer == Unpublished(*TAB, 2, (second,))
    ledger.put_back([taken])  # the first one's commit failed
    (again,) = ledger.take()
    assert again.messages == (first,) and not ledger.has_untidy
    ledger.confirm([again, newer])
    assert ledger.untidy(5) == [TAB] and not ledger.has_untidy
    # A write made before the confirmations came holds them all: only the third is new, and
    # the document, which still holds the confirmed two, is to be tidied.
    ledger.hold(*TAB, 3, [first, second, third])
    (last,) = ledger.take()
    assert last == Unpublished(*TAB, 3, (third,)) and ledger.untidy(5) == [TAB]


def test_the_confirmed_leave_a_remembered_outbox_and_an_untouched_one_stays_the_same() -> None:
    ledger = OutboxLedger()
    first, second = changed("m-1"), changed("m-2")
    confirmed(ledger, "a/c-1", ["m-1"])
    assert ledger.unconfirmed([first, second]) == [second]
    outbox: list[OutboundMessage] = [second]
    assert ledger.unconfirmed(outbox) is outbox
    empty: list[OutboundMessage] = []
    assert ledger.unconfirmed(empty) is empty
