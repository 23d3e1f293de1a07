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

from dataclasses import dataclass, replace
from itertools import islice
from typing import Final

from contracts.outbound import OutboundMessage
from services.recent import Recent

# Ids the broker confirmed that this writer remembers, so that a later write or load of the same
# aggregate, whose outbox may still hold them, does not send them again but clears them.
# Bounded: forgetting one costs at most a repeat, which subscribers drop by id. Kept where the
# collector never looks (services/recent.py).
CONFIRMED_MEMORY: Final = 100_000


@dataclass(frozen=True)
class Unpublished:
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
        for item in self._unpublished.values():
            if any(m.id in self._confirmed for m in item.messages):
                self._untidy[(item.collection, item.key)] = None
            fresh = tuple(
                m
                for m in item.messages
                if m.id not in self._in_flight and m.id not in self._confirmed
            )
            if fresh:
                taken.append(replace(item, messages=fresh))
                self._in_flight.update(m.id for m in fresh)
        self._unpublished.clear()
        return taken

    def _taken(self, message_id: str) -> bool:
        return message_id in self._in_flight or message_id in self._confirmed

    def confirm(self, collection: str, key: str, ids: set[str]) -> None:
        """The broker confirmed ``ids``: they are to leave the aggregate's stored outbox."""
        self._in_flight.difference_update(ids)
        for message_id in ids:
            self._confirmed.put(message_id, None)
        if ids:
            self._untidy[(collection, key)] = None

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
