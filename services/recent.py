"""A bounded map of text keys to bytes (or to nothing), oldest first out, in a plain dict.

A long-running process keeps tens of thousands of such keys (states it wrote, ids the broker
confirmed, packed years it read). In an ``OrderedDict`` or a set, every full pass of the
collector visits each of them, and the pass stops the whole process: in the main job after the
demo of 1,000 companies, the writers' confirmed ids alone were 77,000 of the 163,000 references
a full pass visited. A plain dict whose keys are text and whose values are bytes or None is
never tracked by the collector at all, so no pass visits it. It keeps insertion order, which is
the order of use here: a key used again is moved to the end. It grows to a sixteenth over its
size before the oldest are cut off in one go, so that cutting costs next to nothing per key.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView
from itertools import islice
from typing import Generic, TypeVar

V = TypeVar("V", bytes, None)


class Recent(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._slack = size // 16
        self._items: dict[str, V] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> V | None:
        """The value of ``key``, which is used again: the last to go."""
        if key not in self._items:
            return None
        value = self._items[key] = self._items.pop(key)
        return value

    def keys(self) -> KeysView[str]:
        """The keys kept now, for many lookups at C speed (a cut replaces the dict: ask again
        after a ``put``)."""
        return self._items.keys()

    def isdisjoint(self, keys: Iterable[str]) -> bool:
        """Whether none of ``keys`` is kept: one call, for a check made for every message."""
        return self._items.keys().isdisjoint(keys)

    def put(self, key: str, value: V) -> None:
        if self.size <= 0:
            return
        self._items.pop(key, None)
        self._items[key] = value
        self._cut()

    def put_all(self, keys: Iterable[str], value: V) -> None:
        """Each of ``keys`` with ``value``, in order: ``put`` for many at one call."""
        if self.size <= 0:
            return
        items = self._items
        for key in keys:
            items.pop(key, None)
            items[key] = value
        self._cut()

    def _cut(self) -> None:
        if len(self._items) > self.size + self._slack:
            cut = len(self._items) - self.size
            self._items = dict(islice(self._items.items(), cut, None))

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
