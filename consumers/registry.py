"""Every consumer the runtime can run: a name and the rulebooks it owns.

A new consumer is a rulebook module and one line here; the runtime derives its queue, bindings,
retry path and dead-letter queue from this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from consumers import bookkeeping, closing, directory, notes, payroll, vat
from consumers.rulebook import Rulebook


@dataclass(frozen=True)
class ConsumerDefinition:
    name: str
    rulebooks: tuple[Rulebook[Any], ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for rulebook in self.rulebooks:
            if seen & rulebook.handles:
                raise ValueError(f"{self.name}: two rulebooks handle {seen & rulebook.handles}")
            seen |= rulebook.handles

    @property
    def handles(self) -> frozenset[str]:
        return frozenset().union(*(r.handles for r in self.rulebooks))

    @property
    def follows_clock(self) -> bool:
        return any(r.follows_clock for r in self.rulebooks)

    def rulebook_for(self, message_type: str) -> Rulebook[Any] | None:
        for rulebook in self.rulebooks:
            if message_type in rulebook.handles:
                return rulebook
        return None


def consumers(closing_url: str = closing.DEFAULT_CLOSING_URL) -> dict[str, ConsumerDefinition]:
    """Every consumer; ``closing_url`` is the link template of the client's accounting system."""
    return {
        definition.name: definition
        for definition in (
            ConsumerDefinition(
                "directory", (directory.COMPANIES, directory.AGENCY_USERS, notes.RULEBOOK)
            ),
            ConsumerDefinition("bookkeeping", (bookkeeping.RULEBOOK,)),
            ConsumerDefinition("payroll", (payroll.RULEBOOK,)),
            ConsumerDefinition("vat", (vat.RULEBOOK,)),
            ConsumerDefinition("closing", (closing.rulebook(closing_url),)),
        )
    }


CONSUMERS: Final = consumers()

# The state each collection holds, for readers that take its documents as plain values.
STATE_TYPES: Final[dict[str, type[Any]]] = {
    rulebook.collection: rulebook.state_type
    for consumer in CONSUMERS.values()
    for rulebook in consumer.rulebooks
}
