"""A dict-backed store for unit tests of the runtime; held to the same suite as MongoDB."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from services.store.port import (
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


class MemoryStore:
    def __init__(
        self,
        collections: dict[str, dict[str, dict[str, Any]]] | None = None,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        self.collections: dict[str, dict[str, dict[str, Any]]] = (
            {} if collections is None else collections
        )
        self.scope: dict[str, Any] = dict(scope or {})
        self.fail_next: Exception | None = None  # lets a test make the next call fail once

    def scoped(self, **fields: Any) -> MemoryStore:
        return MemoryStore(self.collections, {**self.scope, **fields})

    def _in_scope(self, document: Mapping[str, Any]) -> bool:
        return all(document.get(k) == v for k, v in self.scope.items())

    async def find_plain(self, collection: str, equal: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._maybe_fail()
        documents = self.collections.get(collection, {}).values()
        return [copy.deepcopy(d) for d in documents if all(d.get(k) == v for k, v in equal.items())]

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    async def load(
        self, collection: str, state_type: type[Any], keys: Iterable[str]
    ) -> dict[str, Stored]:
        self._maybe_fail()
        documents = self.collections.get(collection, {})
        return {
            key: from_document(copy.deepcopy(documents[key]), state_type)
            for key in keys
            if key in documents
        }

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        self._maybe_fail()
        parts = self.collections.setdefault(apart(collection), {})
        for write in writes:
            for part in parts_of(write.key, write.state):
                parts.setdefault(part["_id"], part)
        documents = self.collections.setdefault(collection, {})
        conflicts: set[str] = set()
        for write in writes:
            current = documents.get(write.key)
            current_version = current[VERSION_FIELD] if current else 0
            if current_version != write.expected_version:
                conflicts.add(write.key)
                continue
            documents[write.key] = to_document(
                write.key, write.expected_version + 1, write.state, self.scope
            )
        return conflicts

    async def parts(
        self, collection: str, key: str, digests: Mapping[str, str]
    ) -> dict[str, bytes]:
        self._maybe_fail()
        stored = self.collections.get(apart(collection), {})
        found = {name: stored.get(part_id(key, name, digest)) for name, digest in digests.items()}
        return {name: part[PART_BYTES] for name, part in found.items() if part is not None}

    async def due(
        self,
        collection: str,
        now: dt.datetime,
        *,
        after: dt.datetime | None = None,
        since: dt.datetime | None = None,
        batch: int = 512,
    ) -> AsyncGenerator[list[tuple[dt.datetime, str]], None]:
        self._maybe_fail()
        found = sorted(
            (document["due_at"], key)
            for key, document in self.collections.get(collection, {}).items()
            if document.get("due_at") is not None
            and (after is None or document["due_at"] > after)
            and document["due_at"] <= now
            and self._in_scope(document)
        )
        for start in range(0, len(found), batch):
            yield found[start : start + batch]

    async def each(
        self, collection: str, state_type: type[Any], page: int = 500
    ) -> AsyncIterator[list[Stored]]:
        self._maybe_fail()
        documents = list(self.collections.get(collection, {}).values())
        for start in range(0, len(documents), page):
            chunk = documents[start : start + page]
            yield [from_document(copy.deepcopy(d), state_type) for d in chunk]

    async def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None:
        self.collections.setdefault(collection, {})

    async def record(self, collection: str, documents: Sequence[dict[str, Any]]) -> None:
        self._maybe_fail()
        target = self.collections.setdefault(collection, {})
        for document in documents:
            target[document["_id"]] = copy.deepcopy(document)

    async def pending_outboxes(self, collection: str, state_type: type[Any]) -> dict[str, Stored]:
        self._maybe_fail()
        documents = self.collections.get(collection, {}).values()
        return {
            d["_id"]: from_document(copy.deepcopy(d), state_type)
            for d in documents
            if d.get(OUTBOX_PENDING_FIELD) and self._in_scope(d)
        }

    async def ensure_ttl(self, collection: str, field: str, seconds: int) -> bool:
        return False

    async def delete_before(self, collection: str, field: str, before: dt.datetime) -> int:
        self._maybe_fail()
        target = self.collections.setdefault(collection, {})
        old = [key for key, doc in target.items() if field in doc and doc[field] < before]
        for key in old:
            del target[key]
        return len(old)

    async def increment(self, collection: str, id: str, counts: dict[str, int]) -> None:
        self._maybe_fail()
        document = self.collections.setdefault(collection, {}).setdefault(id, {"_id": id})
        for name, value in counts.items():
            document[name] = document.get(name, 0) + value

    async def lower(self, collection: str, id: str, field: str, value: dt.datetime) -> None:
        self._maybe_fail()
        document = self.collections.get(collection, {}).get(id)
        if document is not None and (document.get(field) is None or value < document[field]):
            document[field] = value
            document[VERSION_FIELD] = document.get(VERSION_FIELD, 0) + 1

    async def settle(
        self, collection: str, id: str, field: str, value: dt.datetime, seen: int | None
    ) -> bool:
        self._maybe_fail()
        target = self.collections.setdefault(collection, {})
        version = target[id].get(VERSION_FIELD) if id in target else None
        if version == seen:
            target[id] = {"_id": id, field: value, VERSION_FIELD: (version or 0) + 1}
            return True
        await self.lower(collection, id, field, value)
        return False

    async def fetch(self, collection: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        self._maybe_fail()
        documents = self.collections.get(collection, {})
        return [copy.deepcopy(documents[i]) for i in ids if i in documents]

    async def ping(self) -> None:
        self._maybe_fail()
