"""The MongoDB store, on PyMongo's async API, within what FerretDB 1.24 supports.

Used features: single-document replace and insert in an unordered ``bulk_write``, ``find`` with
``$in``/``$lte``/``$nin``, and plain indexes. No transactions, change streams or ``$lookup``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import AsyncMongoClient, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.store.port import VERSION_FIELD, Index, Stored, Write, from_document, to_document

DUPLICATE_KEY = 11000


class IncompleteWriteResult(RuntimeError):
    """The server's answer to a write could not be read: a passing failure, retried."""


def connect(url: str, timeout_ms: int) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms * 4,
    )


class MongoStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.database = database

    async def load(
        self, collection: str, state_type: type[Any], keys: Iterable[str]
    ) -> dict[str, Stored]:
        wanted = list(keys)
        if not wanted:
            return {}
        cursor = self.database[collection].find({"_id": {"$in": wanted}})
        return {document["_id"]: from_document(document, state_type) async for document in cursor}

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        if not writes:
            return set()
        operations: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = []
        for write in writes:
            document = to_document(write.key, write.expected_version + 1, write.state)
            if write.expected_version == 0:
                operations.append(InsertOne(document))
            else:
                selector = {"_id": write.key, VERSION_FIELD: write.expected_version}
                operations.append(ReplaceOne(selector, document))
        outcome: Mapping[str, Any]
        try:
            result = await self.database[collection].bulk_write(operations, ordered=False)
            outcome = result.bulk_api_result
        except KeyError as error:
            # PyMongo could not merge the server's answer: FerretDB sometimes answers a replace
            # it could not run (its SQLite busy with another writer) without the counts.
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
            conflicts |= await self._stale(collection, writes)
        return conflicts

    async def _stale(self, collection: str, writes: Sequence[Write]) -> set[str]:
        """Which replaces matched nothing: the bulk result only counts them.

        A replace wrote version n+1 if the document now has version n+1 and the state we wrote;
        another writer that won the race wrote n+1 too, so the state tells them apart.
        """
        keys = [w.key for w in writes if w.expected_version]
        cursor = self.database[collection].find({"_id": {"$in": keys}})
        current = {document["_id"]: document async for document in cursor}
        stale: set[str] = set()
        for write in writes:
            if not write.expected_version:
                continue
            document = current.get(write.key)
            expected = to_document(write.key, write.expected_version + 1, write.state)
            if document is None or document != expected:
                stale.add(write.key)
        return stale

    async def due(
        self, collection: str, now: dt.datetime, limit: int, exclude: Iterable[str] = ()
    ) -> list[str]:
        query: dict[str, Any] = {"due_at": {"$lte": now}}
        skip = list(exclude)
        if skip:
            query["_id"] = {"$nin": skip}
        cursor = self.database[collection].find(query, {"_id": 1}).sort("_id", 1).limit(limit)
        return [document["_id"] async for document in cursor]

    async def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None:
        target = self.database[collection]
        await target.create_index([("due_at", 1)])
        for index in indexes:
            await target.create_index(list(index))

    async def record(self, collection: str, documents: Sequence[dict[str, Any]]) -> None:
        if documents:
            await self.database[collection].bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in documents], ordered=False
            )

    async def increment(self, collection: str, id: str, counts: dict[str, int]) -> None:
        if counts:
            await self.database[collection].update_one({"_id": id}, {"$inc": counts}, upsert=True)

    async def fetch(self, collection: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        return await self.database[collection].find({"_id": {"$in": list(ids)}}).to_list()

    async def ping(self) -> None:
        await self.database.command("ping")
