"""What the client does in its payroll product."""

from __future__ import annotations

import datetime as dt

import msgspec

from contracts.envelope import CompanyMessage
from contracts.fields import NonNegative, Period


class MonthCompleted(msgspec.Struct, kw_only=True):
    period: Period
    employees: NonNegative
    payment_date: dt.date | None = None


class PayrollMonthCompleted(CompanyMessage, tag="payroll.month_completed", kw_only=True):
    data: MonthCompleted
