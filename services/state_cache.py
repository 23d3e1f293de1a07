"""The states a writer read or wrote last, kept encoded.

A cached tab of a year as Python objects is dozens of objects (rows, facts, history entries,
their lists), and a consumer keeps thousands of tabs: the collector's full passes, which walk
every tracked object, then took 100-200 ms at 1,000 companies, and stopped the whole process
(the main job's API and all its consumers) every few seconds under load. Encoded, a state is
one bytes object, which the collector never walks; decoding one on a hit costs tens of
microseconds, against a read from the store saved.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import msgspec

from services.store import Stored


class StateCache:
    """Up to ``size`` states by (collection, key), least recently used first out; each
    collection's states decode to its own type."""

    def __init__(self, types: Mapping[str, type[Any]], size: int) -> None:
        self.size = size
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders = {c: msgspec.msgpack.Decoder(t) for c, t in types.items()}
        self._entries: OrderedDict[tuple[str, str], tuple[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, collection: str, key: str) -> Stored | None:
        """A fresh copy, so a caller may keep or change it without touching the cache."""
        entry = self._entries.get((collection, key))
        if entry is None:
            return None
        self._entries.move_to_end((collection, key))
        version, blob = entry
        return Stored(version, self._decoders[collection].decode(blob))

    def put(self, collection: str, key: str, stored: Stored) -> None:
        if self.size <= 0:
            return
        self._entries[(collection, key)] = (stored.version, self._encoder.encode(stored.state))
        self._entries.move_to_end((collection, key))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def pop(self, collection: str, key: str) -> None:
        self._entries.pop((collection, key), None)

    def clear(self) -> None:
        self._entries.clear()
