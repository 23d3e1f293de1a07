"""The system at scale, as a new user meets it: the demo agency of 1,000 companies through the
running system, then the passage of time over all of them, then reads and an action through the
API. Fails if the store stops answering or a queue does not drain; it times nothing (the
benchmark, deploy/bench.sh, does)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
from typing import Any

import aio_pika
import httpx
import pytest

from consumers.registry import CONSUMERS
from services.clock import publish_tick
from services.config import Settings
from services.sweep import NEXT_DUE, SWEEPS
from services.topology import queue_name
from tests.harness import JWT_SECRET, RunningSystem, Servers, eventually, spawn, unsettled

COMPANIES = 1000
DRAIN_TIMEOUT_S = 1200  # a queue that has not drained by then has stalled


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The main job as a user runs it: the default database timeout, not the tests' short one;
    and it takes the test's tick forty days ahead of its clock."""
    return dataclasses.replace(
        settings, mongo_timeout_ms=Settings().mongo_timeout_ms, max_clock_skew_s=50 * 86400
    )


def store_trouble(log: str) -> list[str]:
    """Log lines that say the store stopped answering, or that messages were given up on."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [
        f"{line.get('consumer')}: {line['event']}"
        for line in lines
        if line.get("event") in ("store unavailable; holding messages until it answers",)
        or line.get("reason_code") == "retries_exhausted"
    ]


async def test_the_demo_at_1000_companies_drains_follows_time_and_answers(
    running_system: RunningSystem, servers: Servers, mongo: Any
) -> None:
    system = running_system
    log = system.log.parent / "demo.log"
    port = system.base_url.rsplit(":", 1)[1]
    demo = spawn(
        system.settings,
        log,
        "demo",
        "--companies",
        str(COMPANIES),
        BACKOFFICE_JWT_SECRET=JWT_SECRET,
        BACKOFFICE_API_PORT=port,
    )
    assert await asyncio.to_thread(demo.wait, 600) == 0, log.read_text()[-3000:]
    token = re.search(r"export TOKEN=(\S+)", log.read_text())
    assert token

    queues = [queue_name(name) for name in CONSUMERS]
    quiet = 0

    async def drained() -> bool:
        nonlocal quiet
        assert not store_trouble(system.log.read_text()), store_trouble(system.log.read_text())
        assert system.process.poll() is None, "the main job exited"
        depths = await asyncio.to_thread(unsettled, servers, system.settings.amqp_url)
        quiet = quiet + 1 if all(depths.get(q, 0) == 0 for q in queues) else 0
        await asyncio.sleep(1)
        return quiet >= 3  # empty, with nothing unacked, three times in a row

    await eventually(drained, timeout=DRAIN_TIMEOUT_S, what="every queue to drain")
    database = mongo[system.settings.mongo_db]
    assert await database["bookkeeping"].count_documents({"agency_id": "a-demo"}) == COMPANIES

    # Time: forty days on, every tab has a deadline passed or a month begun.
    tick_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    async with await aio_pika.connect(system.settings.amqp_url) as connection:
        await publish_tick(await connection.channel(), tick_at, system.settings.service_secret, 600)

    async def swept() -> bool:
        marks = {d["_id"]: d[NEXT_DUE] async for d in database[SWEEPS].find({})}
        clocked = ("bookkeeping", "payroll", "vat", "closing")
        return all(name in marks and marks[name] > tick_at for name in clocked)

    await eventually(swept, timeout=DRAIN_TIMEOUT_S, what="the sweep of every tab")
    behind = await database["bookkeeping"].count_documents({"due_at": {"$lte": tick_at}})
    assert behind == 0

    headers = {"Authorization": f"Bearer {token[1]}"}
    async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=60) as api:
        assert (await api.get("/readyz")).status_code == 200
        page = (await api.get("/v1/companies", params={"limit": 50})).json()
        assert len(page["items"]) == 50 and page["next_cursor"]
        assert all(len(item["domains"]) == 4 for item in page["items"])
        late = await api.get(
            "/v1/companies", params={"domain": "bookkeeping", "status": "late", "limit": 10}
        )
        assert late.status_code == 200 and late.json()["items"]
        tab = (await api.get("/v1/companies/c-500/bookkeeping")).json()
        current = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        assert any(row["period"] == current for row in tab["periods"])
        answer = await api.put(
            f"/v1/companies/c-500/bookkeeping/periods/{current}/status",
            json={"status": "in_progress"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "in_progress"
    assert not store_trouble(system.log.read_text())
