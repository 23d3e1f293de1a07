"""The API answers a company's entry and the overview from memory for BACKOFFICE_READ_MAX_AGE_MS,
and reads again at once what its own commands changed (services/api/fresh.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumers.directory import CompanyEntry
from services.config import Settings
from services.store.port import plain
from tests import factories as f
from tests.e2e.world import AGENCY, client, world_events
from tests.harness import Servers, eventually, publish, run_system, unsettled


def names(overview: dict[str, Any]) -> list[str]:
    return [item["name"] for item in overview["items"]]


async def test_what_is_held_is_answered_until_a_command_of_this_api_changes_it(
    settings: Settings, mongo: Any, servers: Servers, tmp_path: Path
) -> None:
    companies = mongo[settings.mongo_db]["companies"]

    async def applied(company_id: str, name: str) -> bool:
        """The name is stored, and every queue is empty with nothing unacknowledged: the
        listing, written before the batch is acknowledged, shows it too."""
        found = await companies.find_one({"_id": f"{AGENCY}/{company_id}"})
        entry = plain(found or {}, CompanyEntry)
        stored = (entry.get("facts") or {}).get("details") or {}
        return stored.get("name") == name and not any(
            unsettled(servers, settings.amqp_url).values()
        )

    async with run_system(
        settings,
        tmp_path,
        BACKOFFICE_COMMAND_TIMEOUT_S="5",
        BACKOFFICE_READ_MAX_AGE_MS="600000",  # nothing held grows old during the test
    ) as system:
        await publish(settings.amqp_url, world_events())
        await eventually(lambda: applied("c-4004", "Allt i Trä EF"), what="the world")
        async with client(system, "u-1") as api:
            await api.post("/v1/companies/c-3003/users/me")
            assert (await api.get("/v1/companies/c-3003/bookkeeping")).status_code == 200
            before = (await api.get("/v1/companies")).json()
            assert names(before) == ["Allt i Trä EF", "Bageriet i Byn AB", "Cykelverkstan HB"]

            await publish(
                settings.amqp_url,
                [f.details("2026-02-01T08:00", company_id="c-4004", name="Öns Trä EF")],
            )
            await eventually(lambda: applied("c-4004", "Öns Trä EF"), what="the new name")
            # Applied and listed, but the overview read less than its age ago is answered.
            assert (await api.get("/v1/companies")).json() == before

            # The consultant's own command: the overview and the entry are read again at once.
            added = await api.post("/v1/companies/c-2002/users/me")
            assert added.status_code == 200, added.text
            after = (await api.get("/v1/companies")).json()
            assert names(after) == ["Bageriet i Byn AB", "Cykelverkstan HB", "Öns Trä EF"]
            assert (await api.get("/v1/companies/c-2002/bookkeeping")).status_code == 200
