"""A tab's settled years, kept packed and apart (docs/architecture.md, "A company's age").

A tab shows every period since tracking began. Kept whole, its document, and with it the cost of
every message that reads, works out and writes it, would grow with the company's age. So a
calendar year that nothing can change any more is packed: its facts, rows and history as one
compressed JSON, which the store keeps in a document of its own. The tab keeps, per packed
year, only the counts of its statuses (what the overview's summary needs) and the digest of
its packing, which names that document.

A year is settled when it is over, it is not the year of the tab's last period, each of its rows
is settled by the tab's own rule (time cannot change it, and nobody is waiting on it) and none
of its facts lies after the tab's time. Only a message about a packed year (a fact for one of
its periods, or a change of the company, which can change every row) unpacks it, and it is
packed again as soon as it is settled again. Whether a year is packed depends only on the facts
and the time, never on the order messages came in, so the ordering properties hold for packed
tabs too.

The rules stay pure: a rule that needs a packed year whose bytes it was not handed raises
`PackedYearsNeeded`, and the runtime loads them and applies the message again.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgspec

from consumers.stockholm import today


class PackedYear(msgspec.Struct, frozen=True, omit_defaults=True):
    counts: dict[str, int]
    digest: str  # of `packed`: names the document that keeps it
    # zlib of the year's facts, rows and history as JSON; empty until loaded (the tab's own
    # document does not keep it).
    packed: bytes = b""


class PackedYearsNeeded(Exception):
    """A rule needs these packed years' bytes: load them and apply the message again."""

    def __init__(self, years: Iterable[str]) -> None:
        self.years = frozenset(years)
        super().__init__(f"packed years needed: {sorted(self.years)}")


# A tab (consumers/tab.py, which builds on this module): one that packs its years has
# `PACKS_YEARS`, `now`, `facts` by period key, `periods` (rows), `history` and `archive`, and
# says which rows and facts are settled (`settled_row`, `settled_facts`).
P = TypeVar("P", bound=msgspec.Struct)


def year_of(label: str) -> str:
    """The calendar year of a period label (`2024-03`, `2024-Q1`, `2024-07-01/2025-06-30`) or a
    facts key: the year the period begins."""
    return label[:4]


_encoder = msgspec.json.Encoder()
_year_types: dict[type[Any], tuple[type[Any], msgspec.json.Decoder[Any]]] = {}


def _year_type(tab_type: type[Any]) -> tuple[type[Any], msgspec.json.Decoder[Any]]:
    """The struct a packed year of ``tab_type`` decodes to: its own types of facts and rows."""
    found = _year_types.get(tab_type)
    if found is None:
        types = {f.name: f.type for f in msgspec.structs.fields(tab_type)}
        year = msgspec.defstruct(
            f"{tab_type.__name__}Year",
            [(name, types[name]) for name in ("facts", "periods", "history")],
            kw_only=True,
        )
        found = _year_types[tab_type] = (year, msgspec.json.Decoder(year))
    return found


def opened_year(tab_type: type[Any], packed: PackedYear) -> Any:
    """A packed year's facts, periods (rows) and history, in ``tab_type``'s own types (its
    bytes loaded: see `require`)."""
    return _year_type(tab_type)[1].decode(zlib.decompress(packed.packed))


def require(archive: Mapping[str, PackedYear], years: Iterable[str]) -> None:
    """Raises `PackedYearsNeeded` for those of ``years`` packed but not loaded."""
    missing = [year for year in years if year in archive and not archive[year].packed]
    if missing:
        raise PackedYearsNeeded(missing)


def loaded(state: P, found: Mapping[str, bytes]) -> P:
    """``state`` with the bytes of its packed years ``found`` (year to bytes) in place."""
    tab: Any = state
    archive = {
        year: msgspec.structs.replace(packed, packed=found[year]) if year in found else packed
        for year, packed in tab.archive.items()
    }
    return msgspec.structs.replace(state, archive=archive)


def as_stored(state: P) -> P:
    """``state`` as the store loads it: its packed years' bytes left in their own documents."""
    tab: Any = state
    archive = getattr(tab, "archive", None)
    if not archive or not any(packed.packed for packed in archive.values()):
        return state
    kept = {year: msgspec.structs.replace(packed, packed=b"") for year, packed in archive.items()}
    return msgspec.structs.replace(state, archive=kept)


def packed_counts(archive: dict[str, PackedYear]) -> Counter[str]:
    """The statuses of the packed years' rows."""
    counts: Counter[str] = Counter()
    for year in archive.values():
        counts.update(year.counts)
    return counts


def packed(state: P) -> P:
    """``state`` with every settled year that is not yet packed, packed (see the module)."""
    tab: Any = state
    if not tab.PACKS_YEARS or tab.now is None or not tab.periods:
        return state
    last = year_of(tab.periods[-1].period)
    if all(year_of(row.period) >= last for row in tab.periods):
        return state  # no earlier year to pack: every message of a company's newest year
    this_year = str(today(tab.now).year)
    rows: dict[str, list[Any]] = {}
    for row in tab.periods:
        rows.setdefault(year_of(row.period), []).append(row)
    facts: dict[str, dict[str, Any]] = {}
    for key, value in tab.facts.items():
        facts.setdefault(year_of(key), {})[key] = value
    now = tab.now
    settled = {
        year
        for year, found in rows.items()
        if year < this_year
        and year < last
        and all(tab.settled_row(row) for row in found)
        and all(tab.settled_facts(value, now) for value in facts.get(year, {}).values())
    }
    if not settled:
        return state
    year_type, _ = _year_type(type(tab))
    archive = dict(tab.archive)
    for year in settled:
        content = year_type(
            facts=dict(sorted(facts.get(year, {}).items())),
            periods=rows[year],
            history=[entry for entry in tab.history if year_of(entry.period) == year],
        )
        packed_bytes = zlib.compress(_encoder.encode(content), 1)
        archive[year] = PackedYear(
            counts=dict(Counter(row.status for row in rows[year])),
            digest=hashlib.blake2b(packed_bytes, digest_size=10).hexdigest(),
            packed=packed_bytes,
        )
    return msgspec.structs.replace(
        state,
        archive=dict(sorted(archive.items())),
        facts={k: v for k, v in tab.facts.items() if year_of(k) not in settled},
        periods=[row for row in tab.periods if year_of(row.period) not in settled],
        history=[entry for entry in tab.history if year_of(entry.period) not in settled],
    )


def reopened(state: P, years: Iterable[str] | None) -> P:
    """``state`` with the packed ``years`` (None: all) unpacked: their facts back among the
    others, so that the tab's rules work their periods out again."""
    tab: Any = state
    if not tab.archive:
        return state
    chosen = list(tab.archive) if years is None else [y for y in years if y in tab.archive]
    if not chosen:
        return state
    require(tab.archive, chosen)
    archive = dict(tab.archive)
    facts = dict(tab.facts)
    for year in chosen:
        facts.update(opened_year(type(tab), archive.pop(year)).facts)
    return msgspec.structs.replace(state, archive=archive, facts=facts)


def unpacked(state: P, years: Iterable[str] | None = None) -> P:
    """``state`` as if ``years`` (None: all) were not packed: their rows, history entries and
    facts among the others (for readers that compare or show periods of packed years: the
    outbound events of a change to one, the tests)."""
    tab: Any = state
    chosen = [y for y in (tab.archive if years is None else years) if y in tab.archive]
    if not chosen:
        return state
    require(tab.archive, chosen)
    opened = [opened_year(type(tab), tab.archive[year]) for year in chosen]
    facts = dict(tab.facts)
    for year in opened:
        facts.update(year.facts)

    def by_year(item: Any) -> str:
        return year_of(item.period)

    # A year is either packed or not, and each keeps its own order: sort stably by year.
    periods = sorted([*(row for y in opened for row in y.periods), *tab.periods], key=by_year)
    history = sorted(
        [*(entry for y in opened for entry in y.history), *tab.history],
        key=lambda e: (e.at, e.period),
    )
    archive = {year: packed for year, packed in tab.archive.items() if year not in chosen}
    return msgspec.structs.replace(
        state, archive=archive, facts=facts, periods=periods, history=history
    )


def moved_years(before: Mapping[str, PackedYear], after: Mapping[str, PackedYear]) -> set[str]:
    """The years packed in one archive and not packed the same way in the other."""

    def digest(archive: Mapping[str, PackedYear], year: str) -> str | None:
        found = archive.get(year)
        return None if found is None else found.digest

    return {year for year in {*before, *after} if digest(before, year) != digest(after, year)}
