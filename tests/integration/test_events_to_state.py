"""Events published to accounting.events become the documented state in MongoDB."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import aio_pika

from consumers.bookkeeping import BookkeepingTab
from consumers.directory import AgencyUserEntry, CompanyEntry
from contracts.registry import decode
from services.clock import publish_tick
from services.store.port import from_document
from tests import factories as f
from tests.harness import (
    System,
    dead_letters,
    eventually,
    publish,
    signed,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "events.valid.jsonl"
KEY = f"{f.AGENCY}/{f.COMPANY}"


async def test_the_example_events_become_documented_state(
    time_travelling_system: System,
) -> None:
    system = time_travelling_system  # the examples are dated up to 2027
    await system.start()
    examples = [decode(line.encode()) for line in EXAMPLES.read_text().splitlines() if line]
    await publish(system.settings.amqp_url, examples)

    async def settled() -> bool:
        company = await system.document("companies", KEY)
        user = await system.document("agency_users", f"{f.AGENCY}/u-7")
        # The last example disconnects the company: once that shows, all before it applied.
        return company is not None and company["connected"] is False and user is not None

    await eventually(settled, what="the directory documents")
    company = from_document(await system.document("companies", KEY) or {}, CompanyEntry).state
    assert (company.name, company.org_number) == ("Bageriet i Byn AB", "556677-8899")
    user = from_document(
        await system.document("agency_users", f"{f.AGENCY}/u-7") or {}, AgencyUserEntry
    ).state
    assert (user.email, user.active) == ("anna@byran.se", True)

    async def tabs_done() -> bool:
        """Each tab has taken the disconnection, the last example."""
        for collection in ("bookkeeping", "payroll", "vat", "closing"):
            doc = await system.document(collection, KEY)
            if not (doc and doc["company"]["disconnected_stamp"]):
                return False
        return True

    await eventually(tabs_done, what="every tab to take the examples")
    tab = from_document(await system.document("bookkeeping", KEY) or {}, BookkeepingTab).state
    february = next(r for r in tab.periods if r.period == "2026-02")
    assert february.status == "new"
    assert february.updated_by_company_at == dt.datetime(2026, 3, 4, 9, 12, 44, tzinfo=dt.UTC)
    assert tab.header.last_upload_at == dt.datetime(2026, 3, 3, 9, 15, tzinfo=dt.UTC)

    payroll = await system.document("payroll", KEY)
    assert payroll is not None
    assert (payroll["header"]["latest_completed_month"], payroll["header"]["employees"]) == (
        "2026-02",
        4,
    )
    vat = await system.document("vat", KEY)
    assert vat is not None
    q1 = next(r for r in vat["periods"] if r["period"] == "2026-Q1")
    assert (q1["status"], q1["reported"], q1["steps_completed"]) == ("done", True, 1)
    assert vat["header"]["last_bookkeeping_at"] == dt.datetime(2026, 3, 6, 12, tzinfo=dt.UTC)
    closing = await system.document("closing", KEY)
    assert closing is not None
    year = closing["facts"]["2026-12-31"]
    assert (year["progress"][0]["steps_completed"], year["k10"][0]["requested"]) == (2, True)
    assert system.runners["unrouted"].counters.dead_lettered == 0


async def test_the_clock_moves_statuses_and_periods(time_travelling_system: System) -> None:
    system = time_travelling_system  # the tick comes from a clock ahead of the consumer's
    await system.start("bookkeeping")
    await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
    await eventually(lambda: system.document("bookkeeping", KEY), what="the tab")
    async with await aio_pika.connect(system.settings.amqp_url) as connection:
        channel = await connection.channel()
        await publish_tick(
            channel, dt.datetime(2027, 1, 6, 12, 0, tzinfo=dt.UTC), system.settings.service_secret
        )

    async def january_2027_shown() -> bool:
        doc = await system.document("bookkeeping", KEY)
        return bool(doc and doc["latest_period"] == "2027-01")

    await eventually(january_2027_shown, what="the tick to reach the tab")
    tab = from_document(await system.document("bookkeeping", KEY) or {}, BookkeepingTab).state
    december = next(r for r in tab.periods if r.period == "2026-12")
    assert (december.status, december.deadline) == ("late", dt.date(2027, 1, 5))
    assert tab.due_at == dt.datetime(2027, 1, 31, 23, 0, tzinfo=dt.UTC)  # February begins
    time_entries = [e for e in tab.history if e.period == "2026-12"]
    assert [(e.from_, e.to, e.cause.kind) for e in time_entries] == [("waiting", "late", "time")]


async def test_commands_are_answered_and_their_outcome_recorded(system: System) -> None:
    await system.start("bookkeeping")
    await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
    await eventually(lambda: system.document("bookkeeping", KEY), what="the tab")
    accepted = f.set_status("2026-02", "in_progress", "2026-03-05T10:00", user="u-9")
    refused = f.set_status("2024-02", "done", "2026-03-05T10:00")
    async with await aio_pika.connect(system.settings.amqp_url) as connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange("backoffice.commands")
        for command in (accepted, refused):
            await exchange.publish(
                signed(command, correlation_id=command.id, reply_to=replies.name),
                routing_key=command.type,
            )
        answers = {}
        async with replies.iterator(timeout=20) as incoming:
            async for reply in incoming:
                await reply.ack()
                answers[reply.correlation_id] = json.loads(reply.body)
                if len(answers) == 2:
                    break
    assert answers[accepted.id]["status"] == "applied"
    assert answers[refused.id]["status"] == "rejected"
    assert "outside tracking" in answers[refused.id]["reason"]

    doc = await system.document("bookkeeping", KEY) or {}
    rows = {r["period"]: r for r in doc["periods"]}
    assert rows["2026-02"]["status"] == "in_progress"
    outcomes = system.client[system.settings.mongo_db]["command_outcomes"]
    recorded = {d["_id"]: d["status"] async for d in outcomes.find({})}
    assert recorded == {accepted.id: "applied", refused.id: "rejected"}
    # A refused command is the consultant's error, answered; not an operator's dead letter.
    assert await dead_letters(system.settings.amqp_url, "bookkeeping") == []


async def test_a_command_retried_after_a_passing_failure_still_answers(system: System) -> None:
    await system.start("bookkeeping")
    await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
    await eventually(lambda: system.document("bookkeeping", KEY), what="the tab")
    # Settled, so its listing is written too: the write that fails below is the command's.
    await eventually(lambda: system.runners["bookkeeping"].counters.applied == 1, what="settled")
    save = system.store.save
    failed = []

    async def fails_once(collection: str, writes: Any) -> set[str]:
        if not failed:
            failed.append(collection)
            raise ConnectionError("the database went away for a moment")
        return await save(collection, writes)

    system.store.save = fails_once  # type: ignore[method-assign]
    command = f.set_status("2026-02", "done", "2026-03-05T10:00")
    async with await aio_pika.connect(system.settings.amqp_url) as connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange("backoffice.commands")
        await exchange.publish(
            signed(command, correlation_id=command.id, reply_to=replies.name),
            routing_key=command.type,
        )
        async with replies.iterator(timeout=20) as incoming:
            async for reply in incoming:
                await reply.ack()
                break
    assert failed == ["bookkeeping"]
    assert system.runners["bookkeeping"].counters.retried == 1
    assert reply.correlation_id == command.id
    assert json.loads(reply.body)["status"] == "applied"
