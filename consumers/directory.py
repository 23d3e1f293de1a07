"""The company directory: each client company's details, and each agency's users.

Two aggregate kinds with one owner. A company entry is what the overview and the company tab
read; an agency user is who can be added to a company by e-mail. Both hold the latest fact by
``occurred_at`` (ties broken by event id), so order and repeats of delivery do not matter.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from consumers.company_facts import CompanyFacts, merge_company
from consumers.rulebook import Rulebook, Stamp, company_key, later
from contracts.commands import SetEngagement
from contracts.company import AgencyUserChanged, CompanyDetailsChanged, CompanyDisconnected


class CompanyEntry(msgspec.Struct, kw_only=True):
    agency_id: str
    company_id: str
    facts: CompanyFacts = msgspec.field(default_factory=CompanyFacts)
    now: dt.datetime | None = None
    # Worked out from the facts, top level so the overview can filter and sort on them.
    connected: bool = True
    name: str | None = None
    org_number: str | None = None
    org_number_digits: str | None = None
    engagement_start: str | None = None
    responsible_user_id: str | None = None


def apply_company(
    entry: CompanyEntry | None,
    message: CompanyDetailsChanged | CompanyDisconnected | SetEngagement,
    now: dt.datetime,
) -> CompanyEntry:
    if entry is None:
        entry = CompanyEntry(agency_id=message.agency_id, company_id=message.company_id)
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
        {"company.details_changed", "company.disconnected", "company.set_engagement"}
    ),
    key=company_key,
    apply=apply_company,
    indexes=(
        (("agency_id", 1), ("name", 1)),
        (("agency_id", 1), ("responsible_user_id", 1)),
        (("agency_id", 1), ("org_number_digits", 1)),
    ),
)

AGENCY_USERS: Rulebook[AgencyUserEntry] = Rulebook(
    collection="agency_users",
    state_type=AgencyUserEntry,
    handles=frozenset({"agency.user_changed"}),
    key=agency_user_key,
    apply=apply_agency_user,
    indexes=((("agency_id", 1), ("email_key", 1)),),
)
