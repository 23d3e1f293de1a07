"""Command records expire: by the server's TTL index where it has one, else by our own purge."""

from __future__ import annotations

import datetime as dt

from services.expiry import Expiry
from services.store.memory import MemoryStore

T = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> dt.datetime:
        return self.now


async def records(store: MemoryStore) -> list[str]:
    return sorted(store.collections.get("outcomes", {}))


async def test_records_older_than_the_ttl_are_deleted_at_most_hourly() -> None:
    store, clock = MemoryStore(), Clock()
    await store.record(
        "outcomes",
        [
            {"_id": "old", "at": T - WEEK - dt.timedelta(seconds=1)},
            {"_id": "young", "at": T - WEEK + dt.timedelta(minutes=30)},
        ],
    )
    expiry = Expiry(store, "outcomes", "at", WEEK, clock)
    assert await expiry.purge_if_due() == 1
    assert await records(store) == ["young"]
    clock.now = T + dt.timedelta(minutes=59)  # young is now older than the TTL, but
    assert await expiry.purge_if_due() == 0  # an hour has not passed since the last purge
    clock.now = T + dt.timedelta(hours=1)
    assert await expiry.purge_if_due() == 1
    assert await records(store) == []


async def test_nothing_is_purged_by_hand_where_the_server_expires_records() -> None:
    class ServerExpires(MemoryStore):
        async def ensure_ttl(self, collection: str, field: str, seconds: int) -> bool:
            self.ttl = (collection, field, seconds)
            return True

    store = ServerExpires()
    await store.record("outcomes", [{"_id": "old", "at": T - 2 * WEEK}])
    expiry = Expiry(store, "outcomes", "at", WEEK, Clock())
    assert await expiry.purge_if_due() == 0
    assert store.ttl == ("outcomes", "at", 7 * 86400)
    assert await records(store) == ["old"]  # the server's TTL index deletes it, not we
