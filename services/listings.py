"""Keeps the owners' listing shards (consumers/listing.py) in step with their aggregates.

The pipeline hands it, after each batch's writes, every aggregate the batch touched, written or
not: an aggregate written just before a crash, whose listing write was lost, is listed when its
message comes again, although applying it again changes nothing. So the listing never lags its
aggregates by more than the batches under way, and needs no transaction with them.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from consumers.listing import (
    COLLECTION,
    LAYOUT,
    Entry,
    ListingHead,
    ListingShard,
    head_key,
    merged,
    raised,
    shard_key,
    shard_of,
)
from consumers.rulebook import Rulebook
from services.store import Store, Stored, Write

# The field of a listed state that holds the version at which its listing last changed.
LISTED_VERSION = "listed_version"


class ListingsConflict(Exception):
    """Other writers kept winning the race for the same listing shards: try the batch later."""


class ListingWriter:
    def __init__(self, store: Store, *, conflict_retries: int = 10, cache_size: int = 256) -> None:
        self.store = store
        self.conflict_retries = conflict_retries
        self.cache_size = cache_size
        # The shards this writer read or wrote last: a write whose copy went stale (another
        # replica wrote meanwhile) fails its version check and reloads.
        self._cache: OrderedDict[str, Stored] = OrderedDict()

    async def put(
        self, kind: str, listed: Callable[[Any], tuple[Any, ...]], states: Iterable[Stored]
    ) -> int:
        """Sets the entries of ``states`` (aggregates of ``kind`` as stored) where they are newer
        than the listing's, then raises the agencies' heads; the number of shards written."""
        wanted: dict[tuple[str, int], dict[str, Entry]] = defaultdict(dict)
        for stored in states:
            state = stored.state
            entry = (getattr(state, LISTED_VERSION), *listed(state))
            wanted[(state.agency_id, shard_of(state.company_id))][state.company_id] = entry
        pending = {shard_key(kind, agency, n): (agency, n, e) for (agency, n), e in wanted.items()}
        # The version of each shard as it now stands, by agency: what its head must reach.
        reached: dict[str, dict[int, int]] = defaultdict(dict)
        written = 0
        for _ in range(self.conflict_retries):
            if not pending:
                break
            current = await self._load(ListingShard, list(pending))
            writes: list[Write] = []
            for key, (agency, number, entries) in pending.items():
                now = current.get(key)
                shard = merged(now.state if now else None, kind, agency, number, entries)
                if shard is not None:
                    writes.append(Write(key, now.version if now else 0, shard))
                elif now is not None:
                    reached[agency][number] = now.version
            conflicts = await self.store.save(COLLECTION, writes) if writes else set()
            for write in writes:
                if write.key in conflicts:
                    self._cache.pop(write.key, None)
                    continue
                self._remember(write.key, Stored(write.expected_version + 1, write.state))
                reached[write.state.agency_id][write.state.shard] = write.expected_version + 1
                written += 1
            pending = {key: pending[key] for key in conflicts}
        if pending:
            raise ListingsConflict(f"{len(pending)} listing shards of {kind} kept changing")
        await self._raise_heads(kind, reached)
        return written

    async def _raise_heads(self, kind: str, reached: dict[str, dict[int, int]]) -> None:
        """Each head to at least the versions its shards reached. Also where this writer wrote
        nothing: a writer that died between a shard and its head left the head behind, and the
        message that comes again finds it so."""
        pending = {head_key(kind, agency): (agency, v) for agency, v in reached.items()}
        for _ in range(self.conflict_retries):
            if not pending:
                return
            current = await self._load(ListingHead, list(pending))
            writes: list[Write] = []
            for key, (agency, versions) in pending.items():
                now = current.get(key)
                head = raised(now.state if now else None, kind, agency, versions)
                if head is not None:
                    writes.append(Write(key, now.version if now else 0, head))
            conflicts = await self.store.save(COLLECTION, writes) if writes else set()
            for write in writes:
                if write.key in conflicts:
                    self._cache.pop(write.key, None)
                else:
                    self._remember(write.key, Stored(write.expected_version + 1, write.state))
            pending = {key: pending[key] for key in conflicts}
        if pending:
            raise ListingsConflict(f"{len(pending)} listing heads of {kind} kept changing")

    async def _load(self, state_type: type[Any], keys: list[str]) -> dict[str, Stored]:
        found = {key: self._cache[key] for key in keys if key in self._cache}
        missing = [key for key in keys if key not in found]
        if missing:
            loaded = await self.store.load(COLLECTION, state_type, missing)
            for key, stored in loaded.items():
                self._remember(key, stored)
            found.update(loaded)
        return found

    def _remember(self, key: str, stored: Stored) -> None:
        self._cache[key] = stored
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self) -> None:
        self._cache.clear()


# Which kinds' listings are complete: a kind is built once from every stored aggregate, so that
# aggregates written before their owner kept a listing show in the overview too.
BUILT = "listings_built"


async def build(
    store: Store, rulebooks: Iterable[Rulebook[Any]], at: dt.datetime, page: int = 500
) -> dict[str, int]:
    """Lists every stored aggregate of each listed kind not yet built; the number listed per
    kind. Safe beside running owners: an entry only ever moves to a later write."""
    listed: dict[str, int] = {}
    for rulebook in rulebooks:
        if rulebook.listed is None:
            continue
        marker = f"{rulebook.collection}: {LAYOUT}"
        if await store.fetch(BUILT, [marker]):
            continue
        writer = ListingWriter(store)
        count = 0
        async for chunk in store.each(rulebook.collection, rulebook.state_type, page):
            await writer.put(rulebook.collection, rulebook.listed, chunk)
            count += len(chunk)
        await store.record(BUILT, [{"_id": marker, "kind": rulebook.collection, "at": at}])
        listed[rulebook.collection] = count
    return listed
