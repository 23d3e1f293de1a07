"""Reading the consumers' documents for the API: every query filters by the caller's agency.

Values from the caller reach a query only as values of known fields (never as keys or
operators), after the route has validated them; the overview's free-text search never reaches
the store (services/api/overview.py escapes it for a regular expression over the listing).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
from typing import Any, Final

import msgspec
from msgspec.structs import replace
from pymongo.asynchronous.database import AsyncDatabase

from consumers.archive import PackedYear, opened_year, year_of
from consumers.directory import CompanyEntry
from consumers.registry import STATE_TYPES
from consumers.stockholm import days_until, today
from contracts.fields import format_instant
from contracts.status import LABELS
from services.api import schemas
from services.api.fresh import Fresh
from services.api.members import Members
from services.api.overview import Filters, Listing, sort_key
from services.pipeline import COMMAND_OUTCOMES
from services.recent import Recent
from services.store.mongo import MongoStore
from services.store.port import part_id, plain

# Company entries the API answers from memory (services/api/fresh.py), at most: those read
# within the age are held, and about 1 KB each.
ENTRIES_KEPT: Final = 4096
# Memberships the API remembers (services/api/members.py): about 100 bytes each.
MEMBERS_KEPT: Final = 16_384
# Packed years the API keeps in memory (a year of monthly periods: about 1 KB).
PACKED_YEARS_KEPT: Final = 20_000

# The tabs whose rows show the days left to their deadline. A stored row keeps only the
# deadline: the days left change every day, and a row that changes every day would be written
# every day.
DAYS_LEFT_SHOWN: Final = frozenset(
    domain
    for domain, row in (
        ("bookkeeping", schemas.BookkeepingRow),
        ("payroll", schemas.PayrollRow),
        ("vat", schemas.VatRow),
        ("closing", schemas.ClosingRow),
    )
    if "days_left" in row.__struct_fields__
)


class BadCursor(ValueError):
    """A cursor this API did not hand out."""


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int, nullable: bool = False) -> list[Any]:
    """The ``size`` values a cursor of this API holds: strings (or None where ``nullable``).
    Anything else a caller sends is a BadCursor, never a query or a comparison that fails."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("the cursor is not one this API handed out") from None
    if not (
        isinstance(values, list)
        and len(values) == size
        and all(isinstance(v, str) or (nullable and v is None) for v in values)
    ):
        raise BadCursor("the cursor is not one this API handed out")
    return values


def label(status: str) -> schemas.Label:
    names = LABELS.get(status, {"sv": status, "en": status})
    return schemas.Label(sv=names["sv"], en=names["en"])


def _key(agency_id: str, company_id: str) -> str:
    return f"{agency_id}/{company_id}"


class ReadModel:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], max_age_s: float = 0.0) -> None:
        self.db = database
        # Many documents by _id the way the server serves them best ($in on MongoDB, lookups
        # one by one on FerretDB, where $in reads the whole collection).
        self.store = MongoStore(database)
        # The listing's heads and the company entries may be up to `max_age_s` old; nothing
        # else the API reads is held.
        self.listing = Listing(self.store, max_age_s)
        self._entries: Fresh[dict[str, Any] | None] = Fresh(max_age_s, ENTRIES_KEPT)
        # Callers let into a company's tabs: let in again without reading its entry, unless
        # the store is to be read for every request.
        self.members = Members(MEMBERS_KEPT if max_age_s > 0 else 0)
        # Packed years by (tab kind, id of the year's document): a document that never changes
        # (services/store/port.py), so a copy read once is good for good.
        self._packed: Recent[bytes] = Recent(PACKED_YEARS_KEPT)

    # ----------------------------------------------------------- companies
    def forget(self, agency_id: str, company_id: str) -> None:
        """What a command for the company may have changed is read again at the next request:
        its entry and the agency's overview."""
        self._entries.forget(_key(agency_id, company_id))
        self.listing.forget(agency_id)

    async def company_entry(
        self, agency_id: str, company_id: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        """The company's entry, as read up to `max_age_s` before unless ``fresh``. Callers
        must not change it: requests share it."""
        key = _key(agency_id, company_id)
        if fresh:
            self._entries.forget(key)
        return await self._entries.get(key, lambda: self._company_entry(key))

    async def _company_entry(self, key: str) -> dict[str, Any] | None:
        entry = await self.db["companies"].find_one({"_id": key})
        return None if entry is None else plain(entry, CompanyEntry)

    async def agency_user_by_email(self, agency_id: str, email: str) -> dict[str, Any] | None:
        return await self.db["agency_users"].find_one(
            {"agency_id": agency_id, "email_key": email.lower(), "active": True}
        )

    async def agency_user(self, agency_id: str, user_id: str) -> dict[str, Any] | None:
        return await self.db["agency_users"].find_one({"_id": _key(agency_id, user_id)})

    async def company(self, entry: dict[str, Any]) -> schemas.Company:
        details = (entry.get("facts") or {}).get("details") or {}
        user_ids = [u["user_id"] for u in entry.get("users", [])]
        keys = [_key(entry["agency_id"], u) for u in user_ids]
        directory = {d["user_id"]: d for d in await self.store.fetch("agency_users", keys)}
        return schemas.Company(
            company_id=entry["company_id"],
            name=details.get("name"),
            org_number=details.get("org_number"),
            legal_form=details.get("legal_form"),
            accounting_method=details.get("accounting_method"),
            vat_frequency=details.get("vat_frequency"),
            fiscal_year_start=_date(details.get("fiscal_year_start")),
            fiscal_year_end=_date(details.get("fiscal_year_end")),
            connected=bool(entry.get("connected", True)),
            users=[
                schemas.CompanyUserOut(
                    user_id=u,
                    email=directory.get(u, {}).get("email"),
                    name=directory.get(u, {}).get("name"),
                )
                for u in user_ids
            ],
            engagement=schemas.EngagementOut(
                start_month=entry.get("engagement_start"),
                responsible_user_id=entry.get("responsible_user_id"),
            ),
        )

    async def overview(
        self,
        agency_id: str,
        *,
        responsible: str | None,
        domain: str | None,
        status: str | None,
        q: str | None,
        limit: int,
        cursor: str | None,
    ) -> schemas.Overview:
        """Connected companies by name, then id: a stable order for cursor paging. Read from the
        owners' listing shards (services/api/overview.py), never from every aggregate."""
        after = None
        if cursor is not None:
            name, company_id = decode_cursor(cursor, 2, nullable=True)
            after = sort_key(name, company_id)
        filters = Filters(responsible=responsible, domain=domain, status=status, q=q or None)
        items, more = await self.listing.page(agency_id, filters, limit, after)
        next_cursor = None if more is None else encode_cursor([items[-1].name, more[2]])
        return schemas.Overview(items=items, next_cursor=next_cursor)

    # ----------------------------------------------------------- tabs
    async def tab(self, domain: str, agency_id: str, company_id: str, now: dt.datetime) -> Any:
        found = await self.db[domain].find_one(
            {"_id": _key(agency_id, company_id)}, {"header": 1, "periods": 1, "archive": 1}
        )
        doc = plain(found or {}, STATE_TYPES[domain])
        header = doc.get("header") or {}
        rows = await self._with_packed_years(domain, doc, "periods")
        counts_days = domain in DAYS_LEFT_SHOWN
        day = today(now)
        for row in rows:
            row["status_label"] = label(row["status"])
            if counts_days:
                row["days_left"] = days_until(dt.date.fromisoformat(row["deadline"]), day)
        match domain:
            case "bookkeeping":
                return _convert(
                    schemas.BookkeepingTab,
                    header,
                    rows,
                    {
                        "client_todo_count": 0,
                        "last_upload_at": None,
                        "vat_frequency": None,
                        "fiscal_year_end": None,
                    },
                )
            case "payroll":
                return _convert(
                    schemas.PayrollTab,
                    header,
                    rows,
                    {
                        "latest_completed_month": None,
                        "employees": None,
                        "employer_declaration_due": None,
                    },
                )
            case "vat":
                return _convert(
                    schemas.VatTab,
                    header,
                    rows,
                    {
                        "last_bookkeeping_at": None,
                        "vat_frequency": None,
                        "next_fiscal_year_end": None,
                    },
                )
            case _:
                return _convert(
                    schemas.ClosingTab, header, rows, {"legal_form": None, "fiscal_year_end": None}
                )

    async def history(
        self, agency_id: str, company_id: str, domain: str | None, limit: int, cursor: str | None
    ) -> schemas.History:
        """Every status change of every tab, newest first. The tabs are read at once rather than
        one after the other: a lookup waits for the store far longer than it costs here."""
        key = _key(agency_id, company_id)

        async def of(name: str) -> list[dict[str, Any]]:
            doc = await self.db[name].find_one({"_id": key}, {"history": 1, "archive": 1})
            return await self._with_packed_years(
                name, plain(doc or {}, STATE_TYPES[name]), "history"
            )

        found = await asyncio.gather(
            *(of(name) for name in ([domain] if domain else schemas.DOMAINS))
        )
        entries = [entry for entries_of_tab in found for entry in entries_of_tab]

        def order(e: dict[str, Any]) -> tuple[str, str, str, str]:
            return (format_instant(e["at"]), e["domain"], e["period"], e["to"])

        entries.sort(key=order, reverse=True)
        if cursor is not None:
            after = tuple(decode_cursor(cursor, 4))
            entries = [e for e in entries if order(e) < after]
        page = entries[:limit]
        next_cursor = encode_cursor(list(order(page[-1]))) if len(entries) > limit else None
        items = [
            schemas.HistoryItem(
                domain=e["domain"],
                period=e["period"],
                from_=e["from"],
                to=e["to"],
                at=e["at"],
                cause=schemas.Cause(kind=e["cause"]["kind"], id=e["cause"].get("id")),
            )
            for e in page
        ]
        return schemas.History(items=items, next_cursor=next_cursor)

    async def _with_packed_years(
        self, domain: str, doc: dict[str, Any], field: str
    ) -> list[dict[str, Any]]:
        """A tab's ``field`` (its rows, or its history) with those of its packed years
        (consumers/archive.py), oldest year first, as plain values."""
        found: list[dict[str, Any]] = doc.get(field) or []
        archive = {
            year: msgspec.convert(p, PackedYear) for year, p in (doc.get("archive") or {}).items()
        }
        if not archive:
            return found
        digests = {year: packed.digest for year, packed in archive.items()}
        stored = await self._packed_years(domain, doc["_id"], digests)
        missing = sorted(set(digests) - set(stored))
        if missing:  # written before the tab that names them, never deleted
            raise LookupError(f"{domain} {doc['_id']}: packed years {missing} missing")
        packed = [
            item
            for year, data in sorted(stored.items())
            for item in msgspec.to_builtins(
                getattr(
                    opened_year(STATE_TYPES[domain], replace(archive[year], packed=data)), field
                ),
                builtin_types=(dt.datetime,),
            )
        ]
        # Each year is packed or not, and keeps its own order: sort stably by year.
        return sorted([*packed, *found], key=lambda item: year_of(item["period"]))

    async def _packed_years(
        self, domain: str, key: str, digests: dict[str, str]
    ) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for year, digest in digests.items():
            cached = self._packed.get(f"{domain}/{part_id(key, year, digest)}")
            if cached is not None:
                found[year] = cached
        wanted = {year: digest for year, digest in digests.items() if year not in found}
        if wanted:
            for year, data in (await self.store.parts(domain, key, wanted)).items():
                self._packed.put(f"{domain}/{part_id(key, year, wanted[year])}", data)
                found[year] = data
        return found

    async def notes(self, agency_id: str, company_id: str) -> schemas.Notes:
        doc = await self.db["notes"].find_one({"_id": _key(agency_id, company_id)}) or {}
        return schemas.Notes(items=[note_out(n) for n in doc.get("items", [])])

    async def note(self, agency_id: str, company_id: str, note_id: str) -> schemas.NoteOut | None:
        found = await self.notes(agency_id, company_id)
        return next((n for n in found.items if n.note_id == note_id), None)

    async def outcome(self, command_id: str) -> dict[str, Any] | None:
        return await self.db[COMMAND_OUTCOMES].find_one({"_id": command_id})


def note_out(note: dict[str, Any]) -> schemas.NoteOut:
    return schemas.NoteOut(
        note_id=note["note_id"],
        kind=note["kind"],
        text=note["text"],
        status=note.get("status"),
        author_user_id=note["author_user_id"],
        created_at=note["created_at"],
        updated_at=note.get("updated_at") or note["created_at"],
    )


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _convert(
    tab_type: Any, header: dict[str, Any], rows: list[dict[str, Any]], empty_header: dict[str, Any]
) -> Any:
    return msgspec.convert({"header": {**empty_header, **header}, "periods": rows}, tab_type)
