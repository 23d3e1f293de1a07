"""The outbox: outbound messages travel in their aggregate's own document, written in the same
write as the state that caused them (FerretDB has no transactions), and are published from there.

A writer records, per aggregate it wrote, the messages its outbox holds. The runner publishes
them with publisher confirms and reports what was confirmed; those leave the remembered state at
once, and the stored document the next time the aggregate is written, or, when the consumer has
nothing else to do, by a write of its own (``tidy``). What a crash leaves in a document is found
again by ``pending_outboxes`` when a session starts and when it takes its first batch (a replica
that stood by has just become the active one), and whenever such an aggregate is loaded. So
every message is published at least once; a repeat has the same id.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Final

from contracts.outbound import OutboundMessage

# Ids taken for publishing that this writer remembers, so that a later write of the same
# aggregate, whose outbox still holds them while their confirm is on its way, does not send
# them again. Bounded: forgetting one costs at most a repeat, which subscribers drop by id.
SENT_MEMORY: Final = 100_000


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
        self._untidy: set[tuple[str, str]] = set()
        self._sent: OrderedDict[str, None] = OrderedDict()

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
        """What to publish now: all held messages but those already taken."""
        taken = []
        for item in self._unpublished.values():
            fresh = tuple(m for m in item.messages if m.id not in self._sent)
            if fresh:
                taken.append(replace(item, messages=fresh))
                for message in fresh:
                    self._sent[message.id] = None
        self._unpublished.clear()
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)
        return taken

    @property
    def has_unpublished(self) -> bool:
        return bool(self._unpublished)

    def put_back(self, items: list[Unpublished]) -> None:
        """Publishing failed: take them again next time (a newer write holding them too wins)."""
        for item in items:
            for message in item.messages:
                self._sent.pop(message.id, None)
            self._unpublished.setdefault((item.collection, item.key), item)

    def mark_untidy(self, collection: str, key: str) -> None:
        self._untidy.add((collection, key))

    def untidy(self, limit: int) -> list[tuple[str, str]]:
        chosen = list(self._untidy)[:limit]
        self._untidy.difference_update(chosen)
        return chosen

    @property
    def has_untidy(self) -> bool:
        return bool(self._untidy)

    def forget(self) -> None:
        self._unpublished.clear()
        self._untidy.clear()
        self._sent.clear()
