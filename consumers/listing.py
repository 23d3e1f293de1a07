"""The overview's listing: each owner keeps what the overview shows of its aggregates in a few
packed documents per agency, so that the overview reads those instead of every aggregate.

FerretDB hands only equalities to its storage: an overview that sorts every company of an
agency by name, and filters on every tab's counts, reads and converts every one of those
documents, seconds at 10,000 companies. A listing shard is one document holding the entries of
the companies that hash to it, as one JSON text, and a head per kind and agency holds each
shard's version; the overview reads the heads, reads again the shards that moved, and joins
them in memory.

Each shard is written only by the consumer that owns its aggregate kind (the company directory
for ``companies``, each tab's consumer for its tab). An entry holds the aggregate's
``listed_version``: the version of the write at which what the overview shows of it last
changed. A writer sets an entry only where its own is newer, so several replicas of one owner,
in any order, leave each entry as the newest write left it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

# Shards per aggregate kind and agency: a batch writes those it changed, the overview reads those
# that moved. Eight keep the largest of a 10,000-company agency near 110 KB. Changing it needs the
# `listings` and `listings_built` collections dropped (README, "Operations").
SHARDS: Final = 8
COLLECTION: Final = "listings"
# The layout of shards and heads: a consumer that finds the listings of its kinds built in
# another layout (or another number of shards) lists every stored aggregate again.
LAYOUT: Final = f"{SHARDS} shards, heads, flat counts"

# An entry: (listed_version, *summary), the summary as the owner's rulebook lists it. A tuple of
# plain values (a tab's counts flat in it, consumers/tab.py `listed`): the collector stops
# tracking such tuples, so the entries that writers and the API hold, one per company and kind,
# add nothing to the collector's full passes, which stop the whole process.
Entry = tuple[Any, ...]


class ListingShard(msgspec.Struct, kw_only=True):
    STORED_AS_TEXT: ClassVar[frozenset[str]] = frozenset({"entries"})

    kind: str  # the collection of the aggregates it lists
    agency_id: str
    shard: int
    entries: dict[str, Entry] = msgspec.field(default_factory=dict)


class ListingHead(msgspec.Struct, kw_only=True):
    """The version of each shard of one kind and agency, raised after the shards are written:
    a reader compares it with the shards it holds and reads only those that changed."""

    STORED_AS_TEXT: ClassVar[frozenset[str]] = frozenset({"versions"})  # BSON keys are text

    kind: str
    agency_id: str
    versions: dict[int, int] = msgspec.field(default_factory=dict)


def shard_of(company_id: str) -> int:
    """Stable across processes and runs (``hash`` of a string is not)."""
    return zlib.crc32(company_id.encode()) % SHARDS


def shard_key(kind: str, agency_id: str, shard: int) -> str:
    return f"{kind}/{agency_id}/{shard}"


def shard_keys(kind: str, agency_id: str) -> list[str]:
    return [shard_key(kind, agency_id, n) for n in range(SHARDS)]


def head_key(kind: str, agency_id: str) -> str:
    return f"{kind}/{agency_id}"


def newer(current: Entry | None, entry: Entry) -> bool:
    """Whether ``entry`` is to replace ``current``: it lists a later write, or the same write
    listed differently (the summary's code changed)."""
    if current is None:
        return True
    if current[0] != entry[0]:
        return bool(current[0] < entry[0])
    return current != entry


def merged(
    shard: ListingShard | None, kind: str, agency_id: str, number: int, entries: Mapping[str, Entry]
) -> ListingShard | None:
    """``shard`` with ``entries`` set where they are newer; None when none is."""
    found = shard.entries if shard is not None else {}
    changed = {company: e for company, e in entries.items() if newer(found.get(company), e)}
    if not changed:
        return None
    return ListingShard(kind=kind, agency_id=agency_id, shard=number, entries={**found, **changed})


def raised(
    head: ListingHead | None, kind: str, agency_id: str, versions: Mapping[int, int]
) -> ListingHead | None:
    """``head`` with each shard's version raised to ``versions`` where that is later; None when
    none is."""
    found = head.versions if head is not None else {}
    later = {n: v for n, v in versions.items() if v > found.get(n, 0)}
    if not later:
        return None
    return ListingHead(kind=kind, agency_id=agency_id, versions={**found, **later})
