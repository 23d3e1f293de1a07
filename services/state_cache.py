"""The states a writer read or wrote last, kept encoded.

A cached tab of a year as Python objects is dozens of objects (rows, facts, history entries,
their lists), and a consumer keeps thousands of tabs: the collector's full passes, which walk
every tracked object, then took 100-200 ms at 1,000 companies, and stopped the whole process
(the main job's API and all its consumers) every few seconds under load. Encoded, a state is
one bytes object, which the collector never walks, in a map it never visits
(services/recent.py); decoding one on a hit costs tens of microseconds, against a read from
the store saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import GenericAlias
from typing import Any

import msgspec

from services.recent import Recent
from services.store import Stored


class StateCache:
    """About ``size`` states by collection and key, least recently used first out
    (services/recent.py); each collection's states decode to its own type."""

    def __init__(self, types: Mapping[str, type[Any]], size: int) -> None:
        self.size = size
        self._encoder = msgspec.msgpack.Encoder()
        # Each state encoded with its version, as one bytes object.
        self._decoders = {
            c: msgspec.msgpack.Decoder(GenericAlias(tuple, (int, t))) for c, t in types.items()
        }
        self._entries: Recent[bytes] = Recent(size)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, collection: str, key: str) -> Stored | None:
        """A fresh copy, so a caller may keep or change it without touching the cache."""
        blob = self._entries.get(f"{collection}/{key}")
        if blob is None:
            return None
        version, state = self._decoders[collection].decode(blob)
        return Stored(version, state)

    def put(self, collection: str, key: str, stored: Stored) -> None:
        if self.size <= 0:
            return
        blob = self._encoder.encode((stored.version, stored.state))
        self._entries.put(f"{collection}/{key}", blob)

    def pop(self, collection: str, key: str) -> None:
        self._entries.pop(f"{collection}/{key}")

    def clear(self) -> None:
        self._entries.clear()
