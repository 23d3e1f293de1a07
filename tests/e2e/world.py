"""A small agency for end-to-end tests: users, companies and their events."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from contracts.envelope import Message
from tests import factories as f
from tests.harness import RunningSystem, eventually, publish

AGENCY = f.AGENCY
OTHER_AGENCY = "a-9999"


def world_events() -> list[Message]:
    return [
        f.user_changed("u-1", "anna@byran.se", "2026-01-01T08:00", name="Anna Konsult"),
        f.user_changed("u-2", "bo@byran.se", "2026-01-01T08:00", name="Bo Ekonom"),
        f.user_changed("u-3", "gone@byran.se", "2026-01-01T08:00", active=False),
        f.user_changed("u-4", "cia@byran.se", "2026-01-01T08:00", name="Cia Revisor"),
        f.user_changed("u-9", "eve@annan.se", "2026-01-01T08:00", agency_id=OTHER_AGENCY),
        f.details("2026-01-02T08:00"),  # c-2002, Bageriet i Byn AB
        f.details(
            "2026-01-02T08:00",
            company_id="c-3003",
            name="Cykelverkstan HB",
            legal_form="HB",
            org_number="969712-4452",
            vat_frequency="monthly",
        ),
        f.details(
            "2026-01-02T08:00",
            company_id="c-4004",
            name="Allt i Trä EF",
            legal_form="EF",
            org_number="8112189876",
            vat_frequency="yearly",
        ),
        f.submitted("2026-02", "2026-03-04T09:00"),
        f.payroll_completed("2026-02", "2026-02-25T07:30", employees=4),
        f.vat_step("2026-01-01", "2026-03-31", 1, "2026-04-20T09:00"),
    ]


async def build_world(system: RunningSystem) -> None:
    await publish(system.settings.amqp_url, world_events())

    async def settled() -> bool:
        async with client(system, "u-1") as api:
            listing = await api.get("/v1/companies")
            return listing.status_code == 200 and len(listing.json()["items"]) == 3

    await eventually(settled, timeout=30, what="the world to settle")
    await asyncio.sleep(0.5)  # the tab consumers have their own queues


def client(system: RunningSystem, user: str | None = "u-1", **token: Any) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {system.token(user, **token)}"} if user else {}
    return httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=15)
