"""A dead-letter log line names the agency and company whenever the body could be read that far,
so an operator sees which client an invalid event was about."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import structlog

from consumers.registry import CONSUMERS
from services.config import Settings
from services.pipeline import Outcome
from services.runner import ConsumerRunner
from services.store.memory import MemoryStore
from tests import factories as f


def log_of(body: bytes) -> dict[str, Any]:
    runner = ConsumerRunner(CONSUMERS["bookkeeping"], Settings(), MemoryStore())
    incoming = SimpleNamespace(body=body, message_id="m-1", routing_key="bookkeeping.x")
    with structlog.testing.capture_logs() as captured:
        runner._message_log(incoming, Outcome("invalid", "invalid", "bad"), 1).error(  # type: ignore[arg-type]
            "dead-lettered"
        )
    (line,) = captured
    return line


def test_an_invalid_body_still_names_its_company() -> None:
    body = f.body("bookkeeping.period_submitted", {"period": "2026-13"}, "2026-03-04T09:12")
    line = log_of(json.dumps(body).encode())
    assert (line["agency_id"], line["company_id"]) == (f.AGENCY, f.COMPANY)
    assert (line["event_id"], line["type"]) == (body["id"], "bookkeeping.period_submitted")


def test_an_unreadable_body_falls_back_to_the_message_properties() -> None:
    line = log_of(b'{"id": "x", ')
    assert (line["event_id"], line["type"], line["agency_id"]) == ("m-1", "bookkeeping.x", None)
    line = log_of(json.dumps({"agency_id": {"$ne": 1}, "company_id": "c" * 500}).encode())
    assert (line["agency_id"], line["company_id"]) == (None, None)  # only short strings
