"""The passage of time: hands a clock tick to the aggregates that it has made due, a chunk at a
time, between message batches.

A tick is acknowledged at once; the sweep it starts goes on in steps that the runner interleaves
with message batches, so no batch waits for a sweep of thousands of aggregates, and no tick is
held unacknowledged while one runs. A sweep reads what is due through one cursor of the server,
in a task of its own, and applies each chunk as soon as it is read: the server reads on while
our process works, rather than the two taking turns (on FerretDB, reading a day's due tabs
took a fifth of its CPU in a sweep, and the sweep's first seconds alone; docs/benchmarks.md
(14) and (15), which also show that a process running every consumer gains nothing). No
``$nin`` of keys done, no re-reading: what a step applies is no longer due, and a reader
started again after a failure finds only what is left.

Most ticks find nothing due: statuses change by time only at a few instants (a deadline day
ends, a month or a fiscal year begins). So each clock-following collection has a **watermark**,
the earliest ``due_at`` in it, kept in the ``sweeps`` collection. A tick before the watermark
reads one document and queries nothing; every batch that writes a ``due_at`` lowers it (one
small update, on FerretDB a guarded replace, so a replica that has just taken over cannot skip
it on a stale belief, and one writing beside the replica letting go loses nothing; a lowering
gives the watermark a new version); a sweep that has run to its end sets it to the next
Stockholm midnight, or earlier if it wrote an earlier ``due_at`` meanwhile, but only if the
watermark is still at the version it started from: a lowering by another writer meanwhile
stays, and the next tick sweeps again (``Store.settle``); what another writer made due without
lowering it, after the reader passed, is asked for once more then. So a collection is asked at
most once a day when nothing is due, and only for that day (on FerretDB by equality on
``due_day``, which its storage answers without reading every document). A missing watermark
(a new database, or one from before watermarks) means "unknown": the next tick sweeps the
whole collection once.

If the process stops mid-sweep, the watermark still lies at or before the tick, so the next tick
(of any replica) sweeps again; applying a tick twice is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final

from consumers.stockholm import end_of_day, today
from contracts.clock import ClockTick
from services.store import Store
from services.store.port import VERSION_FIELD

SWEEPS: Final = "sweeps"  # one document per collection: {_id, next_due, _v}
NEXT_DUE: Final = "next_due"
# "Nothing is due": a date rather than null, so that lowering it is a plain minimum.
NEVER: Final = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)

ApplyTick = Callable[[str, Sequence[str], ClockTick], Awaitable[None]]


@dataclass(frozen=True)
class Watermark:
    next_due: dt.datetime
    version: int | None  # None: written before watermarks had versions


@dataclass
class _Sweep:
    tick: ClockTick  # the latest tick it speaks for
    since: dt.datetime | None  # the watermark it started from: nothing is due before it
    seen: int | None  # that watermark's version: its end raises it only if still at that
    read_to: dt.datetime | None = None  # what is due by then has been read
    keys: deque[str] = field(default_factory=deque)  # read, not yet applied
    reader: asyncio.Task[None] | None = None
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # keys came or were taken
    earliest: dt.datetime = NEVER  # the earliest due_at written while it ran

    @property
    def read(self) -> bool:
        return self.read_to is not None and self.read_to >= self.tick.occurred_at


class Sweeper:
    def __init__(
        self,
        store: Store,
        collections: Sequence[str],
        *,
        page: int = 512,
        chunk: int = 128,
        ahead: int = 20_000,
        marks: str = "",
    ) -> None:
        self.store = store
        self.collections = tuple(collections)
        # A partition keeps watermarks of its own (``<collection><marks>``): it sweeps and
        # writes only the aggregates it owns.
        self.marks = marks
        self.page = page  # keys the server hands over at a time
        self.chunk = chunk  # aggregates applied by one step
        self.ahead = max(ahead, chunk)  # keys read and not yet applied, at most (about)
        self._sweeps: dict[str, _Sweep] = {}

    @property
    def busy(self) -> bool:
        return bool(self._sweeps)

    async def watermarks(self) -> dict[str, Watermark]:
        """The known watermarks by collection; a collection without one is absent."""
        found = await self.store.fetch(SWEEPS, [c + self.marks for c in self.collections])
        named = {c + self.marks: c for c in self.collections}
        return {
            named[d["_id"]]: Watermark(d[NEXT_DUE], d.get(VERSION_FIELD))
            for d in found
            if d.get(NEXT_DUE) is not None
        }

    async def schedule(self, tick: ClockTick) -> list[str]:
        """Starts (or extends) a sweep of each collection that has something due at the tick."""
        marks = await self.watermarks()
        started = []
        for collection in self.collections:
            mark = marks.get(collection)
            if mark is not None and mark.next_due > tick.occurred_at:
                continue
            running = self._sweeps.get(collection)
            if running is None:
                since, seen = (mark.next_due, mark.version) if mark else (None, None)
                self._sweeps[collection] = _Sweep(tick, since=since, seen=seen)
            elif tick.occurred_at > running.tick.occurred_at:
                running.tick = tick  # its reader reads on to it
            started.append(collection)
        return started

    async def written(self, collection: str, states: Sequence[Any]) -> None:
        """Lowers the watermark to the earliest ``due_at`` just written."""
        if collection not in self.collections:
            return
        dues = [s.due_at for s in states if getattr(s, "due_at", None) is not None]
        if dues:
            await self.store.lower(SWEEPS, collection + self.marks, NEXT_DUE, min(dues))
            running = self._sweeps.get(collection)
            if running is not None:
                running.earliest = min(running.earliest, *dues)

    async def step(self, apply: ApplyTick) -> int:
        """One chunk of the oldest sweep; the number of aggregates it applied.

        The sweep's due keys are read by a task of its own, so the server reads on while the
        chunks read so far are applied. A step waits only for its chunk to be read."""
        if not self._sweeps:
            return 0
        collection, sweep = next(iter(self._sweeps.items()))
        self._raise_failure(sweep)
        if not sweep.read and (sweep.reader is None or sweep.reader.done()):
            self._start_reading(collection, sweep)
        while len(sweep.keys) < self.chunk and sweep.reader and not sweep.reader.done():
            sweep.moved.clear()
            await sweep.moved.wait()
        self._raise_failure(sweep)
        if sweep.keys:
            chunk = [sweep.keys.popleft() for _ in range(min(self.chunk, len(sweep.keys)))]
            sweep.moved.set()
            try:
                await apply(collection, chunk, sweep.tick)
            except BaseException:
                sweep.keys.extendleft(reversed(chunk))  # still due: the next step retries them
                raise
            return len(chunk)
        if sweep.read:
            await self._finish(collection, sweep)
        return 0

    @staticmethod
    def _raise_failure(sweep: _Sweep) -> None:
        """A reader that failed: its error, once; the next step reads again what is due."""
        reader = sweep.reader
        if reader is None or not reader.done() or reader.cancelled():
            return
        if (error := reader.exception()) is not None:
            sweep.reader = None
            raise error

    def _start_reading(self, collection: str, sweep: _Sweep) -> None:
        sweep.moved.clear()
        sweep.reader = asyncio.create_task(
            self._read(collection, sweep), name=f"sweep {collection}{self.marks}"
        )

    async def _read(self, collection: str, sweep: _Sweep) -> None:
        """Reads what is due, through the sweep's tick even as a later one extends it. What
        is applied no longer falls due by then, so a reader started again after a failure
        finds only what is left (and a key applied twice is harmless)."""
        try:
            while not sweep.read:
                now = sweep.tick.occurred_at
                found = self.store.due(
                    collection, now, after=sweep.read_to, since=sweep.since, batch=self.page
                )
                async with aclosing(found):  # its cursor closes even when the sweep is dropped
                    async for pairs in found:
                        sweep.keys.extend(key for _, key in pairs)
                        sweep.moved.set()
                        while len(sweep.keys) >= self.ahead:
                            sweep.moved.clear()
                            await sweep.moved.wait()
                sweep.read_to = now
        finally:
            sweep.moved.set()

    async def _finish(self, collection: str, sweep: _Sweep) -> None:
        """Every aggregate due by the tick has had it. Nothing left is due before the next
        Stockholm midnight (every due_at is the end of a day) unless written meanwhile: by
        this process (``earliest``), or by another writer, whose lowering gave the watermark a
        new version, so that ``settle`` keeps it rather than raise it (a partition's replica
        letting go of it writes for a moment while the one taking over sweeps)."""
        midnight = end_of_day(today(sweep.tick.occurred_at))
        mark = min(sweep.earliest, midnight)
        await self.store.settle(SWEEPS, collection + self.marks, NEXT_DUE, mark, sweep.seen)
        # That other writer may also have written a due_at before the tick but not before the
        # watermark, after the reader had passed it: its lowering then changed nothing. Asked
        # after the watermark is set, what is still due is found here or lowers it itself.
        if (late := await self._earliest_due(collection, sweep)) is not None:
            await self.store.lower(SWEEPS, collection + self.marks, NEXT_DUE, late)
        del self._sweeps[collection]

    async def _earliest_due(self, collection: str, sweep: _Sweep) -> dt.datetime | None:
        """The earliest ``due_at`` still due by the sweep's tick (after a sweep, usually none:
        one query that finds nothing)."""
        earliest = None
        found = self.store.due(
            collection, sweep.tick.occurred_at, since=sweep.since, batch=self.page
        )
        async with aclosing(found):
            async for pairs in found:
                first = min(due for due, _ in pairs)
                earliest = first if earliest is None else min(earliest, first)
        return earliest

    def forget(self) -> None:
        """Drops sweeps under way (the session ended); the next tick starts them again."""
        for sweep in self._sweeps.values():
            if sweep.reader is not None:
                sweep.reader.cancel()
        self._sweeps.clear()
