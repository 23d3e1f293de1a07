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

from dataclasses import dataclass

from contracts.outbound import OutboundMessage


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
        taken = list(self._unpublished.values())
        self._unpublished.clear()
        return taken

    def put_back(self, items: list[Unpublished]) -> None:
        """Publishing failed: keep them, unless a newer write of the aggregate holds them too."""
        for item in items:
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
