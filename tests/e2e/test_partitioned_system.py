"""The main job with every consumer kind in partitions (BACKOFFICE_PARTITIONS=3), through the
HTTP API: events and commands pass the routers, a command is answered by the partition that
applied it, a bad event is still dead-lettered with its reason, and the counters add up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.config import Settings
from tests.e2e.world import build_world, client
from tests.harness import RunningSystem, eventually, publish, run_system


@pytest.fixture
async def partitioned_system(
    settings: Settings, mongo: Any, tmp_path: Path
) -> AsyncIterator[RunningSystem]:
    async with run_system(
        settings, tmp_path, BACKOFFICE_PARTITIONS="3", BACKOFFICE_COMMAND_TIMEOUT_S="10"
    ) as system:
        yield system


async def test_events_and_commands_pass_the_routers_to_one_writer_each(
    partitioned_system: RunningSystem,
) -> None:
    system = partitioned_system
    await build_world(system)
    async with client(system, "u-1") as api:
        assert (await api.post("/v1/companies/c-2002/users/me")).status_code == 200
        tab = (await api.get("/v1/companies/c-2002/bookkeeping")).json()
        february = next(p for p in tab["periods"] if p["period"] == "2026-02")
        assert february["status"] == "new"  # the submission, routed to its partition

        row = await api.put(
            "/v1/companies/c-2002/bookkeeping/periods/2026-02/status", json={"status": "done"}
        )
        assert row.status_code == 200, row.text  # answered, not 202: the reply came back
        assert (row.json()["status"], row.json()["status_set_by"]) == ("done", "u-1")

    await publish(system.settings.amqp_url, [("bookkeeping.period_submitted", b"{not json")])
    operator = client(system, "u-1", permissions=["operate"])
    async with operator as api:

        async def dead_lettered() -> bool:
            queues = (await api.get("/v1/operations/queues")).json()["items"]
            found = next(q for q in queues if q["consumer"] == "bookkeeping")
            return found["dead_by_reason"] == {"not_json": 1}

        await eventually(dead_lettered, what="the bad event in the dead-letter queue")
        metrics = (await api.get("/metrics")).text
    applied = [
        line
        for line in metrics.splitlines()
        if line.startswith('backoffice_messages_total{consumer="bookkeeping",outcome="applied"}')
    ]
    assert len(applied) == 1 and int(applied[0].split()[-1]) >= 3  # partitions added up
