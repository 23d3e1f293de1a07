"""SPEC §8 through the running consumers: what subscribers of `backoffice.events` hear, for each
tab and each kind of cause, and that a crash between the write and the publish loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from contracts.outbound import EVENTS_EXCHANGE
from services import runner
from services.clock import publish_tick
from services.config import Settings
from services.runner import TIDY_PAUSE_S, TIDY_STEP
from tests import factories as f
from tests.harness import (
    ROOT,
    TIME_TRAVEL_S,
    System,
    env_for,
    eventually,
    publish,
    publish_commands,
    spawn,
)


class Subscriber:
    """A dashboard: its own queue, bound to `backoffice.events` with ``#``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def _take(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.received.append((incoming.routing_key or "", json.loads(incoming.body)))

    def matching(self, key: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            body
            for routing_key, body in self.received
            if routing_key == key and all(body.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, key: str, **fields: Any) -> dict[str, Any]:
        await eventually(lambda: bool(self.matching(key, **fields)), what=f"{key} {fields}")
        return self.matching(key, **fields)[0]


@contextlib.asynccontextmanager
async def subscribed(amqp_url: str) -> AsyncIterator[Subscriber]:
    subscriber = Subscriber()
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        await queue.consume(subscriber._take, no_ack=True)
        yield subscriber


async def tick(settings: Settings, at: str) -> None:
    async with await aio_pika.connect(settings.amqp_url) as connection:
        await publish_tick(await connection.channel(), f.at(at), settings.service_secret)


async def test_bookkeeping_tells_of_events_consultants_and_time(
    time_travelling_system: System,
) -> None:
    system = time_travelling_system
    await system.start("bookkeeping")
    async with subscribed(system.settings.amqp_url) as heard:
        await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
        submission = f.submitted("2026-01", "2026-02-03T09:00")
        await publish(system.settings.amqp_url, [submission])
        new = await heard.wait_for("status.bookkeeping.new", period="2026-01")
        assert (new["from"], new["cause"]) == ("waiting", {"kind": "event", "id": submission.id})
        assert (new["agency_id"], new["company_id"], new["domain"]) == (
            f.AGENCY,
            f.COMPANY,
            "bookkeeping",
        )
        assert new["at"] == "2026-02-03T09:00:00.000Z"

        send_back = f.set_status("2026-01", "waiting", "2026-02-05T09:00", deadline="2026-02-20")
        await publish_commands(system.settings.amqp_url, [send_back])
        waiting = await heard.wait_for("status.bookkeeping.waiting", period="2026-01")
        assert waiting["cause"] == {"kind": "user", "id": "u-7", "command_id": send_back.id}
        asked = await heard.wait_for("client.action_required", period="2026-01")
        assert (asked["status"], asked["deadline"], asked["user_id"]) == (
            "waiting",
            "2026-02-20",
            "u-7",
        )

        await tick(system.settings, "2026-02-25T12:00")  # the new deadline has passed
        late = await heard.wait_for("status.bookkeeping.late", period="2026-01")
        assert late["cause"]["kind"] == "time" and late["cause"]["id"]
        assert late["at"] == "2026-02-20T23:00:00.000Z"  # the end of the day in Stockholm

        # Nothing for a repeat: the submission and the command again change no status.
        count = len(heard.received)
        await publish(system.settings.amqp_url, [submission])
        await publish_commands(system.settings.amqp_url, [send_back])
        await asyncio.sleep(1.5)
        assert len(heard.received) == count, heard.received[count:]


async def test_payroll_vat_and_closing_tell_of_their_causes(
    time_travelling_system: System,
) -> None:
    """Payroll statuses change only by consultants, closing statuses only by the client's
    progress; VAT's by the client's steps and by time."""
    system = time_travelling_system
    await system.start("payroll", "vat", "closing")
    async with subscribed(system.settings.amqp_url) as heard:
        await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])

        command = f.payroll_status("2026-01", "done", "2026-02-10T09:00")
        await publish_commands(system.settings.amqp_url, [command])
        done = await heard.wait_for("status.payroll.done", period="2026-01")
        assert (done["from"], done["cause"]) == (
            "waiting",
            {"kind": "user", "id": "u-7", "command_id": command.id},
        )

        # VAT, quarterly: the first quarter ends (time), then a step is done (the client).
        await tick(system.settings, "2026-04-01T12:00")
        ended = await heard.wait_for("status.vat.new")
        assert (ended["from"], ended["cause"]["kind"]) == ("waiting", "time")
        step = f.vat_step("2026-01-01", "2026-03-31", 1, "2026-04-02T09:00")
        await publish(system.settings.amqp_url, [step])
        started = await heard.wait_for("status.vat.in_progress")
        assert started["cause"] == {"kind": "event", "id": step.id}
        await tick(system.settings, "2026-06-01T12:00")  # its return was due 12 May
        overdue = await heard.wait_for("status.vat.late", period=started["period"])
        assert (overdue["from"], overdue["cause"]["kind"]) == ("in_progress", "time")

        progress = f.closing_progress("2026-01-01", "2026-12-31", 2, 5, "2027-01-10T09:00")
        await tick(system.settings, "2027-01-05T12:00")  # the fiscal year has ended
        await publish(system.settings.amqp_url, [progress])
        incomplete = await heard.wait_for("status.closing.incomplete")
        assert (incomplete["from"], incomplete["cause"]) == (
            "new",
            {"kind": "event", "id": progress.id},
        )


CRASHING_CONSUMER = """
import asyncio, os, sys
from services.__main__ import definition, run_processes
from services.config import Settings
from services.runner import ConsumerRunner

async def crash(self, channel):
    if self.pipeline.outbox._unpublished:
        os._exit(17)  # killed between the write (and ack) and the publish

ConsumerRunner._relay = crash
asyncio.run(run_processes(Settings.from_env(), ["bookkeeping"], with_clock=False))
"""


def start_crashing_consumer(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", CRASHING_CONSUMER],
            cwd=ROOT,
            env=env_for(settings),
            stdout=sink,
            stderr=sink,
        )


async def test_a_consumer_killed_between_the_write_and_the_publish_loses_nothing(
    settings: Settings, mongo: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings, max_clock_skew_s=TIME_TRAVEL_S)
    log = tmp_path / "crashing.log"
    async with subscribed(settings.amqp_url) as heard:
        crashing = start_crashing_consumer(settings, log)
        await eventually(lambda: "consuming" in log.read_text(), what="the consumer to start")
        submission = f.submitted("2026-01", "2026-02-03T09:00")
        await publish(settings.amqp_url, [f.details("2026-01-02T08:00"), submission])
        code = await asyncio.to_thread(crashing.wait, 60)
        assert code == 17, log.read_text()[-2000:]
        assert heard.matching("status.bookkeeping.new") == []  # it died before publishing

        successor = System(settings)
        try:
            await successor.start("bookkeeping")
            new = await heard.wait_for("status.bookkeeping.new", period="2026-01")
            assert new["cause"]["id"] == submission.id
            await asyncio.sleep(1)
            ids = [body["id"] for _, body in heard.received]
            assert len(ids) == len(set(ids))  # each once, though found again after a crash
        finally:
            await successor.close()


async def test_what_the_broker_refuses_is_published_again_until_it_takes_it(
    time_travelling_system: System,
) -> None:
    """A subscriber's full queue that rejects publishes fails the relay's commit (and closes its
    channel; other queues may have got their copy): the consumer goes on applying, keeps the
    events and tries again on a fresh channel until the broker takes them all, and then
    stops."""
    system = time_travelling_system
    await system.start("bookkeeping")
    async with (
        subscribed(system.settings.amqp_url) as heard,
        await aio_pika.connect(system.settings.amqp_url) as connection,
    ):
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        full = await channel.declare_queue(
            "test.refusing", arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await full.bind(exchange, "#")
        submission = f.submitted("2026-01", "2026-02-03T09:00")
        await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00"), submission])
        key = f"{f.AGENCY}/{f.COMPANY}"

        def copies() -> list[dict[str, Any]]:
            return heard.matching("status.bookkeeping.new", period="2026-01")

        await eventually(lambda: len(copies()) >= 2, what="the refused event tried again")
        document = await system.document("bookkeeping", key)
        assert document is not None and document["outbox"]  # kept until the broker takes it

        await full.delete(if_unused=False, if_empty=False)

        async def cleared() -> bool:
            document = await system.document("bookkeeping", key)
            return document is not None and document["outbox"] == []

        await eventually(cleared, what="the outbox cleared once published")
        seen = len(copies())
        await asyncio.sleep(3)  # longer than the idle wait before a retry
        assert len(copies()) == seen  # no more tries once taken
        assert {c["id"] for c in copies()} == {copies()[0]["id"]}
        assert copies()[0]["cause"]["id"] == submission.id


async def test_an_idle_consumer_clears_published_events_in_small_steps(
    time_travelling_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a sweep every tab's stored outbox holds published events: clearing them is
    housekeeping, done in small steps with pauses between, never in one burst that stops the
    process and the store for the API's readers; the pauses are drawn at random, so that the
    consumers of a process drift apart."""
    system = time_travelling_system
    pauses: list[float] = []
    draw = runner.tidy_pause

    def drawn() -> float:
        pauses.append(draw())
        return pauses[-1]

    monkeypatch.setattr(runner, "tidy_pause", drawn)
    await system.start("bookkeeping")
    pipeline = system.runners["bookkeeping"].pipeline
    steps: list[tuple[float, int, int]] = []
    tidy = pipeline.tidy

    async def recorded(limit: int = 64) -> int:
        written = await tidy(limit)
        steps.append((time.monotonic(), limit, written))
        return written

    pipeline.tidy = recorded  # type: ignore[method-assign]
    companies = [f"c-{n:02d}" for n in range(20)]
    await publish(
        system.settings.amqp_url,
        [
            message
            for company in companies
            for message in (
                f.details("2026-01-02T08:00", company_id=company),
                f.submitted("2026-01", "2026-02-03T09:00", company_id=company),
            )
        ],
    )

    async def cleared() -> bool:
        for company in companies:
            document = await system.document("bookkeeping", f"{f.AGENCY}/{company}")
            if document is None or document["outbox"]:
                return False
        return True

    await eventually(cleared, what="every stored outbox cleared")
    taken = [step for step in steps if step[2]]
    assert all(limit == TIDY_STEP for _, limit, _ in steps)
    assert all(written <= TIDY_STEP for *_, written in taken) and len(taken) >= 3
    assert sum(written for *_, written in taken) >= len(companies)
    gaps = [later[0] - earlier[0] for earlier, later in pairwise(steps)]
    assert min(gaps) >= TIDY_PAUSE_S / 2  # a pause between steps, for a message to come first
    assert len(pauses) >= len(steps) - 1 and len(set(pauses)) > 1


async def test_tail_prints_one_json_line_per_outbound_event_of_its_filter(
    time_travelling_system: System, tmp_path: Path
) -> None:
    system = time_travelling_system
    await system.start("bookkeeping", "payroll")
    out = tmp_path / "tail.log"
    watching = spawn(
        system.settings, out, "tail", "--domain", "bookkeeping", "--company", f.COMPANY
    )
    try:
        await eventually(lambda: "# tailing" in out.read_text(), what="tail to subscribe")
        other = "c-other"
        await publish(
            system.settings.amqp_url,
            [
                f.details("2026-01-02T08:00"),
                f.details("2026-01-02T08:00", company_id=other),
                f.submitted("2026-01", "2026-02-03T09:00", company_id=other),
                f.submitted("2026-01", "2026-02-04T09:00"),
            ],
        )
        await publish_commands(
            system.settings.amqp_url, [f.payroll_status("2026-01", "done", "2026-02-10T09:00")]
        )

        def lines() -> list[dict[str, Any]]:
            text = out.read_text().splitlines()
            return [json.loads(t) for t in text if t.startswith("{")]

        await eventually(lambda: any(e.get("to") == "new" for e in lines()), what="the line")
        await asyncio.sleep(1.5)  # what should not come has had its chance
        shown = lines()
        assert {(e["company_id"], e["domain"]) for e in shown} == {(f.COMPANY, "bookkeeping")}
        assert ("2026-01", "waiting", "new") in {(e["period"], e["from"], e["to"]) for e in shown}
    finally:
        watching.terminate()
        assert await asyncio.to_thread(watching.wait, 30) == 0
