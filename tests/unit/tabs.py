"""Replaying messages through a rulebook as the runtime would, for the tab tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from consumers.rulebook import Rulebook
from contracts.envelope import Message
from tests.factories import at, tick


def replay(rulebook: Rulebook[Any], messages: Iterable[Message], now: str | None = None) -> Any:
    """Applies ``messages`` each at its own time, then a clock tick at ``now``."""
    state: Any = None
    for message in messages:
        state = rulebook.apply(state, message, message.occurred_at)
    if now is not None:
        state = rulebook.apply(state, tick(now), at(now))
    return state
