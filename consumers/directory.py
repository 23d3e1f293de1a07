"""The company directory: each client company's details, and each agency's users.

Two aggregate kinds with one owner. A company entry is what the overview and the company tab
read; an agency user is who can be added to a company by e-mail. Both hold the latest fact by
``occurred_at`` (ties broken by event id), so order and repeats of delivery do not matter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from consumers.company_facts import CompanyFacts, merge_company
from consumers.rulebook import Ref, Rejected, Rulebook, Stamp, company_key, later
from contracts.commands import AddCompanyUser, SetEngagement
from contracts.company import AgencyUserChanged, CompanyDetailsChanged, CompanyDisconnected
from contracts.envelope import Message


class CompanyUser(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    added_at: dt.datetime
    added_by: str


class CompanyEntry(msgspec.Struct, kw_only=True):
    # What the store keeps as JSON text (services/store/port.py). The overview reads the plain
    # fields below from the listing (`listed`).
    STORED_AS_TEXT: ClassVar[frozenset[str]] = frozenset({"facts", "users"})

    agency_id: str
    company_id: str
    facts: CompanyFacts = msgspec.field(default_factory=CompanyFacts)
    users: list[CompanyUser] = msgspec.field(default_factory=list)
    now: dt.datetime | None = None
    # Worked out from the facts: what the overview shows and filters on.
    connected: bool = True
    name: str | None = None
    org_number: str | None = None
    org_number_digits: str | None = None
    engagement_start: str | None = None
    responsible_user_id: str | None = None
    # The version of the write at which `listed` last changed, set by the runtime.
    listed_version: int = 0


def listed(entry: CompanyEntry) -> tuple[Any, ...]:
    """What the overview shows of a company and filters on (consumers/listing.py)."""
    return (
        entry.name,
        entry.org_number,
        entry.org_number_digits,
        entry.responsible_user_id,
        entry.connected,
    )


def apply_company(
    entry: CompanyEntry | None,
    message: CompanyDetailsChanged | CompanyDisconnected | SetEngagement | AddCompanyUser,
    now: dt.datetime,
) -> CompanyEntry:
    if isinstance(message, SetEngagement | AddCompanyUser) and (
        entry is None or entry.facts.details is None
    ):
        raise Rejected(f"company {message.company_id} is not in the directory")
    if entry is None:
        entry = CompanyEntry(agency_id=message.agency_id, company_id=message.company_id)
    if isinstance(message, AddCompanyUser):
        return _with_user(entry, message)
    facts = merge_company(entry.facts, message)
    details = facts.details
    return msgspec.structs.replace(
        entry,
        facts=facts,
        now=later(entry.now, now),
        connected=facts.connected,
        name=details.name if details else None,
        org_number=details.org_number if details else None,
        org_number_digits=details.org_number.replace("-", "") if details else None,
        engagement_start=facts.engagement_start,
        responsible_user_id=facts.responsible_user_id,
    )


def _with_user(entry: CompanyEntry, command: AddCompanyUser) -> CompanyEntry:
    """Adds the user; one added twice keeps the first addition, whatever the arrival order."""
    user = CompanyUser(
        user_id=command.data.user_id, added_at=command.occurred_at, added_by=command.data.added_by
    )
    same = next((u for u in entry.users if u.user_id == user.user_id), None)
    if same is not None and (same.added_at, same.added_by) <= (user.added_at, user.added_by):
        return entry
    others = [u for u in entry.users if u.user_id != user.user_id]
    users = sorted([*others, user], key=lambda u: (u.added_at, u.user_id))
    return msgspec.structs.replace(entry, users=users)


def _agency_user_ref(agency_id: str, user_id: str) -> Ref:
    return ("agency_users", f"{agency_id}/{user_id}")


def company_command_refs(message: Message) -> list[Ref]:
    match message:
        case AddCompanyUser():
            return [_agency_user_ref(message.agency_id, message.data.user_id)]
        case SetEngagement():
            return [_agency_user_ref(message.agency_id, message.data.responsible_user_id)]
    return []


def validate_company_command(message: Message, refs: Mapping[Ref, Any]) -> None:
    """Users added to a company, and responsible consultants, are active users of the agency."""
    match message:
        case AddCompanyUser():
            user = refs.get(_agency_user_ref(message.agency_id, message.data.user_id))
            email = message.data.email.lower()
            if not isinstance(user, AgencyUserEntry) or not user.active or user.email_key != email:
                raise Rejected(f"{message.data.email} is no active user of the agency")
        case SetEngagement():
            responsible = message.data.responsible_user_id
            user = refs.get(_agency_user_ref(message.agency_id, responsible))
            if not isinstance(user, AgencyUserEntry) or not user.active:
                raise Rejected(f"user {responsible} is no active user of the agency")


class AgencyUserEntry(msgspec.Struct, kw_only=True):
    agency_id: str
    user_id: str
    email: str
    email_key: str  # lower case: e-mail addresses are looked up without regard to case
    name: str
    active: bool
    stamp: Stamp


def apply_agency_user(
    entry: AgencyUserEntry | None, message: AgencyUserChanged, now: dt.datetime
) -> AgencyUserEntry:
    stamp = Stamp(message.occurred_at, message.id)
    if entry is not None and entry.stamp >= stamp:
        return entry
    user = message.data
    return AgencyUserEntry(
        agency_id=message.agency_id,
        user_id=user.user_id,
        email=user.email,
        email_key=user.email.lower(),
        name=user.name,
        active=user.active,
        stamp=stamp,
    )


def agency_user_key(message: AgencyUserChanged) -> str:
    return f"{message.agency_id}/{message.data.user_id}"


COMPANIES: Rulebook[CompanyEntry] = Rulebook(
    collection="companies",
    state_type=CompanyEntry,
    handles=frozenset(
        {
            "company.details_changed",
            "company.disconnected",
            "company.set_engagement",
            "company.add_user",
        }
    ),
    key=company_key,
    apply=apply_company,
    requires=company_command_refs,
    validate=validate_company_command,
    # The overview reads the listing (consumers/listing.py), not this collection: no index.
    listed=listed,
)

AGENCY_USERS: Rulebook[AgencyUserEntry] = Rulebook(
    collection="agency_users",
    state_type=AgencyUserEntry,
    handles=frozenset({"agency.user_changed"}),
    key=agency_user_key,
    apply=apply_agency_user,
    indexes=((("agency_id", 1), ("email_key", 1)),),
)
