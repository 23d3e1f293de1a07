"""Nothing is lost when the database goes away, the broker restarts, several replicas compete for
one queue, or a consumer is told to stop in the middle of its work."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.archive import as_stored
from consumers.registry import CONSUMERS
from consumers.rulebook import Rulebook
from contracts.envelope import Message
from services.config import Settings
from services.store.port import from_document
from services.topology import queue_name
from tests import factories as f
from tests.harness import (
    LocalServers,
    Servers,
    System,
    eventually,
    publish,
    queue_depth,
    spawn,
)

KEY = f"{f.AGENCY}/{f.COMPANY}"


async def submitted_periods(system: System, key: str = KEY) -> set[str]:
    doc = await system.document("bookkeeping", key)
    return set((doc or {}).get("facts", {}))


async def test_every_message_is_applied_across_a_database_outage_without_a_retry_storm(
    system: System, servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    await system.start("bookkeeping")
    await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
    months = [f"2026-{m:02d}" for m in range(1, 11)]
    first, second = months[:4], months[4:]
    await publish(system.settings.amqp_url, [f.submitted(p, f"{p}-28T09:00") for p in first])
    await eventually(lambda: _has(system, first), what="the first submissions")
    runner = system.runners["bookkeeping"]
    servers.stop_database()
    try:
        await publish(system.settings.amqp_url, [f.submitted(p, f"{p}-28T09:00") for p in second])
        await eventually(lambda: runner.store_down, timeout=30, what="the consumer to pause")
        await asyncio.sleep(3)  # several probes while it is down
        # The consumer holds the batch and waits for the store: no message is retried alone.
        assert runner.counters.retried == 0
    finally:
        servers.start_database()
    await eventually(lambda: _has(system, months), timeout=60, what="every submission")
    assert not runner.store_down
    assert (runner.counters.retried, runner.counters.dead_lettered) == (0, 0)
    captured = capsys.readouterr()
    log = captured.out + captured.err
    assert log.count("store unavailable") == 1, log
    assert log.count("store available again") == 1, log


async def test_sigterm_ends_a_consumer_in_bounded_time_while_the_store_is_down(
    system: System, settings: Settings, servers: Servers, tmp_path: Path
) -> None:
    process = spawn(
        settings,
        tmp_path / "consumer.log",
        "consumer",
        "bookkeeping",
        BACKOFFICE_SHUTDOWN_GRACE_S="2",
    )
    try:
        await _wait_for_queue(settings)
        servers.stop_database()
        try:
            await publish(settings.amqp_url, [f.details(company_id=f"c-{i}") for i in range(50)])
            await eventually(
                lambda: "store unavailable" in (tmp_path / "consumer.log").read_text(),
                what="the consumer to find the store gone",
            )
            started = asyncio.get_running_loop().time()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0
            assert asyncio.get_running_loop().time() - started < 15
        finally:
            servers.start_database()
    finally:
        if process.poll() is None:
            process.kill()
    # What it held went back to the queue, unapplied.
    assert await queue_depth(settings.amqp_url, queue_name("bookkeeping")) == 50


async def _has(system: System, periods: list[str]) -> bool:
    try:
        return set(periods) <= await submitted_periods(system)
    except Exception:  # the database is still coming back
        return False


async def test_consumers_come_back_after_a_broker_restart(system: System, servers: Servers) -> None:
    await system.start("bookkeeping")
    await publish(
        system.settings.amqp_url,
        [f.details("2026-01-02T08:00"), f.submitted("2026-01", "2026-02-01T09:00")],
    )
    await eventually(lambda: _has(system, ["2026-01"]), what="the first submission")
    runner = system.runners["bookkeeping"]
    servers.rabbitmqctl("stop_app")
    try:
        await eventually(lambda: not runner.consuming.is_set(), what="the consumer to notice")
    finally:
        servers.rabbitmqctl("start_app")
        servers.rabbitmqctl("await_startup")
    await eventually(runner.consuming.is_set, timeout=60, what="the consumer to come back")
    await publish(system.settings.amqp_url, [f.submitted("2026-02", "2026-03-01T09:00")])
    await eventually(lambda: _has(system, ["2026-01", "2026-02"]), what="the new submission")


def _moment(rng: random.Random) -> str:
    minutes = rng.randint(0, 300 * 24 * 60)
    return (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)).isoformat()


def _domain_events(consumer: str, company: str, rng: random.Random) -> list[Message]:
    """Sixty facts of the consumer's own domain for one company, at random times."""
    month = lambda: f"2026-{rng.randint(1, 10):02d}"  # noqa: E731
    quarter = lambda: rng.choice([("2026-01-01", "2026-03-31"), ("2026-04-01", "2026-06-30")])  # noqa: E731
    events: list[Message] = []
    for _ in range(60):
        match consumer:
            case "bookkeeping":
                events.append(f.submitted(month(), _moment(rng), company_id=company))
            case "payroll":
                events.append(
                    f.payroll_completed(
                        month(), _moment(rng), company_id=company, employees=rng.randint(0, 9)
                    )
                )
            case "vat":
                events.append(
                    f.vat_step(
                        *quarter(),
                        rng.randint(1, 3),
                        _moment(rng),
                        completed=rng.random() < 0.7,
                        company_id=company,
                    )
                )
            case "closing":
                done = rng.randint(0, 5)
                events.append(
                    f.closing_progress(
                        "2025-01-01", "2025-12-31", done, 5, _moment(rng), company_id=company
                    )
                )
    return events


def generated_events(consumer: str, companies: list[str], seed: int) -> list[Message]:
    rng = random.Random(seed)
    events: list[Message] = []
    for company in companies:
        events.append(f.details("2026-01-02T08:00", company_id=company))
        events.append(
            f.details(
                "2026-06-01T08:00",
                company_id=company,
                fiscal_year_start="2026-07-01",
                fiscal_year_end="2027-06-30",
                submission_day=rng.randint(1, 28),
            )
        )
        events += _domain_events(consumer, company, rng)
        events += [
            f.uploaded(f"2026-0{m}-10T10:00", company_id=company)
            for m in range(1, 9)
            if consumer == "bookkeeping"
        ]
    return events


def expected_tabs(rulebook: Rulebook[Any], events: list[Message]) -> dict[str, Any]:
    """The tabs in order, as the store loads them: the bytes of packed years stay apart."""
    tabs: dict[str, Any] = {}
    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        key = rulebook.key(event)
        tabs[key] = rulebook.apply(tabs.get(key), event, event.occurred_at)
    return {key: as_stored(tab) for key, tab in tabs.items()}


@pytest.mark.parametrize("consumer", ["bookkeeping", "payroll", "vat", "closing"])
async def test_two_processes_on_one_queue_reach_the_in_order_state(
    system: System, settings: Settings, tmp_path: Path, consumer: str
) -> None:
    """Two replicas on one queue; the active one is killed mid-stream and the other takes over."""
    (rulebook,) = CONSUMERS[consumer].rulebooks
    companies = ["c-1", "c-2", "c-3"]
    events = generated_events(consumer, companies, seed=7)
    expected = expected_tabs(rulebook, events)
    delivered = events + random.Random(8).sample(events, 40)  # duplicates
    random.Random(9).shuffle(delivered)
    first_half, second_half = delivered[: len(delivered) // 2], delivered[len(delivered) // 2 :]
    small_batches = {"BACKOFFICE_PREFETCH": "8", "BACKOFFICE_BATCH_SIZE": "8"}
    logs = [tmp_path / f"replica{i}.log" for i in range(2)]
    processes = []
    try:
        for log in logs:  # one after the other, so that the first is the active consumer
            processes.append(spawn(settings, log, "consumer", consumer, **small_batches))
            await eventually(lambda log=log: "consuming" in _read(log), what="a replica")
        await publish(settings.amqp_url, first_half)
        await eventually(lambda: _read(logs[0]).count('"applied"') >= 20, what="replica 0")
        processes[0].kill()  # no goodbye: whatever it held unacked is delivered again
        processes[0].wait(10)
        await publish(settings.amqp_url, second_half)

        async def converged() -> bool:
            for company in companies:
                key = f"{f.AGENCY}/{company}"
                doc = await system.document(rulebook.collection, key)
                if doc is None:
                    return False
                state = from_document(doc, rulebook.state_type).state
                # Which write last changed its listing depends on the batches, not the facts.
                if msgspec.structs.replace(state, listed_version=0) != expected[key]:
                    return False
            return True

        await eventually(converged, timeout=90, what="the replicas to reach the in-order state")
        assert '"applied"' in _read(logs[1]), "the standby took over"
        applied = [json.loads(line) for line in _read(logs[1]).splitlines() if '"applied"' in line]
        for field in ("event_id", "type", "agency_id", "company_id", "consumer"):
            assert applied[0][field], f"log lines carry {field}"
        processes[1].send_signal(signal.SIGTERM)
        assert processes[1].wait(30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _wait_for_queue(settings: Settings) -> None:
    async def declared() -> bool:
        try:
            await queue_depth(settings.amqp_url, queue_name("bookkeeping"))
            return True
        except Exception:
            return False

    await eventually(declared, timeout=30, what="a replica to declare its queue")
    await asyncio.sleep(0.5)  # both replicas consuming before the burst


async def test_sigterm_finishes_and_acks_what_it_holds(
    system: System, settings: Settings, tmp_path: Path
) -> None:
    companies = [f"c-{i}" for i in range(1000)]
    process = spawn(
        settings,
        tmp_path / "consumer.log",
        "consumer",
        "bookkeeping",
        BACKOFFICE_PREFETCH="200",
        BACKOFFICE_BATCH_SIZE="20",
    )
    try:
        await _wait_for_queue(settings)
        # Keep publishing while the consumer is stopped, so it surely holds work when told.
        publishing = asyncio.create_task(
            publish(settings.amqp_url, [f.details(company_id=c) for c in companies])
        )
        collection = system.client[settings.mongo_db]["bookkeeping"]
        await eventually(lambda: _count_at_least(collection, 20), what="work under way")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        await publishing
    finally:
        if process.poll() is None:
            process.kill()
    applied = await collection.count_documents({})
    waiting = await queue_depth(settings.amqp_url, queue_name("bookkeeping"))
    # Each message was either applied and acked, or left in the queue: none applied and then
    # handed back (that would count twice), none lost.
    assert applied + waiting == len(companies), (applied, waiting)
    assert applied < len(companies), "stopped before the end, or the test proves nothing"
    log = (tmp_path / "consumer.log").read_text()
    assert "stopped consuming" in log


async def _count_at_least(collection: Any, n: int) -> bool:
    return int(await collection.count_documents({})) >= n


def test_servers_script_reports_both_servers(servers: Servers) -> None:
    if not isinstance(servers, LocalServers):
        pytest.skip("the servers run in containers")
    out = subprocess.run(
        ["bash", str(Path(__file__).parents[2] / "deploy" / "servers.sh"), "status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "rabbitmq: up" in out and "mongo:    up" in out


def _receivers(servers: Servers, vhost: str) -> set[str]:
    """The processes (pids) of the connections named `backoffice receiver` on ``vhost``."""
    listed = servers.rabbitmqctl("list_connections", "pid", "vhost", "client_properties")
    return {
        line.split("\t")[0]
        for line in listed.splitlines()
        if line.count("\t") >= 2 and line.split("\t")[1] == vhost and "backoffice receiver" in line
    }


async def test_a_consumer_comes_back_when_the_broker_closes_its_receiver(
    system: System, servers: Servers
) -> None:
    await system.start("bookkeeping")
    await publish(
        system.settings.amqp_url,
        [f.details("2026-01-02T08:00"), f.submitted("2026-01", "2026-02-01T09:00")],
    )
    await eventually(lambda: _has(system, ["2026-01"]), what="the first submission")
    vhost = system.settings.amqp_url.rsplit("/", 1)[1]
    (first,) = _receivers(servers, vhost)
    servers.rabbitmqctl("close_connection", first, "closed by the test")
    await eventually(
        lambda: bool(_receivers(servers, vhost) - {first}), timeout=30, what="a new receiver"
    )
    await publish(system.settings.amqp_url, [f.submitted("2026-02", "2026-03-01T09:00")])
    await eventually(lambda: _has(system, ["2026-01", "2026-02"]), what="the new submission")
