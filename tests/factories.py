"""Messages for tests, built through the real decoder so they are exactly what consumers see."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

from contracts.envelope import Message
from contracts.registry import decode

AGENCY = "a-1001"
COMPANY = "c-2002"
_ids = itertools.count(1)


def next_id() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def at(text: str) -> dt.datetime:
    """An instant from ``YYYY-MM-DDTHH:MM`` in UTC, or any RFC 3339 text."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def body(
    type_: str,
    data: dict[str, Any] | None,
    occurred_at: str,
    *,
    company_id: str | None = COMPANY,
    agency_id: str = AGENCY,
    id: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": id or next_id(),
        "type": type_,
        "version": 1,
        "occurred_at": at(occurred_at).isoformat(),
        "agency_id": agency_id,
    }
    if company_id is not None:
        message["company_id"] = company_id
    if data is not None:
        message["data"] = data
    return message


def message(type_: str, data: dict[str, Any] | None, occurred_at: str, **kw: Any) -> Message:
    return decode(json.dumps(body(type_, data, occurred_at, **kw)).encode())


DETAILS = {
    "name": "Bageriet i Byn AB",
    "org_number": "556677-8899",
    "legal_form": "AB",
    "accounting_method": "invoice",
    "vat_frequency": "quarterly",
    "fiscal_year_start": "2026-01-01",
    "fiscal_year_end": "2026-12-31",
}


def details(
    occurred_at: str = "2026-01-02T08:00", *, company_id: str = COMPANY, **changes: Any
) -> Message:
    return message(
        "company.details_changed", {**DETAILS, **changes}, occurred_at, company_id=company_id
    )


def submitted(period: str, occurred_at: str, **kw: Any) -> Message:
    return message("bookkeeping.period_submitted", {"period": period}, occurred_at, **kw)


def set_status(
    period: str,
    status: str,
    occurred_at: str,
    user: str = "u-7",
    deadline: str | None = None,
    **kw: Any,
) -> Message:
    data: dict[str, Any] = {"period": period, "status": status, "user_id": user}
    if deadline:
        data["deadline"] = deadline
    return message("bookkeeping.set_period_status", data, occurred_at, **kw)


def uploaded(occurred_at: str, document_id: str = "doc-1", **kw: Any) -> Message:
    return message("bookkeeping.document_uploaded", {"document_id": document_id}, occurred_at, **kw)


def disconnected(occurred_at: str, **kw: Any) -> Message:
    return message("company.disconnected", {}, occurred_at, **kw)


def user_changed(
    user_id: str,
    email: str,
    occurred_at: str,
    *,
    active: bool = True,
    name: str = "Anna Konsult",
    **kw: Any,
) -> Message:
    data = {"user_id": user_id, "email": email, "name": name, "active": active}
    return message("agency.user_changed", data, occurred_at, company_id=None, **kw)


def tick(occurred_at: str) -> Message:
    tick_body = {
        "id": next_id(),
        "type": "clock.tick",
        "version": 1,
        "occurred_at": at(occurred_at).isoformat(),
    }
    return decode(json.dumps(tick_body).encode())


def engagement(
    start_month: str, occurred_at: str, responsible: str = "u-7", user: str = "u-1", **kw: Any
) -> Message:
    data = {"start_month": start_month, "responsible_user_id": responsible, "user_id": user}
    return message("company.set_engagement", data, occurred_at, **kw)


def payroll_completed(
    period: str, occurred_at: str, employees: int = 4, payment_date: str | None = None, **kw: Any
) -> Message:
    data: dict[str, Any] = {"period": period, "employees": employees}
    if payment_date:
        data["payment_date"] = payment_date
    return message("payroll.month_completed", data, occurred_at, **kw)


def payroll_status(
    period: str, status: str, occurred_at: str, user: str = "u-7", **kw: Any
) -> Message:
    data = {"period": period, "status": status, "user_id": user}
    return message("payroll.set_period_status", data, occurred_at, **kw)


def entry_created(occurred_at: str, entry_date: str = "2026-02-27", **kw: Any) -> Message:
    data = {"entry_id": "v-1", "entry_date": entry_date}
    return message("bookkeeping.entry_created", data, occurred_at, **kw)


def vat_step(
    start: str, end: str, step: int, occurred_at: str, completed: bool = True, **kw: Any
) -> Message:
    data = {"period_start": start, "period_end": end, "step": step, "completed": completed}
    return message("vat.report_step_changed", data, occurred_at, **kw)


def vat_reported(
    start: str, end: str, occurred_at: str, reported: bool = True, **kw: Any
) -> Message:
    data = {"period_start": start, "period_end": end, "reported": reported}
    return message("vat.report_reported_changed", data, occurred_at, **kw)


def closing_progress(
    start: str, end: str, completed: int, total: int, occurred_at: str, **kw: Any
) -> Message:
    data = {
        "fiscal_year_start": start,
        "fiscal_year_end": end,
        "steps_completed": completed,
        "steps_total": total,
    }
    return message("closing.progress_changed", data, occurred_at, **kw)


def k10_help(end: str, occurred_at: str, requested: bool = True, **kw: Any) -> Message:
    data = {"fiscal_year_end": end, "requested": requested}
    return message("closing.k10_help_changed", data, occurred_at, **kw)
