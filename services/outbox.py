"""The outbox: outbound messages travel in their aggregate's own document, written in the same write
as the state that caused them (FerretDB has no transactions), and are published from there.

A writer records, per aggregate it wrote, the messages its outbox holds. The runner publishes them
in one AMQP transaction per batch and reports what the broker took; those leave the remembered state
at once, and the stored document the next time the aggregate is written, or, when the consumer has
nothing else to do, by a write of its own (``tidy``). What a crash leaves in a document is found
again by ``pending_outboxes`` when a session starts and when it takes its first batch (a replica
that stood by has just become the active one), and whenever such an aggregate is loaded. So every
message is published at least once; a repeat has the same id.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Final, NamedTuple

from contracts.outbound import OutboundMessage
from services.recent import Recent

# Ids the broker confirmed that this writer remembers, so that a later write or load of the same
# aggregate, whose outbox may still hold them, does not send them again but clears them.
# Bounded: forgetting one costs at most a repeat, which subscribers drop by id. Kept where the
# collector never looks (services/recent.py).
CONFIRMED_MEMORY: Final = 100_000


class Unpublished(NamedTuple):  # a tuple: one is made for every write that holds messages
    collection: str
    key: str
    version: int  # of the write that holds them
    messages: tuple[OutboundMessage, ...]


class OutboxLedger:
    """What this writer still has to publish, and which aggregates to tidy."""

    def __init__(self) -> None:
        self._unpublished: dict[tuple[str, str], Unpublished] = {}
        # A dict, not a set: after a sweep it holds every tab for minutes, and the collector
        # stops walking a dict of plain keys after one full pass; a set it walks every time.
        self._untidy: dict[tuple[str, str], None] = {}
        self._in_flight: set[str] = set()  # taken for publishing, not yet confirmed
        self._confirmed: Recent[None] = Recent(CONFIRMED_MEMORY)

    def hold(
        self, collection: str, key: str, version: int, messages: list[OutboundMessage]
    ) -> None:
        """The outbox of the aggregate as written at ``version`` (replacing an older one)."""
        if messages:
            self._unpublished[(collection, key)] = Unpublished(
                collection, key, version, tuple(messages)
            )
        else:
            self._unpublished.pop((collection, key), None)

    def take(self) -> list[Unpublished]:
        """What to publish now: the held messages neither on their way nor confirmed. An
        aggregate whose outbox holds confirmed ones is to be tidied."""
        taken = []
        in_flight, confirmed = self._in_flight, self._confirmed
        for item in self._unpublished.values():
            ids = [m.id for m in item.messages]
            if in_flight.isdisjoint(ids) and confirmed.isdisjoint(ids):  # all of them are new
                taken.append(item)
                in_flight.update(ids)
                continue
            if not confirmed.isdisjoint(ids):
                self._untidy[(item.collection, item.key)] = None
            done = confirmed.keys()
            fresh = tuple(m for m in item.messages if m.id not in in_flight and m.id not in done)
            if fresh:
                taken.append(item._replace(messages=fresh))
                in_flight.update(m.id for m in fresh)
        self._unpublished.clear()
        return taken

    def confirm(self, items: Iterable[Unpublished]) -> None:
        """The broker confirmed every message of ``items``: they are to leave the aggregates'
        stored outboxes."""
        for item in items:
            ids = [m.id for m in item.messages]
            self._in_flight.difference_update(ids)
            self._confirmed.put_all(ids, None)
            self._untidy[(item.collection, item.key)] = None

    def unconfirmed(self, messages: list[OutboundMessage]) -> list[OutboundMessage]:
        """``messages`` without those the broker confirmed: the very list when none is."""
        if not messages:
            return messages
        confirmed = self._confirmed.keys()
        kept = [m for m in messages if m.id not in confirmed]
        return messages if len(kept) == len(messages) else kept

    def is_confirmed(self, message_id: str) -> bool:
        return message_id in self._confirmed

    @property
    def has_unpublished(self) -> bool:
        return bool(self._unpublished)

    def put_back(self, items: list[Unpublished]) -> None:
        """Publishing failed: take them again next time (a newer write holding them too wins)."""
        for item in items:
            self._in_flight.difference_update(m.id for m in item.messages)
            self._unpublished.setdefault((item.collection, item.key), item)

    def untidy(self, limit: int) -> list[tuple[str, str]]:
        chosen = list(islice(self._untidy, limit))
        for taken in chosen:
            del self._untidy[taken]
        return chosen

    @property
    def has_untidy(self) -> bool:
        return bool(self._untidy)

    def forget(self) -> None:
        self._unpublished.clear()
        self._untidy.clear()
        self._in_flight.clear()
        self._confirmed.clear()
