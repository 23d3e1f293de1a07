"""The company directory: a client's details, its leaving, and the agency's users."""

from __future__ import annotations

import datetime as dt

import msgspec

from contracts.envelope import AgencyMessage, CompanyMessage
from contracts.fields import (
    AccountingMethod,
    Identifier,
    LegalForm,
    OrgNumber,
    SubmissionDay,
    VatFrequency,
    add_months,
    luhn_valid,
    org_number_digits,
)

MAX_FISCAL_YEAR_MONTHS = 18


class CompanyDetails(msgspec.Struct, kw_only=True):
    name: str
    org_number: OrgNumber
    legal_form: LegalForm
    accounting_method: AccountingMethod
    vat_frequency: VatFrequency
    fiscal_year_start: dt.date
    fiscal_year_end: dt.date
    submission_day: SubmissionDay | None = None
    large_vat_payer: bool = False
    eu_trade: bool = False

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name must not be empty")
        if not luhn_valid(org_number_digits(self.org_number)):
            raise ValueError(f"org_number {self.org_number!r} has a wrong check digit")
        if self.fiscal_year_end <= self.fiscal_year_start:
            raise ValueError("fiscal_year_end must be after fiscal_year_start")
        if self.fiscal_year_end >= add_months(self.fiscal_year_start, MAX_FISCAL_YEAR_MONTHS):
            raise ValueError(f"a fiscal year lasts at most {MAX_FISCAL_YEAR_MONTHS} months")


class CompanyDetailsChanged(CompanyMessage, tag="company.details_changed", kw_only=True):
    """A full snapshot of the company's details; the latest ``occurred_at`` wins."""

    data: CompanyDetails


class Empty(msgspec.Struct):
    pass


class CompanyDisconnected(CompanyMessage, tag="company.disconnected", kw_only=True):
    """The client left the agency: hidden from the overview, its history kept."""

    data: Empty


class AgencyUser(msgspec.Struct, kw_only=True):
    user_id: Identifier
    email: str
    name: str
    active: bool

    def __post_init__(self) -> None:
        local, _, domain = self.email.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in self.email):
            raise ValueError(f"email {self.email!r} is not an e-mail address")


class AgencyUserChanged(AgencyMessage, tag="agency.user_changed", kw_only=True):
    """One entry of the agency's user directory, as of ``occurred_at``."""

    data: AgencyUser
