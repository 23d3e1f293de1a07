"""Records that must not grow for ever: the outcomes of commands, and the commands whose caller
got 202. MongoDB deletes them itself through a TTL index; FerretDB has none, so the process
that writes them deletes the old ones now and then (a range delete, which reads the whole
collection on FerretDB: hence at most once an hour)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.store import Store

PURGE_EVERY = dt.timedelta(hours=1)


class Expiry:
    def __init__(
        self,
        store: Store,
        collection: str,
        field: str,
        ttl: dt.timedelta,
        wall_clock: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self.collection = collection
        self.field = field
        self.ttl = ttl
        self.wall_clock = wall_clock
        self._server_expires: bool | None = None  # unknown until prepared
        self._last_purge: dt.datetime | None = None

    async def prepare(self) -> None:
        self._server_expires = await self.store.ensure_ttl(
            self.collection, self.field, int(self.ttl.total_seconds())
        )

    async def purge_if_due(self) -> int:
        """Deletes what is older than the TTL, if the server does not and an hour has passed
        since the last time; the number deleted."""
        if self._server_expires is None:
            await self.prepare()
        if self._server_expires:
            return 0
        now = self.wall_clock()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return 0
        deleted = await self.store.delete_before(self.collection, self.field, now - self.ttl)
        self._last_purge = now
        return deleted
