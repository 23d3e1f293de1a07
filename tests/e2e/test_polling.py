"""A command its owner does not answer in time: 202 with a location, then the outcome there."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from services.config import Settings
from tests.e2e.world import world_events
from tests.harness import JWT_SECRET, RunningSystem, System, eventually, free_port, publish, spawn


@contextlib.asynccontextmanager
async def world_and_api(
    settings: Settings, system: System, tmp_path: Path
) -> AsyncIterator[tuple[RunningSystem, httpx.AsyncClient]]:
    """Every consumer with the world applied, the API in its own process (answering 202 after
    one second), and a client of u-1, who is added to c-2002 and whose bookkeeping is away."""
    await system.start()  # declares every queue, then takes the world
    await publish(settings.amqp_url, world_events())
    key = "a-1001/c-2002"
    await eventually(lambda: system.document("bookkeeping", key), what="the tab")
    await eventually(lambda: system.document("companies", key), what="the directory")
    port = free_port()
    api = spawn(
        settings,
        tmp_path / "api.log",
        "api",
        BACKOFFICE_API_PORT=str(port),
        BACKOFFICE_JWT_SECRET=JWT_SECRET,
        BACKOFFICE_COMMAND_TIMEOUT_S="1",
    )
    try:
        running = RunningSystem(settings, api, f"http://127.0.0.1:{port}", tmp_path / "api.log")
        headers = {"Authorization": f"Bearer {running.token('u-1')}"}
        async with httpx.AsyncClient(base_url=running.base_url, headers=headers) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, what="the API")
            assert (await client.post("/v1/companies/c-2002/users/me")).status_code == 200
            await system.stop("bookkeeping")  # away; its queue keeps what comes
            yield running, client
    finally:
        api.terminate()
        await asyncio.to_thread(api.wait, 30)


async def test_an_unanswered_command_is_polled_to_its_outcome(
    settings: Settings, system: System, tmp_path: Path
) -> None:
    async with world_and_api(settings, system, tmp_path) as (running, client):
        answer = await client.put(
            "/v1/companies/c-2002/bookkeeping/periods/2026-02/status", json={"status": "done"}
        )
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        assert answer.json() == {
            "command_id": location.rsplit("/", 1)[1],
            "status": "pending",
            "reason": None,
            "location": location,
        }
        pending = await client.get(location)
        assert (pending.status_code, pending.json()["status"]) == (202, "pending")
        other = {"Authorization": f"Bearer {running.token('u-9', agency_id='a-9999')}"}
        assert (await client.get(location, headers=other)).status_code == 404

        await system.start("bookkeeping")  # back: it applies the waiting command

        async def applied() -> bool:
            polled = await client.get(location)
            return polled.status_code == 200 and polled.json()["status"] == "applied"

        await eventually(applied, what="the command's outcome")
        tab = (await client.get("/v1/companies/c-2002/bookkeeping")).json()
        row = next(p for p in tab["periods"] if p["period"] == "2026-02")
        assert row["status"] == "done"
    # One format in the process's output: uvicorn's lines too are our JSON lines.
    lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines()]
    assert any(line["event"].startswith("Uvicorn running on") for line in lines)
    # The project installs uvloop, and a process takes it by default (services/eventloop.py).
    assert [line["event_loop"] for line in lines if line["event"] == "starting"] == ["uvloop"]


async def test_a_command_that_ends_in_a_dead_letter_queue_is_polled_to_failed(
    settings: Settings, system: System, tmp_path: Path
) -> None:
    behind = System(settings, wall_clock=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    try:
        async with world_and_api(settings, system, tmp_path) as (_, client):
            answer = await client.put(
                "/v1/companies/c-2002/bookkeeping/periods/2026-02/status", json={"status": "done"}
            )
            assert answer.status_code == 202, answer.text
            location = answer.headers["location"]
            # The owner comes back on a machine whose clock is an hour behind: to it the
            # command lies in the future, and it dead-letters the command.
            await behind.start("bookkeeping")
            polled: dict[str, object] = {}

            async def answered() -> bool:
                answer = await client.get(location)
                polled.update(answer.json())
                return answer.status_code == 200

            await eventually(answered, what="the command's outcome")
            assert polled["status"] == "failed"
            assert "backoffice.bookkeeping.dead (future)" in str(polled["reason"])
    finally:
        await behind.close()
