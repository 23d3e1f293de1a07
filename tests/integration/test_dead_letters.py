"""Every kind of invalid message lands in a dead-letter queue with its reason, while the valid
messages around it are applied."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from services.config import Settings
from tests import factories as f
from tests.harness import (
    System,
    dead_letters,
    eventually,
    publish,
    publish_commands,
    queue_depth,
)

KEY = f"{f.AGENCY}/{f.COMPANY}"


def submitted_body(**changes: object) -> bytes:
    body = f.body("bookkeeping.period_submitted", {"period": "2026-02"}, "2026-03-04T09:12")
    body.update(changes)
    return json.dumps(body).encode()


def bad_org_number() -> bytes:
    body = f.body(
        "company.details_changed", {**f.DETAILS, "org_number": "5566778890"}, "2026-01-02T09:00"
    )
    return json.dumps(body).encode()


INVALID = {
    # reason code: (routing key, body)
    "not_json": ("bookkeeping.period_submitted", b'{"id": "x", '),
    "not_utf8": ("bookkeeping.period_submitted", b'{"id": "\xff\xfe"}'),
    "too_large": ("bookkeeping.period_submitted", submitted_body(padding="x" * (64 * 1024))),
    "missing_field": ("bookkeeping.period_submitted", submitted_body(data={})),
    "bad_period": ("bookkeeping.period_submitted", submitted_body(data={"period": "2026-13"})),
    "bad_org_number": ("company.details_changed", bad_org_number()),
}
EXPECTED_CODE = {"missing_field": "invalid", "bad_period": "invalid", "bad_org_number": "invalid"}


async def test_each_kind_of_invalid_message_is_dead_lettered_with_its_reason(
    system: System,
) -> None:
    await system.start()
    valid_before = [f.details("2026-01-02T08:00"), f.submitted("2026-01", "2026-02-02T09:00")]
    valid_after = [f.submitted("2026-02", "2026-03-02T09:00"), f.uploaded("2026-03-03T09:00")]
    unknown_type = json.loads(submitted_body())
    unknown_type["type"] = "bookkeeping.period_approved"
    invalid = [
        *INVALID.values(),
        ("bookkeeping.period_approved", json.dumps(unknown_type).encode()),
    ]
    await publish(system.settings.amqp_url, [*valid_before, *invalid, *valid_after])

    async def valid_applied() -> bool:
        doc = await system.document("bookkeeping", KEY)
        return bool(doc and doc["header"]["last_upload_at"] and "2026-02" in doc["facts"])

    await eventually(valid_applied, what="the valid messages")
    counters = {name: runner.counters for name, runner in system.runners.items()}
    # Six bad bodies reach bookkeeping (the org number one too, as it handles company details);
    # the directory gets the bad org number; the unknown type goes to the catch-all.
    await eventually(
        lambda: (
            counters["bookkeeping"].dead_lettered == 6
            and counters["directory"].dead_lettered == 1
            and counters["unrouted"].dead_lettered == 1
        ),
        what="the dead letters",
    )

    letters = await dead_letters(system.settings.amqp_url, "bookkeeping")
    by_body = {letter.body: letter for letter in letters}
    for kind, (routing_key, body) in INVALID.items():
        letter = by_body[body]
        assert letter.headers["x-reason-code"] == EXPECTED_CODE.get(kind, kind), kind
        assert letter.headers["x-consumer"] == "bookkeeping"
        assert letter.headers["x-original-routing-key"] == routing_key
        assert letter.headers["x-original-exchange"] == "accounting.events"
        assert letter.headers["x-reason"]
    assert "period" in str(by_body[INVALID["missing_field"][1]].headers["x-reason"])
    assert "check digit" in str(by_body[INVALID["bad_org_number"][1]].headers["x-reason"])

    (directory_letter,) = await dead_letters(system.settings.amqp_url, "directory")
    assert "check digit" in str(directory_letter.headers["x-reason"])
    (unrouted_letter,) = await dead_letters(system.settings.amqp_url, "unrouted")
    assert unrouted_letter.headers["x-reason-code"] == "unknown_type"
    assert "bookkeeping.period_approved" in str(unrouted_letter.headers["x-reason"])


class BrokenWrites:
    """The real store, but its writes fail for a reason other than the store being unreachable
    (a bug, say): that is what the per-message retries are for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save(self, collection: str, writes: Any) -> set[str]:
        raise RuntimeError("cannot write this aggregate")


async def test_a_failure_that_outlasts_every_retry_is_dead_lettered(
    settings: Settings, mongo: object
) -> None:
    """Each message is retried with the configured delays, then parked."""
    system = System(dataclasses.replace(settings, retry_delays=(0.2, 0.4)))
    system.store = BrokenWrites(system.store)  # type: ignore[assignment]
    try:
        await system.start("bookkeeping")
        message = f.submitted("2026-02", "2026-03-02T09:00")
        await publish(settings.amqp_url, [message])
        runner = system.runners["bookkeeping"]
        await eventually(lambda: runner.counters.dead_lettered == 1, what="the dead letter")
        assert runner.counters.retried == 2
        (letter,) = await dead_letters(settings.amqp_url, "bookkeeping")
        assert letter.headers["x-reason-code"] == "retries_exhausted"
        assert letter.headers["x-attempt"] == 3
        assert "gave up after 3 attempts" in str(letter.headers["x-reason"])
        assert "cannot write this aggregate" in str(letter.headers["x-reason"])
        assert letter.message_id == message.id
    finally:
        await system.close()


async def test_an_unreachable_store_holds_messages_instead_of_retrying_them(
    settings: Settings, mongo: object
) -> None:
    unreachable = dataclasses.replace(
        settings, mongo_url="mongodb://127.0.0.1:9/", mongo_timeout_ms=200, retry_delays=(0.2,)
    )
    system = System(unreachable)
    try:
        await system.start("bookkeeping")
        await publish(unreachable.amqp_url, [f.submitted("2026-02", "2026-03-02T09:00")])
        runner = system.runners["bookkeeping"]
        await eventually(lambda: runner.store_down, what="the consumer to pause")
        await asyncio.sleep(2)
        counters = runner.counters
        assert (counters.applied, counters.retried, counters.dead_lettered) == (0, 0, 0)
    finally:
        await system.close()  # SIGTERM's way: what it holds goes back to the queue
    assert await queue_depth(settings.amqp_url, "backoffice.bookkeeping") == 1


async def test_each_tab_consumer_dead_letters_into_its_own_queue(system: System) -> None:
    await system.start("payroll", "vat", "closing")
    bad = {
        "payroll": ("payroll.month_completed", {"period": "2026-02", "employees": -1}),
        "vat": (
            "vat.report_step_changed",
            {
                "period_start": "2026-01-01",
                "period_end": "2026-03-31",
                "step": 4,
                "completed": True,
            },
        ),
        "closing": (
            "closing.progress_changed",
            {
                "fiscal_year_start": "2026-01-01",
                "fiscal_year_end": "2026-12-31",
                "steps_completed": 6,
                "steps_total": 5,
            },
        ),
    }
    bodies = {
        name: json.dumps(f.body(t, data, "2026-03-01T09:00")).encode()
        for name, (t, data) in bad.items()
    }
    await publish(system.settings.amqp_url, [(bad[name][0], body) for name, body in bodies.items()])
    await eventually(
        lambda: all(system.runners[n].counters.dead_lettered == 1 for n in bad),
        what="one dead letter per consumer",
    )
    for name, body in bodies.items():
        (letter,) = await dead_letters(system.settings.amqp_url, name)
        assert letter.body == body
        assert (letter.headers["x-consumer"], letter.headers["x-reason-code"]) == (name, "invalid")


async def test_a_payroll_status_command_is_applied(system: System) -> None:
    await system.start("payroll")
    await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
    await eventually(lambda: system.document("payroll", KEY), what="the payroll tab")
    await publish_commands(
        system.settings.amqp_url,
        [f.payroll_status("2026-02", "done", "2026-03-05T10:00", user="u-9")],
    )

    async def done() -> bool:
        doc = await system.document("payroll", KEY) or {}
        rows = {r["period"]: r for r in doc.get("periods", [])}
        return rows.get("2026-02", {}).get("status") == "done"

    await eventually(done, what="the payroll status")
