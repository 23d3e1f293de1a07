"""The demo command fills a running system with a living agency and prints a working token."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.harness import JWT_SECRET, RunningSystem, eventually, spawn


async def test_the_demo_agency_is_alive_with_its_token(running_system: RunningSystem) -> None:
    log = running_system.log.parent / "demo.log"
    demo = spawn(
        running_system.settings,
        log,
        "demo",
        "--companies",
        "8",
        BACKOFFICE_JWT_SECRET=JWT_SECRET,
        BACKOFFICE_API_PORT=running_system.base_url.rsplit(":", 1)[1],
    )
    assert await asyncio.to_thread(demo.wait, 120) == 0, log.read_text()[-3000:]
    printed = log.read_text()
    token = re.search(r"export TOKEN=(\S+)", printed)
    assert token, printed
    assert running_system.base_url in printed
    # The sign-in links of the page: the same token for Anna, and an operator's.
    links = re.findall(rf"{re.escape(running_system.base_url)}/#token=(\S+)", printed)
    assert len(links) == 2 and links[0] == token[1], printed
    async with httpx.AsyncClient(base_url=running_system.base_url) as anonymous:
        page = await anonymous.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        operator = {"Authorization": f"Bearer {links[1]}"}
        assert (await anonymous.get("/v1/operations/queues", headers=operator)).status_code == 200
    headers = {"Authorization": f"Bearer {token[1]}"}
    async with httpx.AsyncClient(base_url=running_system.base_url, headers=headers) as api:

        async def all_tabs_filled() -> bool:
            items = (await api.get("/v1/companies", params={"limit": 50})).json()["items"]
            return len(items) == 8 and all(len(i["domains"]) == 4 for i in items)

        await eventually(all_tabs_filled, timeout=60, what="the demo companies")
        items = (await api.get("/v1/companies", params={"limit": 50})).json()["items"]
        statuses = {s for i in items for d in i["domains"].values() for s in d["counts"]}
        assert {"late", "new", "done"} <= statuses, statuses
        # The consultants' actions follow the events: wait for the directory to apply them.
        tab_path = f"/v1/companies/{items[0]['company_id']}/bookkeeping"

        async def added_and_responsible() -> bool:
            mine = (await api.get("/v1/me/companies")).json()["items"]
            return bool(mine) and (await api.get(tab_path)).status_code == 200

        await eventually(
            added_and_responsible, timeout=60, what="the demo user to be added and responsible"
        )
