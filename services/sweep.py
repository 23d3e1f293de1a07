"""The passage of time: hands a clock tick to the aggregates that it has made due, a page at a
time, between message batches.

A tick is acknowledged at once; the sweep it starts goes on in steps that the runner interleaves
with message batches, so no batch waits for a sweep of thousands of aggregates, and no tick is
held unacknowledged while one runs. A sweep pages by ``(due_at, _id)``.

Most ticks find nothing due: statuses change by time only at a few instants (a deadline day
ends, a month or a fiscal year begins). So each clock-following collection has a **watermark**,
the earliest ``due_at`` in it, kept in the ``sweeps`` collection. A tick before the watermark
reads one document and queries nothing; every batch that writes a ``due_at`` lowers it (one
small ``$min`` update, so a replica that has just taken over cannot skip it on a stale belief);
a sweep that has run to its end sets it to the next Stockholm midnight, or earlier if it wrote
an earlier ``due_at`` meanwhile. So a collection is asked at most once a day when nothing is due,
and only for that day (on FerretDB by equality on ``due_day``, which its storage answers without
reading every document). A missing watermark (a new database, or one from before watermarks)
means "unknown": the next tick sweeps the whole collection once.

If the process stops mid-sweep, the watermark still lies at or before the tick, so the next tick
(of any replica) sweeps again; applying a tick twice is harmless.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consumers.stockholm import end_of_day, today
from contracts.clock import ClockTick
from services.store import Store

SWEEPS: Final = "sweeps"  # one document per collection: {_id, next_due}
NEXT_DUE: Final = "next_due"
# "Nothing is due": a date rather than null, so that lowering it is a plain minimum.
NEVER: Final = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)

ApplyTick = Callable[[str, Sequence[str], ClockTick], Awaitable[None]]


@dataclass
class _Sweep:
    tick: ClockTick  # the latest tick it speaks for
    since: dt.datetime | None  # the watermark it started from: nothing is due before it
    after: tuple[dt.datetime, str] | None = None
    keys: list[str] = field(default_factory=list)  # fetched, not yet applied
    exhausted: bool = False  # the last page has been fetched
    earliest: dt.datetime = NEVER  # the earliest due_at written while it ran


class Sweeper:
    def __init__(
        self,
        store: Store,
        collections: Sequence[str],
        *,
        page: int = 2000,
        chunk: int = 128,
        marks: str = "",
    ) -> None:
        self.store = store
        self.collections = tuple(collections)
        # A partition keeps watermarks of its own (``<collection><marks>``): it sweeps and
        # writes only the aggregates it owns.
        self.marks = marks
        self.page = page  # keys fetched by one query (at least; on FerretDB, whole days)
        self.chunk = chunk  # aggregates applied by one step
        self._sweeps: dict[str, _Sweep] = {}

    @property
    def busy(self) -> bool:
        return bool(self._sweeps)

    async def watermarks(self) -> dict[str, dt.datetime]:
        """The known watermarks by collection; a collection without one is absent."""
        found = await self.store.fetch(SWEEPS, [c + self.marks for c in self.collections])
        named = {c + self.marks: c for c in self.collections}
        return {named[d["_id"]]: d[NEXT_DUE] for d in found if d.get(NEXT_DUE) is not None}

    async def schedule(self, tick: ClockTick) -> list[str]:
        """Starts (or extends) a sweep of each collection that has something due at the tick."""
        marks = await self.watermarks()
        started = []
        for collection in self.collections:
            mark = marks.get(collection)
            if mark is not None and mark > tick.occurred_at:
                continue
            running = self._sweeps.get(collection)
            if running is None:
                self._sweeps[collection] = _Sweep(tick, since=mark)
            elif tick.occurred_at > running.tick.occurred_at:
                running.tick = tick  # its later pages reach further
                running.exhausted = False
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
        """One page or one chunk of the oldest sweep; the number of aggregates it applied."""
        if not self._sweeps:
            return 0
        collection, sweep = next(iter(self._sweeps.items()))
        if not sweep.keys and not sweep.exhausted:
            found = await self.store.due(
                collection, sweep.tick.occurred_at, self.page, sweep.after, sweep.since
            )
            sweep.keys = [key for _, key in found]
            sweep.exhausted = len(found) < self.page
            if found:
                sweep.after = found[-1]
        if sweep.keys:
            chunk, sweep.keys = sweep.keys[: self.chunk], sweep.keys[self.chunk :]
            await apply(collection, chunk, sweep.tick)
            return len(chunk)
        if sweep.exhausted:
            await self._finish(collection, sweep)
        return 0

    async def _finish(self, collection: str, sweep: _Sweep) -> None:
        """Every aggregate due by the tick has had it. Nothing left is due before the next
        Stockholm midnight (every due_at is the end of a day) unless written meanwhile."""
        midnight = end_of_day(today(sweep.tick.occurred_at))
        mark = min(sweep.earliest, midnight)
        await self.store.record(SWEEPS, [{"_id": collection + self.marks, NEXT_DUE: mark}])
        del self._sweeps[collection]

    def forget(self) -> None:
        """Drops sweeps under way (the session ended); the next tick starts them again."""
        self._sweeps.clear()
