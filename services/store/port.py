"""The store port: versioned aggregate documents, written in bulk with optimistic concurrency.

No transactions are needed (FerretDB has none): each aggregate is one document, and a write
names the version it read, so of two writers racing on one aggregate exactly one wins and the
other reloads and applies again.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lz4.frame
import msgspec
from pymongo.errors import ConnectionFailure, PyMongoError

from consumers.stockholm import today as stockholm_day


@dataclass(frozen=True)
class Stored:
    version: int
    state: Any


@dataclass(frozen=True)
class Write:
    key: str
    expected_version: int  # 0: the aggregate must not exist yet
    state: Any


Index = Sequence[tuple[str, int]]


class Store(Protocol):
    async def load(
        self, collection: str, state_type: type[Any], keys: Iterable[str]
    ) -> dict[str, Stored]: ...

    async def save(self, collection: str, writes: Sequence[Write]) -> set[str]:
        """Writes all it can; returns the keys whose expected version did not match."""
        ...

    def due(
        self,
        collection: str,
        now: dt.datetime,
        *,
        after: dt.datetime | None = None,
        since: dt.datetime | None = None,
        batch: int = 512,
    ) -> AsyncGenerator[list[tuple[dt.datetime, str]], None]:
        """``(due_at, key)`` of every aggregate due after ``after`` and at or before ``now``,
        in batches as one cursor of the server hands them over, in no set order: the sweep
        applies the first while the server reads on. ``since`` promises that nothing is due
        before it (the sweep's watermark). A batch holds at most ``batch`` pairs.
        """
        ...

    async def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None: ...

    def each(
        self, collection: str, state_type: type[Any], page: int = 500
    ) -> AsyncIterator[list[Stored]]:
        """Every aggregate of ``collection``, whoever wrote it, ``page`` at a time, in one pass
        (a read of the whole collection: for work done once, never on a message's path)."""
        ...

    async def record(self, collection: str, documents: Sequence[dict[str, Any]]) -> None:
        """Upserts plain documents by ``_id`` (for records that are not aggregates)."""
        ...

    async def increment(self, collection: str, id: str, counts: dict[str, int]) -> None:
        """Adds ``counts`` to the numeric fields of one plain document (created if missing)."""
        ...

    async def lower(self, collection: str, id: str, field: str, value: dt.datetime) -> None:
        """Sets ``field`` of an existing plain document to ``value`` if that is earlier, and
        then gives the document a new version (``VERSION_FIELD``)."""
        ...

    async def settle(
        self, collection: str, id: str, field: str, value: dt.datetime, seen: int | None
    ) -> bool:
        """Sets a plain document of one ``field`` to ``value``, later or earlier, if it is still
        at version ``seen`` (None: it did not exist, or had no version); else only lowers it to
        ``value``. True when set. A sweep that ran to its end raises its watermark so: a
        lowering that another writer made while it ran is kept, never written over."""
        ...

    async def fetch(self, collection: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The plain documents with these ``_id``s."""
        ...

    async def pending_outboxes(self, collection: str, state_type: type[Any]) -> dict[str, Stored]:
        """The aggregates whose stored state holds unpublished outbound messages."""
        ...

    async def ensure_ttl(self, collection: str, field: str, seconds: int) -> bool:
        """Asks the server to delete plain documents ``seconds`` after their ``field``; False
        when it cannot (FerretDB has no TTL index), and ``delete_before`` must do it."""
        ...

    async def delete_before(self, collection: str, field: str, before: dt.datetime) -> int:
        """Deletes the plain documents whose ``field`` is earlier than ``before``."""
        ...

    async def ping(self) -> None: ...

    def scoped(self, **fields: Any) -> Store:
        """This store for one writer among several on the same collections (a partition):
        the aggregates it saves carry ``fields``, and it finds due and unpublished aggregates
        among those only. Everything else is shared."""
        ...

    async def find_plain(self, collection: str, equal: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The plain documents whose fields equal ``equal`` (an equality FerretDB's storage
        answers itself)."""
        ...

    async def parts(
        self, collection: str, key: str, digests: Mapping[str, str]
    ) -> dict[str, bytes]:
        """The bytes of an aggregate's parts kept apart (a tab's packed years), by name, for the
        digests its state holds (``save`` writes them before the state that names them)."""
        ...


VERSION_FIELD = "_v"


class StoreUnavailable(Exception):
    """The store does not answer, or not in time: wait for it rather than retry each message."""


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the store is down or slow, rather than that a message is bad."""
    if isinstance(error, StoreUnavailable | ConnectionFailure | TimeoutError):
        return True
    return isinstance(error, PyMongoError) and error.timeout


DUE_DAY_FIELD = "due_day"
# Set on a document by the partition that wrote it last (services/partitions.py).
PARTITION_FIELD = "partition"
# Set on a document whose state holds outbound messages not yet confirmed published, so that a
# relay finds them by equality after a crash.
OUTBOX_PENDING_FIELD = "outbox_pending"
# The field of a state that holds its outbound messages (services/outbox.py).
OUTBOX_FIELD = "outbox"
# A state type names, in this class attribute, the fields that no query looks into. The store
# keeps each of them as one JSON text rather than as nested documents: FerretDB converts every
# nested field of every document it writes or reads to and from its storage's JSON, which made a
# tab's replace cost 7.0 ms at one year of history and 19.4 ms at five, against 2.7 and 4.2 ms
# as text (on PostgreSQL, docs/benchmarks.md). What queries filter or sort on stays plain.
STORED_AS_TEXT = "STORED_AS_TEXT"
# A text of at least this many bytes is stored compressed (LZ4's frame format, as BSON binary).
# FerretDB's cost grows with the bytes it writes and reads, and so does PostgreSQL's beneath it:
# a listing shard of 1,250 companies (70-80 KB of JSON) took 9 ms to replace and 4 ms to read as
# text, 3-5 and 2 ms compressed. A tab's rows, history and company facts (0.5 to 4 KB each) gain
# too: compressed, a bookkeeping tab of 9.4 KB became 5.3 KB, and FerretDB and PostgreSQL
# together spent 2.8 ms of CPU on its replace instead of 3.5 to 3.8, and 1.4 ms on its read
# instead of 1.6 to 1.8 (docs/benchmarks.md (12)). Those figures are zlib's; LZ4 leaves a text
# about half as long again as zlib at its fastest level did (481 bytes of 766, against 324), but
# compresses it in 0.8 µs instead of 11 and opens it in 0.5 µs instead of 3.7, which cut our
# CPU a message by a sixth in interleaved ingest while the servers' grew by 1 to 2 per cent
# (docs/benchmarks.md (28)). Below this, a text is left readable: it would save little.
COMPRESSED_FROM = 512

# A state type names, in this class attribute, a field of parts (name to a struct with `digest`
# and the bytes `packed`, which it omits when empty: a tab's packed years, consumers/archive.py)
# whose bytes the store keeps apart, one document per part in `<collection>_packed`, named by
# the aggregate, the part and its digest. The state's own document keeps the rest of each part.
# So a message's read and write of the state does not grow with its parts, and a part's
# document, once written, never changes: a reader of the state finds the very bytes it names.
STORED_APART = "STORED_APART"
PART_BYTES = "packed"


def apart(collection: str) -> str:
    """The collection of ``collection``'s parts kept apart."""
    return f"{collection}_packed"


def part_id(key: str, name: str, digest: str) -> str:
    return f"{key}/{name}/{digest}"


def parts_of(key: str, state: Any) -> list[dict[str, Any]]:
    """The documents of ``state``'s parts kept apart whose bytes it holds (those it made or
    loaded; the store writes them before the state, and a part already stored is left as is)."""
    field = getattr(type(state), STORED_APART, None)
    if field is None:
        return []
    return [
        {"_id": part_id(key, name, part.digest), PART_BYTES: part.packed}
        for name, part in getattr(state, field).items()
        if part.packed
    ]


_text_encoder = msgspec.json.Encoder()


def _packed(value: Any) -> str | bytes:
    """A field's value as its JSON text, compressed when long."""
    text = _text_encoder.encode(value)
    if len(text) < COMPRESSED_FROM:
        return text.decode()
    compressed: bytes = lz4.frame.compress(text)
    return compressed


# An LZ4 frame begins with these bytes; a zlib stream never does (the low four bits of its
# first byte are 8, deflate's number).
LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"


def opened(value: bytes) -> bytes:
    """The text of a compressed field: LZ4, or zlib as the store wrote before it took LZ4 (a
    document keeps what it was written with until it is written again)."""
    if value.startswith(LZ4_FRAME_MAGIC):
        text: bytes = lz4.frame.decompress(value)
        return text
    return zlib.decompress(value)


def _unpacked(decoder: msgspec.json.Decoder[Any], value: str | bytes) -> Any:
    return decoder.decode(opened(value) if isinstance(value, bytes) else value)


_decoders: dict[type[Any], dict[str, msgspec.json.Decoder[Any]]] = {}


def _text_decoders(state_type: type[Any]) -> dict[str, msgspec.json.Decoder[Any]]:
    """A decoder per field that ``state_type`` stores as text (none for most types)."""
    found = _decoders.get(state_type)
    if found is None:
        names: frozenset[str] = getattr(state_type, STORED_AS_TEXT, frozenset())
        fields = msgspec.structs.fields(state_type) if names else ()
        found = {f.name: msgspec.json.Decoder(f.type) for f in fields if f.name in names}
        _decoders[state_type] = found
    return found


def to_document(
    key: str, version: int, state: Any, scope: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A state as a BSON-ready document: instants stay datetimes, dates become ISO strings, and
    the fields its type stores as text are JSON texts (compressed when long).

    A document with a ``due_at`` also gets ``due_day``, the Stockholm day that begins then, so
    that a store can find the aggregates due on a day by equality, the one filter FerretDB
    hands to its storage. A non-empty outbox also sets ``outbox_pending``.
    """
    field = getattr(type(state), STORED_APART, None)
    if field is not None:  # the parts' bytes are kept apart (`parts_of`)
        kept = {
            name: msgspec.structs.replace(part, **{PART_BYTES: b""})
            for name, part in getattr(state, field).items()
        }
        state = msgspec.structs.replace(state, **{field: kept})
    texts = _text_decoders(type(state))
    values = {name: getattr(state, name) for name in texts}
    if values:
        state = msgspec.structs.replace(state, **dict.fromkeys(values))
    # Bytes (a tab's packed years) stay bytes: BSON binary, not base64 text.
    document: dict[str, Any] = msgspec.to_builtins(state, builtin_types=(dt.datetime, bytes))
    for name, value in values.items():
        document[name] = _packed(value)
    document["_id"] = key
    document[VERSION_FIELD] = version
    due_at = document.get("due_at")
    if isinstance(due_at, dt.datetime):
        document[DUE_DAY_FIELD] = stockholm_day(due_at).isoformat()
    if values[OUTBOX_FIELD] if OUTBOX_FIELD in values else document.get(OUTBOX_FIELD):
        document[OUTBOX_PENDING_FIELD] = True
    if scope:
        document.update(scope)
    return document


def _typed_texts(document: dict[str, Any], state_type: type[Any]) -> dict[str, Any]:
    """``document`` with its JSON texts decoded into the state's own types (a document written
    before a field was stored as text keeps its nested form, which converts as before)."""
    decoders = _text_decoders(state_type)
    texts = {
        name: _unpacked(decoders[name], value)
        for name, value in document.items()
        if name in decoders and isinstance(value, str | bytes)
    }
    return {**document, **texts} if texts else document


def from_document(document: dict[str, Any], state_type: type[Any]) -> Stored:
    """The state of a stored document."""
    document = _typed_texts(document, state_type)
    return Stored(version=int(document[VERSION_FIELD]), state=msgspec.convert(document, state_type))


def plain(document: dict[str, Any], state_type: type[Any]) -> dict[str, Any]:
    """A stored document as plain values, for readers that take it field by field (the API):
    the JSON texts of ``state_type`` become what they would be nested, datetimes and all."""
    decoders = _text_decoders(state_type)
    texts = {
        name: msgspec.to_builtins(_unpacked(decoders[name], value), builtin_types=(dt.datetime,))
        for name, value in document.items()
        if name in decoders and isinstance(value, str | bytes)
    }
    return {**document, **texts} if texts else document
