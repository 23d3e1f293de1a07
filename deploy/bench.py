"""The benchmark: figures for docs/benchmarks.md, measured on the servers the project starts.

    deploy/bench.sh [--backends postgresql,sqlite] [--demo 1000,10000] [--quick]

Every part runs on a RabbitMQ virtual host and a database of its own, against real processes
(``python -m services ...``), on loopback only, each bounded in count and time:

- ingest: a backlog of ``bookkeeping.period_submitted`` events for 1,000 companies, from
  published to applied, by our consumer process, by bare aio-pika (ack each, prefetch as ours,
  no store) and by a naive consumer (``message.process()`` and one ``update_one`` each), on
  each FerretDB backend, with the CPU each process and server spent on a message;
- the demo agency at each size, through the main job: time to apply it, memory of each process;
- a time sweep over the demo's companies once their deadlines have passed;
- API latency at the largest demo: the overview, the overview filtered by status, one tab, and a
  consultant's action round trip.

Prints each figure as it comes and writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import aio_pika
import httpx

from consumers.registry import CONSUMERS
from services.__main__ import ALL_NAMES
from services.api.auth import issue_token
from services.clock import publish_tick
from services.config import Settings
from services.eventloop import loop_factory
from services.runner import stats_consumer
from services.store.mongo import connect
from services.sweep import NEXT_DUE, SWEEPS
from services.topology import (
    ACCOUNTING_EXCHANGE,
    declare_consumer,
    definitions,
    policies,
    queue_name,
)

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "deploy" / "servers.sh"
SECRET = "bench-secret-0123456789abcdef0123456789"
TIME_TRAVEL_S = 400 * 86400  # the benchmark's ticks run up to a year ahead of the wall clock
AGENCY = "a-bench"
PREFETCH = Settings().prefetch  # bare aio-pika and the naive consumer hold as many as ours
TIMEOUT_S = 1800  # no part runs longer than this, or stalls this long where progress is read
PROGRESS_EVERY_S = 10.0


def say(*parts: object) -> None:
    print("[bench]", *parts, flush=True)


# ---------------------------------------------------------------- servers and places
def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True
    ).stdout


def fresh_settings() -> Settings:
    """A vhost of its own, with the service's policies, as deploy/servers.sh prepares one."""
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        mongo_db=f"bench_{vhost[6:]}",
        jwt_secret=SECRET,
        service_secret=SECRET,
        max_clock_skew_s=TIME_TRAVEL_S,
        log_format="json",
        log_level="warning",
    )
    document = definitions(policies(ALL_NAMES, settings), vhost)
    document["permissions"] = [
        {"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(document, file)
        file.flush()
        os.chmod(file.name, 0o644)
        rabbitmqctl("import_definitions", file.name)
    return settings


async def drop(settings: Settings) -> None:
    rabbitmqctl("delete_vhost", settings.amqp_url.rsplit("/", 1)[1])
    client = connect(settings.mongo_url, 5000)
    try:
        await client.drop_database(settings.mongo_db)
    finally:
        await client.close()


def use_backend(backend: str) -> None:
    """Restarts FerretDB on ``backend`` (a no-op for a real mongod)."""
    env = {**os.environ, "BACKOFFICE_FERRETDB_BACKEND": backend}
    subprocess.run([str(SERVERS), "stop", "mongo"], check=True, env=env)
    subprocess.run([str(SERVERS), "start", "mongo"], check=True, env=env)


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "BACKOFFICE_AMQP_URL": settings.amqp_url,
        "BACKOFFICE_MONGO_URL": settings.mongo_url,
        "BACKOFFICE_MONGO_DB": settings.mongo_db,
        "BACKOFFICE_JWT_SECRET": SECRET,
        "BACKOFFICE_SERVICE_SECRET": SECRET,
        "BACKOFFICE_MAX_CLOCK_SKEW_S": str(TIME_TRAVEL_S),
        "BACKOFFICE_LOG_FORMAT": "json",
        "BACKOFFICE_LOG_LEVEL": "warning",
        **extra,
    }


def spawn(settings: Settings, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env_of(settings, **extra),
        stdout=subprocess.DEVNULL,
        stderr=open(ROOT / ".servers" / "bench.log", "ab"),
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), or its current one where no peak is kept."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    value = fields.get("VmHWM") or fields.get("VmRSS") or "0 kB"
    return int(value.split()[0]) / 1024


SERVER_PROGRAMS = {"beam.smp": "RabbitMQ", "ferretdb": "FerretDB", "postgres": "PostgreSQL"}


def server_processes() -> Iterator[tuple[str, Path]]:
    """Each server's processes, told apart by their program name."""
    for proc in Path("/proc").iterdir():
        try:
            program = (proc / "comm").read_text().strip()
        except OSError:
            continue
        server = next((v for k, v in SERVER_PROGRAMS.items() if program.startswith(k)), None)
        if server is not None:
            yield server, proc


def server_memory_mib() -> dict[str, float]:
    """Proportional memory (PSS: shared pages split between the processes that share them) of
    each server, summed over its processes."""
    found: dict[str, float] = {}
    for server, proc in server_processes():
        try:
            rollup = (proc / "smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        pss = next((int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0)
        found[server] = found.get(server, 0.0) + pss / 1024
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(proc: Path) -> float:
    """CPU seconds (user and system) a process has used; 0 for one that has gone."""
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds so far: of process ``pid`` ("process"), of each server over its processes, and
    of the whole machine ("machine": its cores' busy time, neither idle, waiting for the disk,
    nor taken by the host). A server process that starts or ends in between skews its
    server's difference a little."""
    found = {"process": _cpu_of(Path(f"/proc/{pid}"))}
    for server, proc in server_processes():
        found[server] = found.get(server, 0.0) + _cpu_of(proc)
    # user, nice, system, idle, iowait, irq, softirq, steal: the busy ones, less the steal
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    found["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return found


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The CPU seconds each process spent between two readings of `cpu_seconds`."""
    return {k: after[k] - before.get(k, 0.0) for k in after}


# ---------------------------------------------------------------- messages
def event(type_: str, at: dt.datetime, company: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": type_,
            "version": 1,
            "occurred_at": at.isoformat(),
            "agency_id": AGENCY,
            "company_id": company,
            "data": data,
        }
    ).encode()


def details(company: str, at: dt.datetime) -> bytes:
    return event(
        "company.details_changed",
        at,
        company,
        {
            "name": f"Bolaget {company}",
            "org_number": "556677-8899",
            "legal_form": "AB",
            "accounting_method": "invoice",
            "vat_frequency": "quarterly",
            "fiscal_year_start": f"{at.year}-01-01",
            "fiscal_year_end": f"{at.year}-12-31",
        },
    )


async def publish(settings: Settings, bodies: list[tuple[str, bytes]]) -> None:
    """As upstream does: declares the exchange, routing key = type, persistent, confirmed."""
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for definition in CONSUMERS.values():
            await declare_consumer(channel, definition, settings)
        exchange = await channel.get_exchange(ACCOUNTING_EXCHANGE)
        for start in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=key,
                    )
                    for key, body in bodies[start : start + 500]
                )
            )


async def queue_lengths(settings: Settings, names: list[str]) -> dict[str, int]:
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel()
        found = {}
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            found[name] = queue.declaration_result.message_count or 0
        return found


async def applied(settings: Settings, consumer: str | None = None) -> int:
    """Messages applied so far by ``consumer``, or by every consumer (their counters)."""
    client = connect(settings.mongo_url, 5000)
    try:
        found = await client[settings.mongo_db]["consumer_stats"].find().to_list()
        return sum(  # a partitioned consumer counts per partition (NAME@p<i>)
            int(d.get("applied", 0))
            for d in found
            if consumer is None or stats_consumer(d["_id"]) == consumer
        )
    finally:
        await client.close()


async def until(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    progress: Callable[[], Awaitable[int]] | None = None,
) -> None:
    """Waits for ``condition``, giving up after ``TIMEOUT_S``. With ``progress`` (a count that
    grows as the work goes on, asked every ``PROGRESS_EVERY_S``), only after ``TIMEOUT_S`` in
    which it did not grow: a slow machine still finishes a long drain (the demo at 10,000
    companies once took 1,795 s), and one that stalled still ends."""
    deadline = time.monotonic() + TIMEOUT_S
    last, asked = await progress() if progress else 0, time.monotonic()
    while not await condition():
        now = time.monotonic()
        if progress and now - asked >= PROGRESS_EVERY_S:
            count, asked = await progress(), now
            if count > last:
                last, deadline = count, now + TIMEOUT_S
        if now > deadline:
            raise TimeoutError(f"gave up after {TIMEOUT_S} s waiting for {what}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- ingest
NAIVE = """
import asyncio, json, os, time, aio_pika
from pymongo import AsyncMongoClient
from services.config import Settings
from services.eventloop import run
async def main():
    client = AsyncMongoClient(os.environ["BACKOFFICE_MONGO_URL"], tz_aware=True)
    tabs = client[os.environ["BACKOFFICE_MONGO_DB"]]["naive"]
    connection = await aio_pika.connect(os.environ["BACKOFFICE_AMQP_URL"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=int(os.environ["PREFETCH"]))
    queue = await channel.declare_queue(os.environ["QUEUE"], passive=True)
    left = int(os.environ["TARGET"])
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                event = json.loads(message.body)
                key = event["agency_id"] + "/" + event["company_id"]
                period = event["data"].get("period", "none")
                await tabs.update_one(
                    {"_id": key}, {"$set": {"facts." + period: event["occurred_at"]}}, upsert=True
                )
            left -= 1
            if not left:
                open(os.environ["ENDED_AT"], "w").write(repr(time.monotonic()))
                return
run(main(), Settings.from_env().event_loop)  # on the loop ours runs on
"""

BARE = """
import asyncio, os, time, aio_pika
from services.config import Settings
from services.eventloop import run
async def main():
    connection = await aio_pika.connect(os.environ["BACKOFFICE_AMQP_URL"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=int(os.environ["PREFETCH"]))
    queue = await channel.declare_queue(os.environ["QUEUE"], passive=True)
    left = int(os.environ["TARGET"])
    async with queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            left -= 1
            if not left:
                open(os.environ["ENDED_AT"], "w").write(repr(time.monotonic()))
                return
run(main(), Settings.from_env().event_loop)  # on the loop ours runs on
"""


@dataclass
class Ingest:
    backend: str
    order: str
    messages: int
    seconds: dict[str, float] = field(default_factory=dict)
    # CPU seconds while each consumer took the backlog, by process (`cpu_seconds`)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def rate(self, who: str) -> float:
        return self.messages / self.seconds[who]

    def cpu_ms(self, who: str, process: str) -> float:
        """Milliseconds of ``process``'s CPU a message while ``who`` took the backlog."""
        return 1000 * self.cpu.get(who, {}).get(process, float("nan")) / self.messages

    def busy_cores(self, who: str) -> float:
        """Cores the whole machine kept busy, on average, while ``who`` took the backlog."""
        return self.cpu.get(who, {}).get("machine", float("nan")) / self.seconds[who]

    def ceiling(self) -> float:
        """Messages a second on every core of the machine if ours cost its own process no more
        than bare aio-pika's does, at the servers' CPU a message while ours took the backlog."""
        floor_ms = self.cpu_ms(BARE_NAME, "process") + sum(
            self.cpu_ms("ours", server) for server in ("FerretDB", "PostgreSQL", "RabbitMQ")
        )
        return (os.cpu_count() or 1) * 1000 / floor_ms


# Ours with the outbound events switched off, to measure what publishing them costs (a backlog of
# submissions changes a status with every message, so each one publishes a status.changed).
SILENT = "ours without outbound events"
BARE_NAME = "bare aio-pika"
NAIVE_NAME = "naive"


def _patched(*lines: str) -> str:
    """Code for ``python -c``: our consumer's entry point, run after ``lines`` change it."""
    return "\n".join(
        ["import sys", "from services.__main__ import main", *lines, "sys.exit(main(sys.argv[1:]))"]
    )


NO_OUTBOUND = _patched(
    "import services.pipeline",
    "services.pipeline.outbound = lambda *args, **kwargs: []",
)
# Ours taking the outbound events' steps one more at a time (--outbound-parts): deriving them
# and dropping them; then keeping them in the outboxes and the relay's ledger as well, encoded
# for the broker, with a relay whose commit returns at once, sending nothing (the broker's part
# is what ours adds to this).
DERIVED = "ours deriving its outbound events only"
UNSENT = "ours with its outbound events not sent"
DERIVE_ONLY = _patched(
    "import services.pipeline",
    "derive = services.pipeline.outbound",
    "services.pipeline.outbound = lambda *args, **kwargs: (derive(*args, **kwargs), [])[1]",
)
NOT_SENT = _patched(
    "import services.runner",
    "async def taken(channel, messages, timeout=None):",
    "    return None",
    "services.runner.commit_all = taken",
)
VARIANTS = {SILENT: NO_OUTBOUND, DERIVED: DERIVE_ONLY, UNSENT: NOT_SENT}
OURS = ("ours", *VARIANTS)

ORDERS = {
    # Every company submits each month, the backlog month by month: no two messages of a batch
    # are for the same company, so each costs a write of its own.
    "interleaved": lambda month, company: (month, company),
    # One company's months together (a system replaying its history): a batch applies many
    # messages to each aggregate it loads, and writes it once.
    "by company": lambda month, company: (company, month),
}


BACKLOG_START = dt.datetime(2026, 1, 2, 8, tzinfo=dt.UTC)


def submissions(
    order: str, companies: int, months: int
) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The companies' names, and each company's submission of each month in ``order``."""
    start = BACKLOG_START
    names = [f"c-{i:05d}" for i in range(companies)]
    places = sorted(
        ((i, j) for i in range(months) for j in range(companies)),
        key=lambda p: ORDERS[order](*p),
    )
    submitted = "bookkeeping.period_submitted"
    backlog = [
        (submitted, event(submitted, start + dt.timedelta(days=31 * i, minutes=j), names[j], {
            "period": f"2026-{i + 1:02d}"
        }))
        for i, j in places
    ]  # fmt: skip
    return names, backlog


async def ingest(backend: str, order: str, companies: int, per_company: int) -> Ingest:
    """Each consumer in turn on the same backlog, after a run that is not counted: the first
    run after a change of backlog order or backend can be much slower (docs/benchmarks.md, (4)
    and (22)), and without it ours, which goes first, took that place every time."""
    result = Ingest(backend, order, companies * per_company)
    start = BACKLOG_START
    names, backlog = submissions(order, companies, per_company)
    warm_up = await _ingest_one(SILENT, companies, start, names, backlog)
    rate = len(backlog) / warm_up
    say(f"ingest {backend:10s} {order:11s} a first run, not counted {rate:8.0f} msg/s")
    for who in ("ours", SILENT, BARE_NAME, NAIVE_NAME):
        cpu = result.cpu.setdefault(who, {})
        result.seconds[who] = await _ingest_one(who, companies, start, names, backlog, cpu)
        say(
            f"ingest {backend:10s} {order:11s} {who:14s} {result.rate(who):8.0f} msg/s"
            f" ({len(backlog)} in {result.seconds[who]:.1f} s)"
        )
    return result


async def _ingest_one(
    who: str,
    companies: int,
    start: dt.datetime,
    names: list[str],
    backlog: list[tuple[str, bytes]],
    cpu: dict[str, float] | None = None,
) -> float:
    """Seconds for ``who`` to take the backlog, on a virtual host and database of its own;
    ``cpu`` gets the CPU seconds that its process and each server used meanwhile."""
    spent = {} if cpu is None else cpu
    queue = queue_name("bookkeeping")
    settings = fresh_settings()
    try:
        if who in OURS:  # the tabs exist before the backlog, as in a running system
            await publish(settings, [("company.details_changed", details(n, start)) for n in names])
            process = spawn(settings, "-m", "services", "consumer", "bookkeeping")
            await until(lambda: _at_least(settings, "bookkeeping", companies), "details")
            stop(process)
        await publish(settings, backlog)
        await until(lambda: _ready(settings, queue, len(backlog)), "the backlog")
        # The clock starts when the consumer has subscribed, not when its process starts.
        if who in OURS:
            command = ("-c", VARIANTS[who]) if who in VARIANTS else ("-m", "services")
            process = spawn(settings, *command, "consumer", "bookkeeping")
            started = await _subscribed(settings, queue)
            before = cpu_seconds(process.pid)
            target = companies + len(backlog)
            seconds = await _drained(settings, target) - started
            after = cpu_seconds(process.pid)
            spent.update(cpu_used(before, after))
            stop(process)
            return seconds
        code = BARE if who == BARE_NAME else NAIVE
        ended_at = ROOT / ".servers" / "bench-ended-at"
        ended_at.unlink(missing_ok=True)
        extra = {
            "QUEUE": queue,
            "PREFETCH": str(PREFETCH),
            "TARGET": str(len(backlog)),
            "ENDED_AT": str(ended_at),
        }
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        process = spawn(settings, "-c", code, **extra)
        started = await _subscribed(settings, queue)
        before = cpu_seconds(process.pid)
        await asyncio.to_thread(process.wait, TIMEOUT_S)  # it ends at the last message
        seconds = float(ended_at.read_text()) - started
        if seconds <= 0:  # it ended before its subscription was seen (polled every 20 ms)
            raise ValueError(
                f"{who} took {len(backlog)} messages too fast to time: give a larger backlog"
            )
        after = cpu_seconds(process.pid)  # its /proc entry is gone: its time is the children's
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        after["process"] = sum(
            getattr(ended, f) - getattr(children, f) for f in ("ru_utime", "ru_stime")
        )
        spent.update(cpu_used(before, after))
        return seconds
    finally:
        await drop(settings)


async def _drained(settings: Settings, target: int) -> float:
    """When ours had applied ``target`` messages, as its counters tell: read every 20 ms on one
    connection, so the figure is not rounded up to a coarse poll."""
    client = connect(settings.mongo_url, 5000)
    try:
        stats = client[settings.mongo_db]["consumer_stats"]
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            found = await stats.find().to_list()
            if sum(int(d.get("applied", 0)) for d in found) >= target:
                return time.monotonic()
            await asyncio.sleep(0.02)
    finally:
        await client.close()
    raise TimeoutError(f"gave up after {TIMEOUT_S} s waiting for ours to drain")


async def _subscribed(settings: Settings, queue: str) -> float:
    """When a consumer subscribed to ``queue`` (as seen by polling every 20 ms)."""
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            declared = await channel.declare_queue(queue, passive=True)
            if declared.declaration_result.consumer_count:
                return time.monotonic()
            await asyncio.sleep(0.02)
    raise TimeoutError(f"no consumer subscribed to {queue}")


async def _at_least(settings: Settings, consumer: str, n: int) -> bool:
    return await applied(settings, consumer) >= n


async def _ready(settings: Settings, queue: str, n: int) -> bool:
    return (await queue_lengths(settings, [queue]))[queue] >= n


def _unsettled(settings: Settings, queues: list[str]) -> int:
    """Messages ready or delivered but not yet acknowledged, in ``queues``."""
    output = rabbitmqctl(
        "list_queues", "-p", settings.amqp_url.rsplit("/", 1)[1], "name", "messages"
    )
    counts = dict(line.split() for line in output.splitlines() if len(line.split()) == 2)
    return sum(int(counts.get(q, "0")) for q in queues)


# ---------------------------------------------------------------- consumers in turn, alone
class Part(NamedTuple):
    """One run of a consumer on one backlog."""

    order: str
    who: str
    rate: float  # msg/s
    cpu_us: float  # of the consumer's process, a message


async def in_turn(companies: int, months: int, rounds: int, runners: tuple[str, ...]) -> list[Part]:
    """Each of ``runners`` on the same backlog, ``rounds`` times per backlog order: the machine
    is noisy, so a comparison is read from several rounds. A first run of each order is not
    counted (the first run after a change of order can be much slower: docs/benchmarks.md), and
    each round starts with the next runner (ours, other, then other, ours…), so that a drift of
    the machine favours none."""
    start = BACKLOG_START
    found = []
    for order in ORDERS:
        names, backlog = submissions(order, companies, months)
        await _ingest_one(SILENT, companies, start, names, backlog)  # warms the servers up
        for round_ in range(rounds):
            turn = round_ % len(runners)
            for who in runners[turn:] + runners[:turn]:
                cpu: dict[str, float] = {}
                seconds = await _ingest_one(who, companies, start, names, backlog, cpu)
                part = Part(order, who, len(backlog) / seconds, cpu["process"] * 1e6 / len(backlog))
                say(f"{order:11s} {who:40s} {part.rate:6.0f} msg/s, {part.cpu_us:5.1f} µs")
                found.append(part)
    return found


async def in_pairs(
    companies: int, months: int, rounds: int, other: str
) -> list[tuple[str, float, float]]:
    """(order, ours msg/s, ``other``'s msg/s), ``rounds`` pairs per order (``in_turn``)."""
    parts = await in_turn(companies, months, rounds, ("ours", other))
    found = []
    for first, second in zip(parts[::2], parts[1::2], strict=True):  # the two runs of a round
        rate = {first.who: first.rate, second.who: second.rate}
        found.append((first.order, rate["ours"], rate[other]))
    return found


def pairs_markdown(
    rows: list[tuple[str, float, float]], messages: int, command: str, other: str
) -> str:
    beside = {
        SILENT: "with and without its outbound events",
        NAIVE_NAME: "and by the naive consumer",
    }.get(other, f"and by {other}")
    lines = [
        f"Measured {dt.date.today().isoformat()} by `{command}`: {messages} submissions applied"
        f" by one bookkeeping consumer process, {beside}, in pairs, on FerretDB on PostgreSQL.",
        "",
        f"| backlog order | ours (msg/s) | {other.removeprefix('ours ')} (msg/s) | ratio |",
        "|---|---:|---:|---:|",
        *[f"| {o} | {a:.0f} | {b:.0f} | {a / b:.2f} |" for o, a, b in rows],
    ]
    for order in ORDERS:
        ratios = [a / b for o, a, b in rows if o == order]
        if ratios:
            lines.append(
                f"| {order}, median of {len(ratios)} | | | {statistics.median(ratios):.2f} |"
            )
    return "\n".join([*lines, ""])


# ---------------------------------------------------------------- the outbound events' parts
PARTS = (SILENT, DERIVED, UNSENT, "ours")


def parts_markdown(parts: list[Part], messages: int, command: str) -> str:
    steps = {
        SILENT: "without outbound events",
        DERIVED: "deriving them, then dropping them",
        UNSENT: "and keeping them in the outboxes and the ledger, encoded, not sent",
        "ours": "and sending them: ours",
    }
    lines = [
        f"Measured {dt.date.today().isoformat()} by `{command}`: {messages} submissions applied"
        " by one bookkeeping consumer process, taking the outbound events' steps one more at a"
        " time, on FerretDB on PostgreSQL; medians of the runs. The CPU is the consumer's"
        " process's, a message; the budget is the CPU at which a process that sets the pace"
        " would take the backlog 10 % slower than without outbound events.",
        "",
        "| backlog order | steps | runs | msg/s | ÷ without | process CPU (µs a message)"
        " | the step's part (µs) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for order in ORDERS:
        runs = {who: [p for p in parts if p.order == order and p.who == who] for who in PARTS}
        medians = {
            who: Part(
                order,
                who,
                statistics.median(p.rate for p in found),
                statistics.median(p.cpu_us for p in found),
            )
            for who, found in runs.items()
            if found
        }
        if SILENT not in medians:
            continue
        base, before = medians[SILENT], None
        for who, part in medians.items():
            step = "" if before is None else f"{part.cpu_us - before.cpu_us:+.1f}"
            lines.append(
                f"| {order} | {steps[who]} | {len(runs[who])} | {part.rate:.0f} |"
                f" {part.rate / base.rate:.2f} | {part.cpu_us:.1f} | {step} |"
            )
            before = part
        if "ours" in medians:
            budget = base.cpu_us / 0.9  # at that CPU a message, the process runs 0.9 x as fast
            lines.append(
                f"| {order} | the budget: 10 % slower | | | 0.90 | {budget:.1f} |"
                f" {budget - base.cpu_us:+.1f} in all |"
            )
    return "\n".join([*lines, ""])


# ---------------------------------------------------------------- the relay's publish alone
async def publish_cost(messages: int = 10_000) -> dict[str, tuple[float, float]]:
    """(msg/s, µs of this process's CPU per message) for publishing ``messages`` outbound-sized
    messages so that the broker took them: through aiormq's ``basic_publish`` with confirms,
    and in transactions of 500 as the relay does (``services/committed.py``), alternating
    twice."""
    import aiormq

    from services.committed import Outgoing, commit_all, open_transactional

    body = b'{"type":"status.changed","id":"bookkeeping/a-1/c-2/17/0","period":"2026-02"}' * 3
    settings = fresh_settings()
    found: dict[str, list[tuple[float, float]]] = {"basic_publish": [], "relay's commits": []}
    try:
        async with await aio_pika.connect(settings.amqp_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_exchange("bench.publish", aio_pika.ExchangeType.TOPIC)
            raw: Any = await channel.get_underlay_channel()
            transactional = await open_transactional(raw)

            async def one_by_one() -> None:
                await asyncio.gather(*(
                    raw.basic_publish(body, exchange="bench.publish", routing_key="status.x.new",
                                      properties=aiormq.spec.Basic.Properties(
                                          content_type="application/json", delivery_mode=2,
                                          message_id=f"m-{i}", message_type="status.changed"),
                                      wait=False)
                    for i in range(messages)
                ))  # fmt: skip

            async def committed() -> None:
                for start in range(0, messages, 500):
                    sent = [
                        Outgoing("bench.publish", "status.x.new", body, f"m-{i}", "status.changed")
                        for i in range(start, min(messages, start + 500))
                    ]
                    await commit_all(transactional, sent)

            for _ in range(2):
                for label, way in (("basic_publish", one_by_one), ("relay's commits", committed)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    await way()
                    found[label].append(
                        (
                            messages / (time.perf_counter() - wall),
                            1e6 * (time.process_time() - cpu) / messages,
                        )
                    )
    finally:
        await drop(settings)
    result = {}
    for label, runs in found.items():
        rate, cpu = max(runs, key=lambda r: r[0])
        result[label] = (rate, cpu)
        say(f"publish {label:16s} {rate:8.0f} msg/s, {cpu:5.0f} µs of CPU a message")
    return result


# ---------------------------------------------------------------- scale-out
# One consumer kind (bookkeeping) with P partitions and 1, 2 or 4 replicas, each its own
# process, beside the same kind unpartitioned: the same interleaved backlog each time.
SCALE_PARTITIONS = 4
SCALE_RUNS = (("1 replica, unpartitioned", 1, 1), ("1 replica", 4, 1), ("2 replicas", 4, 2),
              ("4 replicas", 4, 4))  # fmt: skip


@dataclass
class ScaleOut:
    companies: int
    months: int
    messages: int
    seconds: dict[str, float] = field(default_factory=dict)

    def rate(self, label: str) -> float:
        return self.messages / self.seconds[label]


async def scale_out(companies: int, months: int) -> ScaleOut:
    start = BACKLOG_START
    names, backlog = submissions("interleaved", companies, months)
    result = ScaleOut(companies, months, len(backlog))
    for label, partitions, replicas in SCALE_RUNS:
        result.seconds[label] = await _scale_one(partitions, replicas, start, names, backlog)
        say(
            f"scale-out {label:26s} {result.rate(label):8.0f} msg/s"
            f" ({len(backlog)} in {result.seconds[label]:.1f} s)"
        )
    return result


async def _scale_one(
    partitions: int,
    replicas: int,
    start: dt.datetime,
    names: list[str],
    backlog: list[tuple[str, bytes]],
) -> float:
    settings = fresh_settings()
    env = {"BACKOFFICE_PARTITIONS": str(partitions)}
    try:
        await publish(settings, [("company.details_changed", details(n, start)) for n in names])
        process = spawn(settings, "-m", "services", "consumer", "bookkeeping", **env)
        await until(lambda: _at_least(settings, "bookkeeping", len(names)), "details")
        stop(process)
        await publish(settings, backlog)
        queue = queue_name("bookkeeping")
        await until(lambda: _ready(settings, queue, len(backlog)), "the backlog")
        processes = [
            spawn(settings, "-m", "services", "consumer", "bookkeeping", **env)
            for _ in range(replicas)
        ]
        started = await _subscribed(settings, queue)
        target = len(names) + len(backlog)
        await until(lambda: _at_least(settings, "bookkeeping", target), "the replicas to drain")
        seconds = time.monotonic() - started
        for process in processes:
            stop(process)
        return seconds
    finally:
        await drop(settings)


def scale_markdown(result: ScaleOut, command: str) -> str:
    base = result.rate(SCALE_RUNS[0][0])
    return "\n".join(
        [
            f"Measured {dt.date.today().isoformat()} by `{command}`: {result.messages}"
            f" submissions ({result.companies} companies, {result.months} months each, interleaved)"
            " applied by the bookkeeping consumer, each replica its own process"
            f" (`python -m services consumer bookkeeping`), P = {SCALE_PARTITIONS} where"
            " partitioned, on FerretDB on PostgreSQL, in one run.",
            "",
            "| replicas | msg/s | ÷ unpartitioned, 1 replica |",
            "|---|---:|---:|",
            *[
                f"| {label} | {result.rate(label):.0f} | {result.rate(label) / base:.2f} |"
                for label, _, _ in SCALE_RUNS
            ],
            "",
        ]
    )


# ---------------------------------------------------------------- demo, sweep, API
@dataclass
class Demo:
    companies: int
    messages: int = 0
    seconds: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)
    sweep: tuple[int, float] | None = None
    api: dict[str, tuple[float, float, int, int]] = field(default_factory=dict)


async def demo(companies: int, with_api: bool, with_sweep: bool) -> Demo:
    result = Demo(companies)
    settings = fresh_settings()
    port = "8765"
    main = spawn(settings, "-m", "services", "run", "--no-clock", BACKOFFICE_API_PORT=port)
    try:
        await asyncio.sleep(3)
        started = time.monotonic()
        filler = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services",
            "demo",
            "--companies",
            str(companies),
            cwd=ROOT,
            env=env_of(settings, BACKOFFICE_API_PORT=port),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out, _ = await filler.communicate()
        printed = out.decode()
        assert filler.returncode == 0, printed
        result.messages = int(printed.split("Published ")[1].split()[0]) + int(
            printed.split(" events and ")[1].split()[0]
        )
        queues = [queue_name(n) for n in CONSUMERS]
        await until(
            lambda: _all_drained(settings, queues),
            "the demo to drain",
            lambda: applied(settings),
        )
        result.seconds = time.monotonic() - started
        result.memory = {"main job": peak_rss_mib(main.pid), **server_memory_mib()}
        say(
            f"demo {companies:6d} companies: {result.messages} messages in {result.seconds:.1f} s;"
            f" memory {', '.join(f'{k} {v:.0f} MiB' for k, v in result.memory.items())}"
        )
        if with_sweep:
            try:
                result.sweep = await sweep(settings)
            except Exception as error:  # the figures so far still count
                say(f"sweep failed: {type(error).__name__}: {error}")
                result.sweep = None
            say(
                f"sweep {companies:6d} companies: {result.sweep[0]} aggregates in"
                f" {result.sweep[1]:.1f} s"
            )
        if with_api:
            result.api = await api_latency(f"http://127.0.0.1:{port}")
            for route, (p50, p99, n, failed) in result.api.items():
                say(
                    f"api {companies} companies {route:24s}"
                    f" p50 {p50:6.1f} ms p99 {p99:6.1f} ms n={n} failed={failed}"
                )
    finally:
        stop(main)
        await drop(settings)
    return result


async def _all_drained(settings: Settings, queues: list[str]) -> bool:
    """Nothing ready (cheap to ask), then nothing unacknowledged either (asked once)."""
    if any((await queue_lengths(settings, queues)).values()):
        return False
    return _unsettled(settings, queues) == 0


# The collections a tick sweeps, and the consumers that own them.
CLOCKED = {
    rulebook.collection: name
    for name, definition in CONSUMERS.items()
    for rulebook in definition.rulebooks
    if rulebook.follows_clock
}


async def sweep(settings: Settings) -> tuple[int, float]:
    """A tick 40 days ahead: every tab has a deadline passed or a period begun. Timed until
    every clock-following collection's watermark has passed the tick and every queue is empty
    with nothing unacknowledged (the sweep's outbound events published); the aggregates
    counted are those the tick was applied to, over every owner."""
    client = connect(settings.mongo_url, 5000)
    database = client[settings.mongo_db]
    try:
        tick_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
        owners = sorted(set(CLOCKED.values()))
        before = await _swept(database, owners)
        started = time.monotonic()
        async with await aio_pika.connect(settings.amqp_url) as connection:
            await publish_tick(await connection.channel(), tick_at, SECRET, 600)

        async def swept() -> bool:
            marks = await database[SWEEPS].find({"_id": {"$in": list(CLOCKED)}}).to_list(None)
            passed = {m["_id"] for m in marks if m.get(NEXT_DUE) and m[NEXT_DUE] > tick_at}
            return passed == set(CLOCKED)

        await until(swept, "the sweep")
        queues = [queue_name(n) for n in CONSUMERS]
        await until(
            lambda: _all_drained(settings, queues),
            "the sweep's messages",
            lambda: applied(settings),
        )
        seconds = time.monotonic() - started
        return await _swept(database, owners) - before, seconds
    finally:
        await client.close()


SweepRow = tuple[str, int, float, dict[str, float]]  # tick, tabs, seconds, CPU seconds used


async def sweep_alone(companies: int) -> list[SweepRow]:
    """Bookkeeping tabs of ``companies`` companies in one consumer process, then two ticks: the
    first finds no watermark (a new database) and reads the collection once; the second, forty
    days on, finds every tab due (a deadline passed, a month begun). With each sweep, the CPU
    that the consumer and each server spent on it: what bounds a sweep on two cores."""
    settings = fresh_settings()
    now = dt.datetime.now(dt.UTC)
    names = [f"c-{i:05d}" for i in range(companies)]
    found = []
    try:
        await publish(settings, [("company.details_changed", details(n, now)) for n in names])
        process = spawn(settings, "-m", "services", "consumer", "bookkeeping")
        client = connect(settings.mongo_url, 5000)
        database = client[settings.mongo_db]
        try:
            await until(lambda: _at_least(settings, "bookkeeping", companies), "the tabs")
            for what, at in (
                ("first tick, no watermark", now),
                ("forty days on", now + dt.timedelta(days=40)),
            ):
                before = await _swept(database)
                cpu_before = cpu_seconds(process.pid)
                started = time.monotonic()
                async with await aio_pika.connect(settings.amqp_url) as connection:
                    await publish_tick(await connection.channel(), at, SECRET, 600)

                async def passed(at: dt.datetime = at) -> bool:
                    mark = await database[SWEEPS].find_one({"_id": "bookkeeping"})
                    return bool(mark) and mark[NEXT_DUE] > at

                await until(passed, f"the sweep ({what})")
                seconds = time.monotonic() - started
                used = cpu_used(cpu_before, cpu_seconds(process.pid))
                found.append((what, await _swept(database) - before, seconds, used))
                say(
                    f"sweep of {companies} bookkeeping tabs, {what}:"
                    f" {found[-1][1]} in {seconds:.1f} s; CPU s "
                    + ", ".join(f"{k} {v:.2f}" for k, v in used.items())
                )
        finally:
            stop(process)
            await client.close()
    finally:
        await drop(settings)
    return found


def sweep_markdown(companies: int, rows: list[SweepRow], command: str) -> str:
    def per_tab(used: dict[str, float], n: int, who: str) -> str:
        return f"{used.get(who, 0.0) * 1000 / n:.2f}" if n else ""

    return "\n".join(
        [
            f"Measured {dt.date.today().isoformat()} by `{command}`: {companies} companies'"
            " bookkeeping tabs in one consumer process (`python -m services consumer"
            " bookkeeping`), on FerretDB on PostgreSQL. CPU in milliseconds a tab handed the"
            " tick, from the tick until the sweep's end; how busy the machine was (cores).",
            "",
            "| tick | tabs handed the tick | seconds | our process (ms) | FerretDB (ms) |"
            " PostgreSQL (ms) | RabbitMQ (ms) | machine busy (cores) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *[
                f"| {what} | {n} | {seconds:.1f} | {per_tab(used, n, 'process')} |"
                f" {per_tab(used, n, 'FerretDB')} | {per_tab(used, n, 'PostgreSQL')} |"
                f" {per_tab(used, n, 'RabbitMQ')} |"
                f" {used.get('machine', 0.0) / seconds:.2f} |"
                for what, n, seconds, used in rows
            ],
            "",
        ]
    )


async def _swept(database: Any, consumers: list[str] | None = None) -> int:
    total = 0
    for name in consumers or ["bookkeeping"]:
        stats = await database["consumer_stats"].find_one({"_id": name})
        total += int((stats or {}).get("swept", 0))
    return total


# Requests per route: the p99 of 500 is the fifth slowest, where that of 200 (before) was the
# second, decided by the one or two slowest requests of a run.
API_REQUESTS = 500


async def api_latency(
    base: str, requests: int = API_REQUESTS
) -> dict[str, tuple[float, float, int, int]]:
    token = issue_token(SECRET, "u-anna", "a-demo", ["manage_users"], int(time.time()) + 3600)
    headers = {"Authorization": f"Bearer {token}"}
    found: dict[str, tuple[float, float, int, int]] = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as api:
        routes: dict[str, Callable[[int], Awaitable[httpx.Response]]] = {
            "overview": lambda i: api.get("/v1/companies", params={"limit": 50}),
            "overview, status=late": lambda i: api.get(
                "/v1/companies", params={"domain": "bookkeeping", "status": "late", "limit": 50}
            ),
            "one tab (bookkeeping)": lambda i: api.get(
                f"/v1/companies/c-{i % 30 + 1:03d}/bookkeeping"
            ),
            "action round trip": lambda i: api.put(
                f"/v1/companies/c-{i % 30 + 1:03d}/bookkeeping/periods/"
                f"{dt.date.today().strftime('%Y-%m')}/status",
                json={"status": ["in_progress", "done"][i % 2]},
            ),
        }
        for route, call in routes.items():
            timings, failed = [], 0
            deadline = time.monotonic() + 120
            for i in range(requests):
                started = time.perf_counter()
                try:
                    response = await call(i)
                    ok = response.status_code in (200, 202)
                except httpx.HTTPError:
                    ok = False
                timings.append((time.perf_counter() - started) * 1000)
                failed += not ok
                if time.monotonic() > deadline:
                    break
            timings.sort()
            p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
            found[route] = (statistics.median(timings), p99, len(timings), failed)
    return found


# ---------------------------------------------------------------- cost per message by age
AGES = (1, 5, 10)  # years of facts


@dataclass
class Age:
    years: int
    periods: int  # the periods the tab shows
    not_packed: int  # of which in years not packed (consumers/archive.py)
    whole_bytes: int  # the tab as JSON, kept whole (as before settled years were packed)
    stored_bytes: int  # its document as the store writes it (BSON)
    packed_bytes: int  # the documents of its packed years (BSON, all together)
    rules_ms: float  # the rulebook alone
    with_codec_ms: float  # and the state read from and written to a document
    tab: Any = None  # the aged tab itself
    # Its document replaced and read by _id on the store: as stored; and kept whole, as the
    # store wrote it before settled years were packed (nested parts as JSON text) and before
    # that (every field nested): ms each.
    stored: dict[str, tuple[float, float]] = field(default_factory=dict)


def _ms(found: dict[str, tuple[float, float]], form: str, which: int) -> str:
    return f"{found[form][which]:.1f}" if form in found else "–"


def aging_lines(ages: list[Age]) -> list[str]:
    return [
        "## Cost per message as a company ages (one bookkeeping tab)",
        "",
        "Rules and codec in process, for a message that changes the tab (a document uploaded);"
        " the store's replace and read of the tab's document by `_id` among 1,000 copies: as"
        " the store keeps it (settled years packed apart) and, for comparison, the same tab"
        " kept whole, with its nested parts as JSON text (the store's form before years were"
        " packed) and with every field nested (before that).",
        "",
        "| years of facts | periods shown | not packed | tab kept whole (bytes, JSON)"
        " | its document as stored (bytes, BSON) | its packed years apart (bytes, BSON)"
        " | rules (ms/message)"
        " | rules and document codec (ms/message) | store replace (ms) | store read (ms)"
        " | kept whole, as text: replace, read (ms) | kept whole, nested: replace, read (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {a.years} | {a.periods} | {a.not_packed} | {a.whole_bytes} | {a.stored_bytes}"
            f" | {a.packed_bytes}"
            f" | {a.rules_ms:.2f} | {a.with_codec_ms:.2f} | {_ms(a.stored, 'as stored', 0)}"
            f" | {_ms(a.stored, 'as stored', 1)}"
            f" | {_ms(a.stored, 'as text', 0)}, {_ms(a.stored, 'as text', 1)}"
            f" | {_ms(a.stored, 'nested', 0)}, {_ms(a.stored, 'nested', 1)} |"
            for a in ages
        ],
    ]


async def aged(command: str) -> str:
    """The aging table alone, measured now, with its command."""
    ages = [aging(years) for years in AGES]
    await stored_costs(ages)
    for a in ages:
        say(
            f"age {a.years} years: {a.rules_ms:.2f} ms rules, {a.with_codec_ms:.2f} ms with codec,"
            f" store {a.stored}"
        )
    measured = f"Measured {dt.date.today().isoformat()} by `{command}`, on FerretDB on PostgreSQL."
    lines = [measured, "", *aging_lines(ages)[2:]]  # under the page's own heading
    return "\n".join([*lines, ""])


def aging(years: int, messages: int = 1000) -> Age:
    """One bookkeeping tab with ``years`` of monthly submissions, then ``messages`` more
    messages (document uploads, each a change), in this process: no broker, no store."""
    import bson
    import msgspec

    from consumers import bookkeeping
    from consumers.archive import unpacked
    from contracts.registry import decode
    from services.store.port import from_document, parts_of, to_document

    def message(type_: str, at: dt.datetime, data: dict[str, Any]) -> Any:
        return decode(event(type_, at, "c-aging", data))

    first = 2026 - years
    start = dt.datetime(first, 1, 2, tzinfo=dt.UTC)
    details = {
        "name": "Åldern AB",
        "org_number": "556677-8899",
        "legal_form": "AB",
        "accounting_method": "invoice",
        "vat_frequency": "monthly",
        "fiscal_year_start": f"{first}-01-01",
        "fiscal_year_end": f"{first}-12-31",
    }
    tab = bookkeeping.apply(None, message("company.details_changed", start, details), start)
    for month in range(12 * years - 1):
        year, number = first + month // 12, month % 12 + 1
        at = dt.datetime(year, number, 28, tzinfo=dt.UTC)
        submitted = message("bookkeeping.period_submitted", at, {"period": f"{year}-{number:02d}"})
        tab = bookkeeping.apply(tab, submitted, at)
    now = dt.datetime(2025, 12, 20, tzinfo=dt.UTC)
    uploads = [
        message(
            "bookkeeping.document_uploaded", now + dt.timedelta(seconds=i), {"document_id": str(i)}
        )
        for i in range(messages)
    ]
    for upload in uploads[:100]:  # warm up
        to_document("k", 2, bookkeeping.apply(tab, upload, upload.occurred_at))
    started = time.perf_counter()
    for upload in uploads:
        bookkeeping.apply(tab, upload, upload.occurred_at)
    rules = (time.perf_counter() - started) / messages * 1000
    document = to_document("k", 1, tab)
    started = time.perf_counter()
    for upload in uploads:
        state = from_document(document, bookkeeping.BookkeepingTab).state
        to_document("k", 2, bookkeeping.apply(state, upload, upload.occurred_at))
    codec = (time.perf_counter() - started) / messages * 1000
    whole = unpacked(tab)
    size = len(msgspec.json.encode(whole))
    stored = len(bson.encode(document))
    packed = sum(len(bson.encode(part)) for part in parts_of("k", tab))
    return Age(years, len(whole.periods), len(tab.periods), size, stored, packed, rules, codec, tab)


async def stored_costs(
    ages: list[Age], copies: int = 1000, rounds: int = 5, each: int = 60
) -> None:
    """Times replacing and reading each aged tab's document by ``_id`` among ``copies`` of it,
    in the form the store writes, and kept whole: as text, and with every field nested. The
    ages and forms take turns, ``rounds`` times ``each`` of both, and each figure is the median
    of its rounds: so a slower minute of the machine weighs on all of them alike."""
    import msgspec

    from consumers.archive import unpacked
    from services.store.port import VERSION_FIELD, opened, to_document

    def forms(age: Age) -> dict[str, dict[str, Any]]:
        whole = unpacked(age.tab)
        return {
            "as stored": to_document("k", 1, age.tab),
            "as text": {  # as the store wrote texts before it compressed long ones
                k: opened(v).decode() if isinstance(v, bytes) else v
                for k, v in to_document("k", 1, whole).items()
            },
            "nested": {
                **msgspec.to_builtins(whole, builtin_types=(dt.datetime,)),
                "_id": "k",
                VERSION_FIELD: 1,
            },
        }

    client = connect(Settings().mongo_url, 20_000)
    name = f"bench_documents_{uuid.uuid4().hex[:8]}"
    timed: dict[tuple[int, str], list[tuple[float, float]]] = {}
    try:
        targets = []
        for age in ages:
            for form, document in forms(age).items():
                collection = client[name][f"{age.years}_{form.replace(' ', '_')}"]
                for start in range(0, copies, 100):
                    await collection.insert_many(
                        [{**document, "_id": f"k{i}"} for i in range(start, start + 100)]
                    )
                targets.append((age, form, document, collection))
        # Each replace is the store's: conditional on the version it read, writing the next.
        versions: dict[tuple[str, str], int] = {}
        for turn in range(rounds):
            for age, form, document, collection in targets:
                ids = [f"k{(turn * each + i) % copies}" for i in range(each)]
                started = time.perf_counter()
                for id_ in ids:
                    version = versions.get((collection.name, id_), 1)
                    done = await collection.replace_one(
                        {"_id": id_, VERSION_FIELD: version},
                        {**document, "_id": id_, VERSION_FIELD: version + 1},
                    )
                    assert done.matched_count == 1, (collection.name, id_, version)
                    versions[(collection.name, id_)] = version + 1
                write = (time.perf_counter() - started) / each * 1000
                started = time.perf_counter()
                for id_ in ids:
                    await collection.find_one({"_id": id_})
                read = (time.perf_counter() - started) / each * 1000
                timed.setdefault((age.years, form), []).append((write, read))
        for age in ages:
            for form in ("as stored", "as text", "nested"):
                runs = timed[(age.years, form)]
                age.stored[form] = (
                    statistics.median(w for w, _ in runs),
                    statistics.median(r for _, r in runs),
                )
    finally:
        await client.drop_database(name)
        await client.close()


# ---------------------------------------------------------------- the report
def versions() -> dict[str, str]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "machine": f"{os.cpu_count()} cores ({cpu}), {int(memory) / 1024 / 1024:.0f} GiB",
        "Python": platform.python_version(),
        "event loop": _event_loop(),
        "RabbitMQ": run("rabbitmqctl", "version"),
        "FerretDB": "v1.24.2 with deploy/ferretdb/*.patch",
        "PostgreSQL": run("psql", "--version").replace("psql (PostgreSQL) ", ""),
    }


def _event_loop() -> str:
    """The loop every process of the run takes (ours, bare aio-pika and the naive consumer)."""
    factory = loop_factory(Settings.from_env().event_loop)
    return "asyncio" if factory is None else f"uvloop {importlib.metadata.version('uvloop')}"


def markdown(
    facts: dict[str, str],
    ingests: list[Ingest],
    demos: list[Demo],
    ages: list[Age],
    command: str,
) -> str:
    lines = [
        f"Measured {dt.date.today().isoformat()} by `{command}` on the servers the project starts",
        "(`deploy/servers.sh`), in one run. Figures from one run only compare within it: the",
        "machine is shared and noisy, so read ratios, not absolute numbers.",
        "",
        *[f"- {k}: {v}" for k, v in facts.items()],
        "",
        "## Ingest: a backlog applied by one consumer process",
        "",
        "| backend | backlog order | messages | ours (msg/s) | ours without outbound events"
        " (msg/s) | bare aio-pika (msg/s) | naive (msg/s) | ours ÷ without outbound"
        " | ours ÷ bare | ours ÷ naive |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ingests:
        lines.append(
            f"| FerretDB on {r.backend} | {r.order} | {r.messages} | {r.rate('ours'):.0f} |"
            f" {r.rate(SILENT):.0f} | {r.rate('bare aio-pika'):.0f} | {r.rate('naive'):.0f} |"
            f" {r.rate('ours') / r.rate(SILENT):.2f} |"
            f" {r.rate('ours') / r.rate('bare aio-pika'):.2f} |"
            f" {r.rate('ours') / r.rate('naive'):.1f} |"
        )
    cores = os.cpu_count() or 1
    lines += [
        "",
        "Where the CPU went: milliseconds a message, of each process while ours took the"
        " backlog, and of bare aio-pika's own process while it took it; how busy the whole"
        f" machine was meanwhile (cores of {cores}). The ceiling is what ours could take on all"
        f" {cores} cores were its own process as cheap as bare aio-pika's: {cores} cores ÷ (bare"
        " aio-pika's process + FerretDB + PostgreSQL + RabbitMQ, as they were in ours).",
        "",
        "| backend | backlog order | ours: its process (ms) | FerretDB (ms) | PostgreSQL (ms)"
        " | RabbitMQ (ms) | machine busy (cores) | bare aio-pika: its process (ms)"
        " | machine busy (cores) | ceiling (msg/s) | ceiling ÷ bare |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ingests:
        lines.append(
            f"| FerretDB on {r.backend} | {r.order} | {r.cpu_ms('ours', 'process'):.2f} |"
            f" {r.cpu_ms('ours', 'FerretDB'):.2f} | {r.cpu_ms('ours', 'PostgreSQL'):.2f} |"
            f" {r.cpu_ms('ours', 'RabbitMQ'):.2f} | {r.busy_cores('ours'):.2f} |"
            f" {r.cpu_ms('bare aio-pika', 'process'):.2f} |"
            f" {r.busy_cores('bare aio-pika'):.2f} |"
            f" {r.ceiling():.0f} | {r.ceiling() / r.rate('bare aio-pika'):.2f} |"
        )
    lines += [
        "",
        "## The demo agency through the main job",
        "",
        "| companies | messages | time to apply (s) | msg/s"
        " | peak memory of the main job (MiB) | servers' memory at the end (PSS, MiB) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for d in demos:
        servers = ", ".join(f"{k} {v:.0f}" for k, v in d.memory.items() if k != "main job")
        lines.append(
            f"| {d.companies} | {d.messages} | {d.seconds:.0f} | {d.messages / d.seconds:.0f} |"
            f" {d.memory.get('main job', float('nan')):.0f} | {servers} |"
        )
    if ages:
        lines += ["", *aging_lines(ages)]
    sweeps = [d for d in demos if d.sweep]
    if sweeps:
        lines += [
            "",
            "## A time sweep",
            "",
            "A tick forty days ahead, in the main job: timed until every tab kind has swept"
            " (its watermark past the tick) and every queue is empty.",
            "",
            "| companies | tabs handed the tick (four kinds) | seconds |",
            "|---:|---:|---:|",
        ]
        for d in sweeps:
            assert d.sweep is not None
            lines.append(f"| {d.companies} | {d.sweep[0]} | {d.sweep[1]:.1f} |")
    apis = [d for d in demos if d.api]
    for d in apis:
        lines += [
            "",
            f"## API latency at {d.companies} companies (one client, sequential requests)",
            "",
            "After the sweep, every queue empty.",
            "",
            "| route | p50 (ms) | p99 (ms) | requests | failed |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| {route} | {p50:.1f} | {p99:.1f} | {n} | {failed} |"
                for route, (p50, p99, n, failed) in d.api.items()
            ],
        ]
    return "\n".join(lines) + "\n"


BEGIN = "<!-- figures: written by deploy/bench.sh -->"
END = "<!-- end of figures -->"
AGING_BEGIN = "<!-- aging figures: written by deploy/bench.sh --aging-alone -->"
AGING_END = "<!-- end of aging figures -->"
SWEEP_BEGIN = "<!-- sweep figures: written by deploy/bench.sh --sweep-alone -->"
SWEEP_END = "<!-- end of sweep figures -->"
SCALE_BEGIN = "<!-- scale-out figures: written by deploy/bench.sh --scale-out -->"
SCALE_END = "<!-- end of scale-out figures -->"
OUTBOUND_BEGIN = "<!-- outbound figures: written by deploy/bench.sh --outbound-alone -->"
OUTBOUND_END = "<!-- end of outbound figures -->"
PARTS_BEGIN = "<!-- outbound parts: written by deploy/bench.sh --outbound-parts -->"
PARTS_END = "<!-- end of outbound parts -->"
BARE_BEGIN = "<!-- bare figures: written by deploy/bench.sh --bare-alone -->"
BARE_END = "<!-- end of bare figures -->"
NAIVE_BEGIN = "<!-- naive figures: written by deploy/bench.sh --naive-alone -->"
NAIVE_END = "<!-- end of naive figures -->"


def write_between_marks(path: Path, figures: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces the figures in ``path`` between ``begin`` and ``end``, keeping what is written
    around them."""
    text = path.read_text() if path.exists() else ""
    if begin not in text or end not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{figures}{end}{tail}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default="postgresql,sqlite",
        help="FerretDB backends to compare (on a small backlog); the rest runs on the first",
    )
    parser.add_argument(
        "--compare",
        default="200x5",
        help="the small backlog of the backend comparison: COMPANIESxMONTHS (interleaved)",
    )
    parser.add_argument("--demo", default="1000,10000")
    parser.add_argument("--ingest-companies", type=int, default=1000)
    parser.add_argument("--ingest-months", type=int, default=10)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--sweep-alone",
        type=int,
        metavar="COMPANIES",
        help="only the time sweep over this many companies' bookkeeping tabs",
    )
    parser.add_argument(
        "--scale-out",
        default="2000x10",
        metavar="COMPANIESxMONTHS",
        help="the backlog of the 1/2/4-replica comparison (run alone with --scale-out-alone)",
    )
    parser.add_argument(
        "--scale-out-alone", action="store_true", help="only the 1/2/4-replica comparison"
    )
    parser.add_argument(
        "--outbound-alone",
        type=int,
        metavar="ROUNDS",
        help="only ours against ours without outbound events, ROUNDS pairs per backlog order",
    )
    parser.add_argument(
        "--outbound-parts",
        type=int,
        metavar="ROUNDS",
        help="only ours taking the outbound events' steps one at a time, ROUNDS runs of each",
    )
    parser.add_argument(
        "--bare-alone",
        type=int,
        metavar="ROUNDS",
        help="only ours against bare aio-pika, ROUNDS pairs per backlog order",
    )
    parser.add_argument(
        "--naive-alone",
        type=int,
        metavar="ROUNDS",
        help="only ours against the naive consumer, ROUNDS pairs per backlog order",
    )
    parser.add_argument(
        "--aging-alone",
        action="store_true",
        help="only the cost per message and per document of a tab as its company ages",
    )
    parser.add_argument(
        "--publish-alone",
        action="store_true",
        help="only the relay's batched publish beside aiormq's basic_publish (prints figures)",
    )
    args = parser.parse_args()
    command = "deploy/bench.sh " + " ".join(sys.argv[1:])
    if args.publish_alone:
        await publish_cost()
        return
    if args.aging_alone:
        use_backend("postgresql")
        text = await aged(command.strip())
        write_between_marks(Path(args.output), text, AGING_BEGIN, AGING_END)
        return
    if args.outbound_parts:
        use_backend("postgresql")
        n, months = args.ingest_companies, args.ingest_months
        parts = await in_turn(n, months, args.outbound_parts, PARTS)
        text = parts_markdown(parts, n * months, command.strip())
        write_between_marks(Path(args.output), text, PARTS_BEGIN, PARTS_END)
        return
    paired = {
        SILENT: (args.outbound_alone, OUTBOUND_BEGIN, OUTBOUND_END),
        BARE_NAME: (args.bare_alone, BARE_BEGIN, BARE_END),
        NAIVE_NAME: (args.naive_alone, NAIVE_BEGIN, NAIVE_END),
    }
    for other, (rounds, begin, end) in paired.items():
        if rounds:
            use_backend("postgresql")
            n, months = args.ingest_companies, args.ingest_months
            rows = await in_pairs(n, months, rounds, other)
            text = pairs_markdown(rows, n * months, command.strip(), other)
            write_between_marks(Path(args.output), text, begin, end)
            return

    async def scale() -> None:
        companies, months = (int(n) for n in args.scale_out.split("x"))
        text = scale_markdown(await scale_out(companies, months), command.strip())
        write_between_marks(Path(args.output), text, SCALE_BEGIN, SCALE_END)

    if args.scale_out_alone:
        await scale()
        return
    if args.sweep_alone:
        rows = await sweep_alone(args.sweep_alone)
        text = sweep_markdown(args.sweep_alone, rows, command.strip())
        write_between_marks(Path(args.output), text, SWEEP_BEGIN, SWEEP_END)
        return
    facts = versions()
    ages = [aging(years) for years in AGES]
    for a in ages:
        say(
            f"age {a.years} years: {a.periods} periods ({a.not_packed} not packed),"
            f" {a.stored_bytes} bytes stored,"
            f" {a.rules_ms:.2f} ms rules, {a.with_codec_ms:.2f} ms with codec"
        )
    await stored_costs(ages)
    for a in ages:
        say(f"age {a.years} years on the store: {a.stored}")
    ingests: list[Ingest] = []
    demos: list[Demo] = []
    output = Path(args.output)

    async def write() -> None:  # after every part, so that a later failure loses nothing
        report = markdown(facts, ingests, demos, ages, command.strip())
        await asyncio.to_thread(write_between_marks, output, report)

    backends = [b for b in args.backends.split(",") if b]
    companies, months = (int(n) for n in args.compare.split("x"))
    for backend in backends:  # SQLite reads every document on each write: a small backlog
        use_backend(backend)
        ingests.append(await ingest(backend, "interleaved", companies, months))
        await write()
    if backends:
        use_backend(backends[0])
    main_backend = backends[0] if backends else "postgresql"
    for order in ORDERS:
        ingests.append(await ingest(main_backend, order, args.ingest_companies, args.ingest_months))
        await write()
    await scale()
    sizes = [int(n) for n in args.demo.split(",") if n]
    for n in sizes:
        demos.append(await demo(n, with_api=n == max(sizes), with_sweep=n == max(sizes)))
        await write()
    say(f"wrote {output}")


if __name__ == "__main__":
    asyncio.run(main())
