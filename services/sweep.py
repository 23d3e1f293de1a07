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
a sweep that has run to its end sets it anew. A missing watermark (a new database, or one from
before watermarks) means "unknown": the next tick sweeps.

If the process stops mid-sweep, the watermark still lies at or before the tick, so the next tick
(of any replica) sweeps again; applying a tick twice is harmless.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

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
    after: tuple[dt.datetime, str] | None = None
    keys: list[str] = field(default_factory=list)  # fetched, not yet applied
    exhausted: bool = False  # the last page has been fetched
    # What the watermark becomes: the earliest due_at it has seen beyond the tick (the first
    # of the page that reaches past it), or written while it ran.
    earliest: dt.datetime = NEVER


class Sweeper:
    def __init__(
        self, store: Store, collections: Sequence[str], *, page: int = 2000, chunk: int = 128
    ) -> None:
        self.store = store
        self.collections = tuple(collections)
        self.page = page  # keys fetched by one query (on FerretDB each query reads everything)
        self.chunk = chunk  # aggregates applied by one step
        self._sweeps: dict[str, _Sweep] = {}

    @property
    def busy(self) -> bool:
        return bool(self._sweeps)

    async def watermarks(self) -> dict[str, dt.datetime]:
        """The known watermarks by collection; a collection without one is absent."""
        found = await self.store.fetch(SWEEPS, self.collections)
        return {d["_id"]: d[NEXT_DUE] for d in found if d.get(NEXT_DUE) is not None}

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
                self._sweeps[collection] = _Sweep(tick)
            elif tick.occurred_at > running.tick.occurred_at:
                # Its later pages reach further. What it saw beyond the old tick stays in
                # `earliest`: at worst the watermark comes out early, and a tick sweeps for
                # nothing once.
                running.tick = tick
                running.exhausted = False
            started.append(collection)
        return started

    async def written(self, collection: str, states: Sequence[Any]) -> None:
        """Lowers the watermark to the earliest ``due_at`` just written."""
        if collection not in self.collections:
            return
        dues = [s.due_at for s in states if getattr(s, "due_at", None) is not None]
        if dues:
            await self.store.lower(SWEEPS, collection, NEXT_DUE, min(dues))
            running = self._sweeps.get(collection)
            if running is not None:
                running.earliest = min(running.earliest, *dues)

    async def step(self, apply: ApplyTick) -> int:
        """One page or one chunk of the oldest sweep; the number of aggregates it applied."""
        if not self._sweeps:
            return 0
        collection, sweep = next(iter(self._sweeps.items()))
        if not sweep.keys and not sweep.exhausted:
            # The page runs on past the tick: its first aggregate beyond it is the earliest due
            # left, and no query of its own is needed to find it (on FerretDB each query reads
            # the whole collection).
            until = sweep.tick.occurred_at
            found = await self.store.due(collection, NEVER, self.page, after=sweep.after)
            due = [(at, key) for at, key in found if at <= until]
            sweep.keys = [key for _, key in due]
            beyond = found[len(due) :]
            sweep.exhausted = bool(beyond) or len(found) < self.page
            if beyond:
                sweep.earliest = min(sweep.earliest, beyond[0][0])
            if due:
                sweep.after = due[-1]
        if sweep.keys:
            chunk, sweep.keys = sweep.keys[: self.chunk], sweep.keys[self.chunk :]
            await apply(collection, chunk, sweep.tick)
            return len(chunk)
        if sweep.exhausted:
            await self._finish(collection, sweep)
        return 0

    async def _finish(self, collection: str, sweep: _Sweep) -> None:
        """Every aggregate due by the tick has had it: the watermark is the earliest left."""
        await self.store.record(SWEEPS, [{"_id": collection, NEXT_DUE: sweep.earliest}])
        del self._sweeps[collection]

    def forget(self) -> None:
        """Drops sweeps under way (the session ended); the next tick starts them again."""
        self._sweeps.clear()
