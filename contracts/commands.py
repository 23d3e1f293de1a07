"""Consultants' actions, sent by the API to the consumer that owns the aggregate.

A command is a message like an event: it has an id (the API's request id, so a retried request
is applied once) and ``occurred_at`` (when the consultant acted), which orders it against the
client's own facts.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from contracts.envelope import CompanyMessage
from contracts.fields import Identifier, Period
from contracts.status import ConsultantStatus


class PeriodStatus(msgspec.Struct, kw_only=True):
    period: Period
    status: ConsultantStatus
    user_id: Identifier
    deadline: dt.date | None = None

    def __post_init__(self) -> None:
        if self.deadline is not None and self.status != "waiting":
            raise ValueError("a new deadline can only be given with status 'waiting'")


class SetBookkeepingPeriodStatus(CompanyMessage, tag="bookkeeping.set_period_status", kw_only=True):
    """A consultant sets the status of a bookkeeping period (SPEC §5.1 rule 3)."""

    data: PeriodStatus


class PayrollPeriodStatus(msgspec.Struct, kw_only=True):
    period: Period
    status: ConsultantStatus
    user_id: Identifier


class SetPayrollPeriodStatus(CompanyMessage, tag="payroll.set_period_status", kw_only=True):
    """A consultant sets the status of a payroll period (SPEC §5.2)."""

    data: PayrollPeriodStatus


class Engagement(msgspec.Struct, kw_only=True):
    start_month: Period
    responsible_user_id: Identifier
    user_id: Identifier  # the consultant who set it


class SetEngagement(CompanyMessage, tag="company.set_engagement", kw_only=True):
    """The engagement's start month and responsible consultant, set together (SPEC §4).

    Owned by the directory; every tab consumer also takes it, since tracking starts at the
    engagement's start month.
    """

    data: Engagement
