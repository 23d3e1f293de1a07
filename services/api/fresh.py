"""What the API reads on nearly every request and what changes seldom, answered from memory for
a moment: a company's entry (whose users may see its tabs) and an agency's listing heads.

A value read less than ``max_age_s`` ago is answered as it is. Once it is older than half that,
the first request to ask reads it again in the background, and the requests meanwhile are
answered with what is held, so steady traffic does not wait for the store. A value older than
``max_age_s``, or none, is read before the answer. However many requests ask at once, a key has
one read under way, and a request that goes away does not cancel it (a lookup cancelled halfway
costs PyMongo its connection).

``forget`` drops a key and the read under way for it, whose result is then handed to those
already waiting for it but not kept: the API forgets what its own commands change once their
outcome arrives, so a consultant sees their own action at once; a change from elsewhere shows
within ``max_age_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Fresh(Generic[V]):
    def __init__(
        self,
        max_age_s: float,
        size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self.size = size
        self._clock = clock
        # key -> (when its read began, what it found); a plain dict in the order of reading,
        # so the oldest read is the first.
        self._held: dict[str, tuple[float, V]] = {}
        self._reading: dict[str, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._held)

    async def get(self, key: str, read: Callable[[], Awaitable[V]]) -> V:
        """What ``read`` finds for ``key``, or found less than ``max_age_s`` ago."""
        if self.max_age_s <= 0:
            return await read()
        held = self._held.get(key)
        if held is not None:
            age = self._clock() - held[0]
            if age < self.max_age_s:
                if age >= self.max_age_s / 2:
                    self._read(key, read)
                return held[1]
        return await asyncio.shield(self._read(key, read))

    def forget(self, key: str) -> None:
        self._held.pop(key, None)
        self._reading.pop(key, None)

    def _read(self, key: str, read: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        reading = self._reading.get(key)
        if reading is None:
            began = self._clock()
            reading = asyncio.ensure_future(read())
            self._reading[key] = reading
            reading.add_done_callback(lambda done: self._done(key, done, began))
        return reading

    def _done(self, key: str, reading: asyncio.Future[V], began: float) -> None:
        # The failure is retrieved here, so that a failed background read is not reported as
        # never retrieved; a request that waited for the read gets the failure itself.
        failed = reading.cancelled() or reading.exception() is not None
        if self._reading.get(key) is not reading:
            return  # forgotten while it was read: what it found may predate the change
        del self._reading[key]
        if failed:
            return
        self._held.pop(key, None)
        self._held[key] = (began, reading.result())
        # What is too old to be answered goes, the oldest first, so that a process holds only
        # what was read within the age: its values are objects the collector visits.
        now = self._clock()
        while self._held:
            oldest = next(iter(self._held))
            if len(self._held) <= self.size and now - self._held[oldest][0] < self.max_age_s:
                break
            del self._held[oldest]
