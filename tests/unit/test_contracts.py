"""SPEC §7: what is a valid inbound event, and the reason given for each invalid one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.company import CompanyDetailsChanged
from contracts.fields import format_instant, luhn_valid, normalize_instant
from contracts.registry import INBOUND_EVENTS, InvalidMessage, decode, encode, type_name
from tests import factories as f

EXAMPLES = Path(__file__).resolve().parents[1] / "data"
VALID = [line for line in (EXAMPLES / "events.valid.jsonl").read_text().splitlines() if line]
INVALID = [
    json.loads(line)
    for line in (EXAMPLES / "events.invalid.jsonl").read_text().splitlines()
    if line
]


def test_the_examples_cover_every_inbound_type() -> None:
    assert {json.loads(line)["type"] for line in VALID} == {type_name(t) for t in INBOUND_EVENTS}


@pytest.mark.parametrize("line", VALID, ids=lambda line: json.loads(line)["type"])
def test_valid_examples_decode_and_round_trip(line: str) -> None:
    message = decode(line.encode())
    assert message.id == json.loads(line)["id"]
    assert decode(encode(message)) == message


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case["why"])
def test_invalid_examples_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        decode(case["body"].encode())


def details_body(**data_changes: Any) -> dict[str, Any]:
    body = f.body("company.details_changed", {**f.DETAILS, **data_changes}, "2026-01-02T08:00")
    return body


def reason(body: dict[str, Any] | bytes) -> tuple[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidMessage) as caught:
        decode(raw)
    return caught.value.code, caught.value.reason


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'{"id": ', "not_json", "not JSON"),
        (b"\xc3\x28", "not_utf8", "not UTF-8"),
        (b" " * (64 * 1024 + 1), "too_large", "65537 bytes"),
        (b"[1, 2]", "invalid", "envelope"),
        (b'{"version": 1}', "invalid", "type"),
        (b'{"type": "x.y", "version": 1}', "unknown_type", "'x.y'"),
        (b'{"type": "bookkeeping.period_submitted", "version": 2}', "unknown_version", "2"),
    ],
)
def test_envelope_failures_name_what_is_wrong(body: bytes, code: str, words: str) -> None:
    got_code, got_reason = reason(body)
    assert got_code == code
    assert words in got_reason


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"org_number": "5566778890"}, "check digit"),
        ({"org_number": "55667788-99"}, "org_number"),
        ({"org_number": "556677889"}, "org_number"),
        ({"legal_form": "AS"}, "legal_form"),
        ({"accounting_method": "accrual"}, "accounting_method"),
        ({"vat_frequency": "weekly"}, "vat_frequency"),
        ({"fiscal_year_end": "2025-12-31"}, "after fiscal_year_start"),
        ({"fiscal_year_end": "2027-07-01"}, "18 months"),
        ({"submission_day": 29}, "submission_day"),
        ({"submission_day": 0}, "submission_day"),
        ({"name": "  "}, "name"),
        ({"fiscal_year_start": "2026-02-30"}, "fiscal_year_start"),
    ],
)
def test_company_details_rules(changes: dict[str, Any], words: str) -> None:
    code, text = reason(details_body(**changes))
    assert code == "invalid"
    assert words in text


def test_an_eighteen_month_fiscal_year_is_allowed() -> None:
    message = decode(json.dumps(details_body(fiscal_year_end="2027-06-30")).encode())
    assert isinstance(message, CompanyDetailsChanged)


@pytest.mark.parametrize("org_number", ["556677-8899", "5566778899", "212000-0142"])
def test_org_numbers_with_or_without_dash(org_number: str) -> None:
    assert decode(json.dumps(details_body(org_number=org_number)).encode())


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("id", "", "id"),
        ("id", "x" * 65, "id"),
        ("agency_id", "a 1", "agency_id"),
        ("company_id", "c/1", "company_id"),
        ("occurred_at", "2026-03-04T09:12:44", "timezone"),
        ("occurred_at", "yesterday", "occurred_at"),
    ],
)
def test_envelope_fields(field: str, value: str, words: str) -> None:
    body = f.body("bookkeeping.period_submitted", {"period": "2026-02"}, "2026-03-04T09:00")
    body[field] = value
    code, text = reason(body)
    assert (code, words in text) == ("invalid", True)


def test_a_company_event_needs_a_company() -> None:
    body = f.body(
        "bookkeeping.period_submitted", {"period": "2026-02"}, "2026-03-04T09:00", company_id=None
    )
    assert "company_id" in reason(body)[1]


def test_an_agency_event_ignores_company_and_unknown_fields() -> None:
    body = f.body(
        "agency.user_changed",
        {"user_id": "u-1", "email": "a@b.se", "name": "A", "active": True, "x": 1},
        "2026-03-04T09:00",
        company_id=None,
    )
    body["extra"] = {"anything": True}
    assert decode(json.dumps(body).encode()).type == "agency.user_changed"


@pytest.mark.parametrize(
    ("type_", "data", "words"),
    [
        ("bookkeeping.period_submitted", {"period": "2026-13"}, "period"),
        ("bookkeeping.period_submitted", {"period": "2026-1"}, "period"),
        ("payroll.month_completed", {"period": "2026-01", "employees": -1}, "employees"),
        (
            "vat.report_step_changed",
            {
                "period_start": "2026-03-31",
                "period_end": "2026-01-01",
                "step": 1,
                "completed": True,
            },
            "period_end",
        ),
        (
            "vat.report_step_changed",
            {
                "period_start": "2026-01-01",
                "period_end": "2026-03-31",
                "step": 0,
                "completed": True,
            },
            "step",
        ),
        (
            "closing.progress_changed",
            {
                "fiscal_year_start": "2026-01-01",
                "fiscal_year_end": "2026-12-31",
                "steps_completed": 0,
                "steps_total": 0,
            },
            "steps_total",
        ),
        (
            "agency.user_changed",
            {"user_id": "u-1", "email": "not-an-address", "name": "A", "active": True},
            "e-mail",
        ),
        ("closing.k10_help_changed", {"fiscal_year_end": "2026-12-31"}, "requested"),
    ],
)
def test_data_rules(type_: str, data: dict[str, Any], words: str) -> None:
    company = None if type_.startswith("agency.") else f.COMPANY
    code, text = reason(f.body(type_, data, "2026-03-04T09:00", company_id=company))
    assert code == "invalid"
    assert words in text


def test_occurred_at_is_kept_in_utc_to_the_millisecond() -> None:
    body = f.body("bookkeeping.period_submitted", {"period": "2026-02"}, "2026-03-04T09:00")
    body["occurred_at"] = "2026-03-04T10:12:44.123456+01:00"
    message = decode(json.dumps(body).encode())
    assert message.occurred_at.isoformat() == "2026-03-04T09:12:44.123000+00:00"


def test_luhn() -> None:
    assert luhn_valid("5566778899")
    assert not luhn_valid("5566778890")


def test_no_command_sets_a_vat_or_closing_status() -> None:
    from contracts.registry import COMMANDS

    assert not [t for t in COMMANDS if type_name(t).startswith(("vat.", "closing."))]
    assert reason(f.body("vat.set_period_status", {"status": "done"}, "2026-03-04T09:00"))[0] == (
        "unknown_type"
    )


def test_sent_is_no_status_a_consultant_sets() -> None:
    body = f.body(
        "bookkeeping.set_period_status",
        {"period": "2026-02", "status": "sent", "user_id": "u-1"},
        "2026-03-04T09:00",
    )
    assert reason(body)[0] == "invalid"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2026, 3, 5, 9, 12, 24, tzinfo=dt.UTC), "2026-03-05T09:12:24.000Z"),
        (dt.datetime(2026, 3, 5, 9, 12, 24, 40000, tzinfo=dt.UTC), "2026-03-05T09:12:24.040Z"),
        (dt.datetime(2026, 3, 5, 9, 12, 24, 999999, tzinfo=dt.UTC), "2026-03-05T09:12:24.999Z"),
        (
            dt.datetime(2026, 3, 5, 10, 12, 24, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2026-03-05T09:12:24.000Z",
        ),
        (dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "0999-01-02T03:04:05.000Z"),
    ],
)
def test_an_instant_has_one_text_form(value: dt.datetime, text: str) -> None:
    assert format_instant(value) == text


@given(
    st.datetimes(
        min_value=dt.datetime(2, 1, 1),
        max_value=dt.datetime(9998, 12, 31),
        timezones=st.sampled_from([dt.UTC, ZoneInfo("UTC"), ZoneInfo("Europe/Stockholm")])
        | st.timezones(),
    )
)
def test_an_instant_is_written_as_isoformat_writes_it_in_utc(value: dt.datetime) -> None:
    utc = value.astimezone(dt.UTC)
    assert format_instant(value) == utc.isoformat(timespec="milliseconds")[:-6] + "Z"


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 3, 5, 9, 12, 24, 40000, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 5, 9, 12, 24, 40999, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 5, 10, 12, 24, 40000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(2026, 3, 5, 9, 12, 24, 40000, tzinfo=ZoneInfo("UTC")),
    ],
)
def test_an_instant_is_kept_in_utc_to_the_millisecond(value: dt.datetime) -> None:
    normalized = normalize_instant(value)
    assert normalized == dt.datetime(2026, 3, 5, 9, 12, 24, 40000, tzinfo=dt.UTC)
    assert normalized.utcoffset() == dt.timedelta(0)
    assert normalized.microsecond % 1000 == 0


def test_messages_the_service_sends_write_every_instant_the_same_way() -> None:
    whole = f.set_status("2026-01", "done", "2026-03-02T09:00")
    fraction = msgspec.structs.replace(
        whole, occurred_at=whole.occurred_at.replace(microsecond=40000)
    )
    texts = [json.loads(encode(m))["occurred_at"] for m in (whole, fraction)]
    assert texts == ["2026-03-02T09:00:00.000Z", "2026-03-02T09:00:00.040Z"]
    assert sorted(texts) == texts  # as text, in the order of the instants
    assert decode(encode(fraction)) == fraction


class Row(msgspec.Struct):
    at: dt.datetime
    day: dt.date


def test_the_api_writes_every_instant_the_same_way() -> None:
    from litestar import Litestar, get
    from litestar.testing import TestClient

    from services.api.responses import ApiResponse

    @get("/rows", sync_to_thread=False)
    def rows() -> dict[str, list[Row]]:
        at = dt.datetime(2026, 3, 5, 9, 12, 24, tzinfo=dt.UTC)
        return {"items": [Row(at, at.date()), Row(at.replace(microsecond=40000), at.date())]}

    with TestClient(Litestar([rows], response_class=ApiResponse)) as api:
        body = api.get("/rows").json()
    assert body == {
        "items": [
            {"at": "2026-03-05T09:12:24.000Z", "day": "2026-03-05"},
            {"at": "2026-03-05T09:12:24.040Z", "day": "2026-03-05"},
        ]
    }
