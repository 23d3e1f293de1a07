"""The MongoDB store, on PyMongo's async API, for MongoDB itself and for FerretDB 1.24.

The server tells which it is (``buildInfo`` names FerretDB's version), and the store speaks to
each as it is built to be used:

- **MongoDB**: many aggregates in one ``find`` with ``$in`` and one unordered ``bulk_write``; the
  indexes serve ranges and sorts, so only MongoDB gets them.
- **FerretDB**: FerretDB pushes only a filter by equality down to its storage: ``$in``, ranges
  and sorts read the whole collection, so aggregates are looked up one ``_id`` at a time, at most
  ``concurrency`` at once. The FerretDB that ``deploy/servers.sh`` builds hands an ``_id`` among
  a list of strings to its storage (on PostgreSQL, to the ``_id`` index), and says so in
  ``buildInfo`` (``ferretdbFeatures.idInPushdown``): there the store reads many aggregates in
  one ``find`` with ``$in``, as on MongoDB. FerretDB runs the statements of a write command
  one after another, so a save spreads its writes evenly over up to ``FERRETDB_COMMANDS``
  bulk commands sent at once, each of at most ``FERRETDB_CHUNK`` statements: FerretDB 1.24 as
  released holds a storage connection per statement of a write command until the whole
  command ends, which deadlocks its pool for good once the statements of the commands under
  way outnumber it (50 connections on PostgreSQL). The FerretDB that ``deploy/servers.sh``
  builds is fixed, and says so in ``buildInfo`` (``ferretdbFeatures.writeStatementsUnbounded``):
  there a save's commands carry all its writes, half each, so a batch of 256 tabs is 2
  commands rather than 32: each command costs our process a round of PyMongo's whatever its
  size (docs/benchmarks.md (28)), and that FerretDB writes a command's replaces in one
  transaction, so with one commit (29). Two such commands keep both cores of PostgreSQL's
  busy. A save stays within that bound on a FerretDB that is not.

Used features, all within FerretDB 1.24: single-document insert, replace and find, ``$in``,
``$lte``/``$gt`` in filters, cursors read in batches, ``$inc``/``$min`` updates, plain indexes
(counters and watermarks on FerretDB: a guarded replace, see ``_change_guarded``).
No transactions, change streams or ``$lookup``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from consumers.stockholm import today as stockholm_day
from services.store.port import (
    DUE_DAY_FIELD,
    OUTBOX_PENDING_FIELD,
    PART_BYTES,
    VERSION_FIELD,
    Index,
    Stored,
    Write,
    apart,
    from_document,
    part_id,
    parts_of,
    to_document,
)

DUPLICATE_KEY = 11000
# MongoDB takes large batches in one command; these bound a command's size, not correctness.
MONGO_CHUNK = 1000
INDEX_OPTIONS_CONFLICT = 85
# A save's commands under way hold at most 4 times 8 statements: well under FerretDB's pool,
# however many statements it holds at once.
FERRETDB_CHUNK = 8
FERRETDB_COMMANDS = 4
# Where FerretDB holds no connection per statement (the one deploy/servers.sh builds), a save
# goes in this many commands, each one transaction there: half each, two commits.
FERRETDB_UNBOUNDED_COMMANDS = 2
# Rounds of a read and a guarded write that a change of counters or of a watermark may take
# while other writers win (one wins each round).
GUARDED_ROUNDS = 50

T = TypeVar("T")
R = TypeVar("R")


class IncompleteWriteResult(RuntimeError):
    """The server's answer to a write could not be read: a passing failure, retried."""


def connect(url: str, timeout_ms: int, **options: Any) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(
        url,
        **options,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms * 4,
        # A failed request is not sent again by the driver: the consumer waits for the store
        # as a whole instead (FerretDB may still be working on the request that timed out).
        retryWrites=False,
        retryReads=False,
    )


async def _upsert(target: AsyncCollection[Any], document: dict[str, Any]) -> None:
    """Replaces or inserts a plain document by ``_id``. Two upserts of one new ``_id`` at once
    can both find nothing and both insert; MongoDB then retries the loser itself, FerretDB
    answers it with a duplicate key. The document exists by then, so once more replaces it
    (replicas of a consumer record the same marker as they start)."""
    try:
        await target.replace_one({"_id": document["_id"]}, document, upsert=True)
    except DuplicateKeyError:
        await target.replace_one({"_id": document["_id"]}, document, upsert=True)


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MongoStore:
    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        concurrency: int = 8,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        self.database = database
        self.concurrency = concurrency
        self.scope: dict[str, Any] = dict(scope or {})
        self._ferretdb: bool | None = None  # asked of the server on first use
        # Whether the server hands `_id` with `$in` to its storage rather than reading all.
        self._ids_in_a_list = False
        # Whether a write command may hold any number of statements (FerretDB as released
        # deadlocks on more than its pool holds).
        self._statements_unbounded = False

    def scoped(self, **fields: Any) -> MongoStore:
        view = MongoStore(
            self.database, concurrency=self.concurrency, scope={**self.scope, **fields}
        )
        view._ferretdb = self._ferretdb
        view._ids_in_a_list = self._ids_in_a_list
        view._statements_unbounded = self._statements_unbounded
        return view

    async def find_plain(self, collection: str, equal: Mapping[str, Any]) -> list[dict[str, Any]]:
        return await self.database[collection].find(dict(equal)).to_list()

    async def is_ferretdb(self) -> bool:
        if self._ferretdb is None:
            info = await self.database.client.admin.command("buildInfo")
            self._ferretdb = "ferretdbVersion" in info
            features = info.get("ferretdbFeatures", {})
            self._ids_in_a_list = not self._ferretdb or features.get("idInPushdown") is True
            self._statements_unbounded = (
                not self._ferretdb or features.get("writeStatementsUnbounded") is True
            )
        return self._ferretdb

    async def _each(
        self, items: Iterable[T], call: Callable[[T], Awaitable[R]], at_once: int = 0
    ) -> list[R]:
        """``call`` for every item, at most ``at_once`` (or ``concurrency``) at a time, results
        in order."""
        gate = asyncio.Semaphore(at_once or self.concurrency)

        async def gated(item: T) -> R:
            async with gate:
                return await call(item)

        return list(await asyncio.gather(*(gated(item) for item in items)))

    async def _by_ids(self, collection: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        target = self.database[collection]
        if await self.is_ferretdb() and not self._ids_in_a_list:
            found = await self._each(ids, lambda key: target.find_one({"_id": key}))
            return [document for document in found if document is not None]
        documents: list[dict[str, Any]] = []
        for chunk in _chunks(ids, MONGO_CHUNK):
            documents += await target.find({"_id": {"$in": list(chunk)}}).to_list()
        return documents

    async def load(
        self, collection: str, state_type: type[Any], keys: Iterable[str]
    ) -> dict[str, Stored]:
        documents = await self._by_ids(collection, list(dict.fromkeys(keys)))
        return {document["_id"]: from_document(document, state_type) for document in documents}

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        if not writes:
            return set()
        await self._put_parts(
            apart(collection), [p for w in writes for p in parts_of(w.key, w.state)]
        )
        target = self.database[collection]
        if await self.is_ferretdb():
            unbounded = self._statements_unbounded
            at_once = FERRETDB_UNBOUNDED_COMMANDS if unbounded else FERRETDB_COMMANDS
            size = -(-len(writes) // at_once)  # each command a share of the writes
            if not unbounded:
                size = min(FERRETDB_CHUNK, size)
            chunks = list(_chunks(writes, size))
            found = await self._each(chunks, lambda c: self._bulk_save(target, c), at_once=at_once)
            return set().union(*found)
        conflicts: set[str] = set()
        for chunk in _chunks(writes, MONGO_CHUNK):
            conflicts |= await self._bulk_save(target, chunk)
        return conflicts

    async def _put_parts(self, collection: str, parts: Sequence[dict[str, Any]]) -> None:
        """Inserts the parts not yet stored: a part's document is named by its digest, so one
        already there holds the same bytes."""
        if not parts:
            return
        target = self.database[collection]
        size = FERRETDB_CHUNK if await self.is_ferretdb() else MONGO_CHUNK
        for chunk in _chunks(parts, size):
            try:
                await target.insert_many(list(chunk), ordered=False)
            except BulkWriteError as error:
                if any(e.get("code") != DUPLICATE_KEY for e in error.details["writeErrors"]):
                    raise

    async def parts(
        self, collection: str, key: str, digests: Mapping[str, str]
    ) -> dict[str, bytes]:
        ids = {part_id(key, name, digest): name for name, digest in digests.items()}
        found = await self._by_ids(apart(collection), list(ids))
        return {ids[document["_id"]]: document[PART_BYTES] for document in found}

    async def _bulk_save(
        self, target: AsyncCollection[dict[str, Any]], writes: Sequence[Write]
    ) -> set[str]:
        operations: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = []
        for write in writes:
            document = to_document(write.key, write.expected_version + 1, write.state, self.scope)
            if write.expected_version == 0:
                operations.append(InsertOne(document))
            else:
                selector = {"_id": write.key, VERSION_FIELD: write.expected_version}
                operations.append(ReplaceOne(selector, document))
        outcome: Mapping[str, Any]
        try:
            result = await target.bulk_write(operations, ordered=False)
            outcome = result.bulk_api_result
        except KeyError as error:
            raise IncompleteWriteResult(
                f"the server's answer to a bulk write lacked {error}; retry"
            ) from None
        except BulkWriteError as error:
            outcome = error.details
            others = [e for e in outcome["writeErrors"] if e.get("code") != DUPLICATE_KEY]
            if others:
                raise
        conflicts = {writes[e["index"]].key for e in outcome.get("writeErrors", [])}
        replaced = sum(1 for w in writes if w.expected_version)
        if outcome.get("nMatched", 0) < replaced:
            conflicts |= await self._stale(target, writes)
        return conflicts

    async def _stale(
        self, target: AsyncCollection[dict[str, Any]], writes: Sequence[Write]
    ) -> set[str]:
        """Which replaces matched nothing: the bulk result only counts them.

        A replace wrote version n+1 if the document now has version n+1 and the state we wrote;
        another writer that won the race wrote n+1 too, so the state tells them apart.
        """
        keys = [w.key for w in writes if w.expected_version]
        current = {d["_id"]: d for d in await self._by_ids(target.name, keys)}
        stale: set[str] = set()
        for write in writes:
            if not write.expected_version:
                continue
            expected = to_document(write.key, write.expected_version + 1, write.state, self.scope)
            if current.get(write.key) != expected:
                stale.add(write.key)
        return stale

    async def due(
        self,
        collection: str,
        now: dt.datetime,
        *,
        after: dt.datetime | None = None,
        since: dt.datetime | None = None,
        batch: int = 512,
    ) -> AsyncGenerator[list[tuple[dt.datetime, str]], None]:
        if await self.is_ferretdb() and since is not None:
            # FerretDB reads a whole collection for a range, but hands an equality to its
            # storage: so it is asked day by day (`due_day`), from the watermark's day (or
            # the window's) through `now`'s.
            day = stockholm_day(max(since, after) if after else since)
            while day <= stockholm_day(now):
                found = {DUE_DAY_FIELD: day.isoformat(), **self.scope}
                async for pairs in self._pairs(collection, found, after, now, batch):
                    yield pairs
                day += dt.timedelta(days=1)
            return
        # MongoDB's index serves the range. FerretDB without a watermark (once in a
        # collection's life) reads the whole collection for it, once.
        window: dict[str, Any] = {"$lte": now} if after is None else {"$gt": after, "$lte": now}
        query = {"due_at": window, **self.scope}
        async for pairs in self._pairs(collection, query, after, now, batch):
            yield pairs

    async def _pairs(
        self,
        collection: str,
        query: dict[str, Any],
        after: dt.datetime | None,
        now: dt.datetime,
        batch: int,
    ) -> AsyncGenerator[list[tuple[dt.datetime, str]], None]:
        """The pairs due in ``(after, now]`` that ``query`` finds, a server batch at a time (the
        window is checked here too, for a query by day that does not name it)."""
        cursor = self.database[collection].find(query, {"due_at": 1}, batch_size=batch)
        pairs: list[tuple[dt.datetime, str]] = []
        async with cursor:
            async for document in cursor:
                at = document.get("due_at")
                if at is not None and at <= now and (after is None or at > after):
                    pairs.append((at, document["_id"]))
                if len(pairs) == batch:
                    yield pairs
                    pairs = []
        if pairs:
            yield pairs

    async def each(
        self, collection: str, state_type: type[Any], page: int = 500
    ) -> AsyncIterator[list[Stored]]:
        # One cursor over the collection: on FerretDB a query that pages by `_id` would read
        # the whole collection for every page.
        found: list[Stored] = []
        async with self.database[collection].find({}, batch_size=page) as cursor:
            async for document in cursor:
                found.append(from_document(document, state_type))
                if len(found) == page:
                    yield found
                    found = []
        if found:
            yield found

    async def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None:
        target = self.database[collection]
        ours: list[tuple[list[tuple[str, int]], dict[str, Any]]] = [  # keys, options
            ([("due_at", 1), ("_id", 1)], {}),  # the sweep's range
            # The few documents with unpublished outbound messages (the field is absent otherwise).
            ([(OUTBOX_PENDING_FIELD, 1)], {"sparse": True}),
            *((list(index), {}) for index in indexes),
        ]
        if await self.is_ferretdb():
            # FerretDB's storage is served by an index for a filter on `_id` only: it compares
            # any other field by JSON containment, which no index serves. Every other index is
            # one more entry for PostgreSQL to write on each replace, and serves no read; so
            # none is made, and those an earlier version made are dropped.
            keys_of_ours = [keys for keys, _ in ours]
            for name, index in (await target.index_information()).items():
                if list(index["key"]) in keys_of_ours:
                    await target.drop_index(name)
            return
        for keys, options in ours:
            await target.create_index(keys, **options)

    async def record(self, collection: str, documents: Sequence[dict[str, Any]]) -> None:
        if not documents:
            return
        target = self.database[collection]
        if await self.is_ferretdb():
            await self._each(documents, lambda d: _upsert(target, d))
            return
        for chunk in _chunks(documents, MONGO_CHUNK):
            await target.bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in chunk], ordered=False
            )

    async def pending_outboxes(self, collection: str, state_type: type[Any]) -> dict[str, Stored]:
        found = self.database[collection].find({OUTBOX_PENDING_FIELD: True, **self.scope})
        return {d["_id"]: from_document(d, state_type) async for d in found}

    async def ensure_ttl(self, collection: str, field: str, seconds: int) -> bool:
        if await self.is_ferretdb():
            return False  # FerretDB 1.24 answers "expireAfterSeconds is not implemented yet"
        target = self.database[collection]
        try:
            await target.create_index([(field, 1)], expireAfterSeconds=seconds)
        except OperationFailure as error:
            if error.code != INDEX_OPTIONS_CONFLICT:
                raise
            # The TTL changed since the index was made: change it in place.
            await self.database.command(
                "collMod",
                collection,
                index={"keyPattern": {field: 1}, "expireAfterSeconds": seconds},
            )
        return True

    async def delete_before(self, collection: str, field: str, before: dt.datetime) -> int:
        result = await self.database[collection].delete_many({field: {"$lt": before}})
        return result.deleted_count

    async def increment(self, collection: str, id: str, counts: dict[str, int]) -> None:
        if not counts:
            return
        target = self.database[collection]
        if await self.is_ferretdb():

            def added(found: dict[str, Any] | None) -> dict[str, Any]:
                counted = found or {}
                return {**counted, **{k: int(counted.get(k, 0)) + n for k, n in counts.items()}}

            await self._change_guarded(target, id, added)
            return
        try:
            await target.update_one({"_id": id}, {"$inc": counts}, upsert=True)
        except DuplicateKeyError:
            # Two writers upserted the same new document at once: it exists now, so the second
            # try updates it.
            await target.update_one({"_id": id}, {"$inc": counts}, upsert=True)

    async def lower(self, collection: str, id: str, field: str, value: dt.datetime) -> None:
        target = self.database[collection]
        if await self.is_ferretdb():

            def lowered(found: dict[str, Any] | None) -> dict[str, Any] | None:
                if found is None or (found.get(field) is not None and found[field] <= value):
                    return None  # no such document (none is made), or already as early
                return {**found, field: value}

            await self._change_guarded(target, id, lowered)
            return
        # ``$min`` would not tell a concurrent ``settle`` that the document changed.
        earlier = {"$or": [{field: {"$gt": value}}, {field: None}]}
        await target.update_one(
            {"_id": id, **earlier}, {"$set": {field: value}, "$inc": {VERSION_FIELD: 1}}
        )

    async def settle(
        self, collection: str, id: str, field: str, value: dt.datetime, seen: int | None
    ) -> bool:
        """A replace guarded by the version, which MongoDB and the FerretDB we build run as one
        statement, or an insert when there was no document."""
        target = self.database[collection]
        settled = {field: value, VERSION_FIELD: (seen or 0) + 1}
        if seen is not None:
            if (await target.replace_one({"_id": id, VERSION_FIELD: seen}, settled)).matched_count:
                return True
        else:
            try:
                await target.insert_one({"_id": id, **settled})
                return True
            except DuplicateKeyError:
                found = await target.find_one({"_id": id})
                if found is not None and found.get(VERSION_FIELD) is None:
                    # Written before watermarks had versions: replaced once without a guard.
                    await target.replace_one({"_id": id}, settled)
                    return True
        await self.lower(collection, id, field, value)
        return False

    async def _change_guarded(
        self,
        target: AsyncCollection[Any],
        id: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    ) -> None:
        """FerretDB runs ``$inc`` and ``$min`` as a read then a write, so two at once on one
        document lose one: a count, or the earlier instant of a sweep watermark, which the sweep
        would then never read back to. A partition's runner letting go of it and the replica
        taking it over both write its counters and watermark for a moment. So the document is
        read, changed here (``change`` gives the new one, or None for no change), and written
        back by a replace guarded by its version, which the FerretDB we build runs as one
        statement; the loser reads again. A document without the version field (from before
        it, or replaced whole by ``record``) gets one on its next change, with no guard that
        once."""
        for _ in range(GUARDED_ROUNDS):
            found = await target.find_one({"_id": id})
            changed = change(found)
            if changed is None:
                return
            if found is None:
                try:
                    await target.insert_one({**changed, "_id": id, VERSION_FIELD: 1})
                    return
                except DuplicateKeyError:
                    continue  # another writer made it first: change theirs
            version = found.get(VERSION_FIELD)
            guard = {VERSION_FIELD: version} if version is not None else {}
            changed = {**changed, "_id": id, VERSION_FIELD: (version or 0) + 1}
            if (await target.replace_one({"_id": id, **guard}, changed)).matched_count:
                return
        raise RuntimeError(f"{id}: not changed in {GUARDED_ROUNDS} rounds of racing writers")

    async def fetch(self, collection: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        return await self._by_ids(collection, list(dict.fromkeys(ids)))

    async def ping(self) -> None:
        await self.database.command("ping")
