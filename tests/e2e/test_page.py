"""The Back-office page in a real browser: Debian's chromium driven by Playwright, against the
running system. Screenshots go to tests/.screenshots/ (git-ignored) for review."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from contracts.registry import encode
from services.topology import dead_queue_name
from tests import factories as f
from tests.e2e.world import OTHER_AGENCY, build_world, client
from tests.harness import ROOT, RunningSystem, eventually, publish

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "tests" / ".screenshots"
# Chromium on a machine with a closed network: no background fetches, no sandbox as root.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


async def signed_in(browser: Browser, system: RunningSystem, user: str, **token: Any) -> Page:
    page = await browser.new_page(viewport={"width": 1366, "height": 800})
    await page.goto(f"{system.base_url}/#token={system.token(user, **token)}")
    await expect(page.locator("#nav a").first).to_be_visible()  # signed in
    return page


async def at_cykelverkstan(system: RunningSystem, browser: Browser, tab: str) -> Page:
    """The world, and u-1 added to c-3003 and looking at one of its tabs."""
    await build_world(system)
    async with client(system, "u-1") as api:
        await api.post("/v1/companies/c-3003/users/me")
    page = await signed_in(browser, system, "u-1")
    await page.goto(f"{system.base_url}/#/company/c-3003/{tab}")
    return page


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_sign_in_filter_open_a_company_and_set_a_status(
    running_system: RunningSystem, browser: Browser
) -> None:
    await build_world(running_system)
    page = await signed_in(browser, running_system, "u-1")
    overview = page.locator("#overview")
    await expect(overview.locator("tbody tr")).to_have_count(3)
    await expect(page.locator("html")).to_have_attribute("lang", "sv")
    await shot(page, "overview")

    # Filter: bookkeeping periods that are new (c-2002 submitted February).
    await page.get_by_label("Område").select_option("bookkeeping")
    await page.get_by_label("Status").select_option("new")
    await page.get_by_role("button", name="Filtrera").click()
    await expect(overview.locator("tbody tr")).to_have_count(1)
    await expect(overview.locator("tbody tr")).to_have_attribute("data-company", "c-2002")
    await page.get_by_label("Sök namn eller org.nr").fill("Cykel")
    await page.get_by_label("Område").select_option("")
    await page.get_by_label("Status").select_option("")
    await page.get_by_role("button", name="Filtrera").click()
    await expect(overview.locator("tbody tr")).to_have_attribute("data-company", "c-3003")

    # A company: not added yet, so the tab is refused; "Add me", and it shows.
    await page.goto(f"{running_system.base_url}/#/company/c-2002/bookkeeping")
    await expect(page.get_by_role("alert")).to_contain_text("inte tillagd")
    await page.get_by_role("button", name="Lägg till mig").click()
    row = page.locator('#bookkeeping-rows tr[data-period="2026-02"]')
    await expect(row.locator("[data-status]")).to_have_attribute("data-status", "new")

    # Set a status with the keyboard's form controls, and see it.
    await row.get_by_label("Status 2026-02").select_option("done")
    await row.get_by_role("button", name="Sätt").click()
    await expect(row.locator("[data-status]")).to_have_attribute("data-status", "done")
    await shot(page, "company-bookkeeping")

    # Send a period back with a new deadline: waiting, by the consultant.
    january = page.locator('#bookkeeping-rows tr[data-period="2026-01"]')
    await january.get_by_label("Ny deadline 2026-01").fill("2026-12-20")
    await january.get_by_role("button", name="Skicka tillbaka").click()
    await expect(january.locator("td").nth(2)).to_have_text("2026-12-20")

    # Notes and history.
    await page.get_by_role("link", name="Anteckningar").click()
    await page.get_by_label("Text").fill("Ring kunden om kvitton")
    await page.locator("#tab").get_by_role("button", name="Lägg till").click()
    await expect(page.locator("#notes li")).to_contain_text("Ring kunden om kvitton")
    await page.get_by_role("link", name="Historik").click()
    await expect(page.locator("#history tbody tr").first).to_contain_text("u-1")

    # English on request.
    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("link", name="History")).to_be_visible()


async def test_a_row_changes_live_when_upstream_publishes(
    running_system: RunningSystem, browser: Browser
) -> None:
    page = await at_cykelverkstan(running_system, browser, "bookkeeping")
    row = page.locator('#bookkeeping-rows tr[data-period="2026-01"]')
    await expect(row.locator("[data-status]")).not_to_have_attribute("data-status", "new")
    await expect(page.locator("#live-state")).to_contain_text("Live")
    await page.evaluate("window.notReloaded = true")
    await publish(
        running_system.settings.amqp_url,
        [f.submitted("2026-01", "2026-01-28T09:00", company_id="c-3003")],
    )
    await expect(row.locator("[data-status]")).to_have_attribute("data-status", "new")
    assert await page.evaluate("window.notReloaded === true")  # no reload: it came live
    await shot(page, "live")


async def test_a_late_overview_answer_does_not_replace_the_company_opened_since(
    running_system: RunningSystem, browser: Browser
) -> None:
    """A slow overview must not paint over the view the user moved on to: hold its answer back
    until the company is on screen, then let it through."""
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-2002/users/me")
    page = await browser.new_page(viewport={"width": 1366, "height": 800})
    release = asyncio.Event()

    async def held(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route(lambda url: urlsplit(url).path == "/v1/companies", held)
    await page.goto(f"{running_system.base_url}/#token={running_system.token('u-1')}")
    await expect(page.locator("#nav a").first).to_be_visible()
    await page.goto(f"{running_system.base_url}/#/company/c-2002/bookkeeping")
    await expect(page.locator("#bookkeeping-rows tr").first).to_be_visible()

    async with page.expect_request_finished(lambda r: urlsplit(r.url).path == "/v1/companies"):
        release.set()
    await page.evaluate("() => new Promise((done) => setTimeout(done, 300))")
    await expect(page.locator("#overview")).to_have_count(0)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Bageriet i Byn AB")


async def test_commands_answered_202_are_followed_to_their_outcome(
    answering_later_system: RunningSystem, browser: Browser
) -> None:
    """Here the API answers every command 202 at once: the page asks where it was told to until
    the command is applied, and only then draws the view again."""
    system = answering_later_system
    await build_world(system)
    page = await signed_in(browser, system, "u-1")
    await page.goto(f"{system.base_url}/#/company/c-2002/bookkeeping")
    await expect(page.get_by_role("alert")).to_contain_text("inte tillagd")
    followed = lambda r: urlsplit(r.url).path.startswith("/v1/commands/")  # noqa: E731
    async with page.expect_request(followed):
        await page.get_by_role("button", name="Lägg till mig").click()
    row = page.locator('#bookkeeping-rows tr[data-period="2026-02"]')
    await expect(row.locator("[data-status]")).to_have_attribute("data-status", "new")

    await page.get_by_role("link", name="Anteckningar").click()
    await page.get_by_label("Text").fill("Följd till slutet")
    async with page.expect_request(followed):
        await page.locator("#tab").get_by_role("button", name="Lägg till").click()
    await expect(page.locator("#notes li")).to_contain_text("Följd till slutet")


async def test_a_live_change_waits_while_the_user_is_typing(
    running_system: RunningSystem, browser: Browser
) -> None:
    page = await at_cykelverkstan(running_system, browser, "notes")
    await expect(page.locator("#live-state")).to_contain_text("Live")
    text = page.get_by_label("Text")
    await text.fill("Halvskrivet")

    await publish(
        running_system.settings.amqp_url,
        [f.submitted("2026-01", "2026-01-28T09:00", company_id="c-3003")],
    )

    async def changed() -> bool:
        async with client(running_system, "u-1") as api:
            tab = (await api.get("/v1/companies/c-3003/bookkeeping")).json()
            return any(p["status"] == "new" for p in tab["periods"] if p["period"] == "2026-01")

    await eventually(changed, timeout=30, what="the submission to be applied")
    await page.evaluate("() => new Promise((done) => setTimeout(done, 1500))")  # past the redraw
    await expect(text).to_have_value("Halvskrivet")
    await expect(page.locator("#announce")).not_to_have_text("Uppdaterat")

    await text.fill("")
    await page.get_by_role("heading", level=1).click()  # the field loses the focus
    await expect(page.locator("#announce")).to_have_text("Uppdaterat")


async def test_a_live_redraw_that_loaded_while_the_user_began_typing_waits(
    running_system: RunningSystem, browser: Browser
) -> None:
    """The redraw starts while no field is edited; its answer is held back until the user has
    begun typing, and then must not land."""
    page = await at_cykelverkstan(running_system, browser, "notes")
    await expect(page.locator("#live-state")).to_contain_text("Live")
    text = page.get_by_label("Text")
    await expect(text).to_be_visible()
    asked, release = asyncio.Event(), asyncio.Event()

    async def held(route: Route) -> None:
        asked.set()
        await release.wait()
        await route.continue_()

    await page.route(lambda url: urlsplit(url).path == "/v1/companies/c-3003", held)
    await publish(
        running_system.settings.amqp_url,
        [f.submitted("2026-01", "2026-01-28T09:00", company_id="c-3003")],
    )
    await asyncio.wait_for(asked.wait(), 30)  # the live redraw is loading
    await text.fill("Halvskrivet")
    async with page.expect_request_finished(
        lambda r: urlsplit(r.url).path == "/v1/companies/c-3003"
    ):
        release.set()
    await page.evaluate("() => new Promise((done) => setTimeout(done, 300))")
    await expect(text).to_have_value("Halvskrivet")


async def test_another_agencys_company_and_a_company_not_added_are_refused(
    running_system: RunningSystem, browser: Browser
) -> None:
    await build_world(running_system)
    outsider = await signed_in(browser, running_system, "u-9", agency_id=OTHER_AGENCY)
    await outsider.goto(f"{running_system.base_url}/#/company/c-2002/bookkeeping")
    await expect(outsider.get_by_role("alert")).to_contain_text("Finns inte")
    await expect(outsider.locator("#overview, #bookkeeping-rows")).to_have_count(0)

    stranger = await signed_in(browser, running_system, "u-2")
    await stranger.goto(f"{running_system.base_url}/#/company/c-2002/payroll")
    await expect(stranger.get_by_role("alert")).to_contain_text("inte tillagd")
    await expect(stranger.locator("#payroll-rows")).to_have_count(0)
    await shot(stranger, "refused")
    # The routes behind the page refuse the same way.
    async with client(running_system, "u-2") as api:
        assert (await api.get("/v1/operations/queues")).status_code == 403
        assert (await api.post("/v1/operations/queues/bookkeeping/replay")).status_code == 403
    async with client(running_system, None) as anonymous:
        stream = await anonymous.get("/v1/events/stream", params={"access_token": "forged"})
        assert stream.status_code == 401
        assert stream.headers["content-type"].startswith("application/problem+json")


async def test_an_operator_sees_dead_letters_and_replays_them(
    running_system: RunningSystem, browser: Browser
) -> None:
    await build_world(running_system)
    # A valid submission that ended in the dead-letter queue (a bug since fixed, say).
    fixed = f.submitted("2026-01", "2026-02-03T09:00", company_id="c-4004")
    async with await aio_pika.connect(running_system.settings.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                encode(fixed),
                message_id=fixed.id,
                headers={"x-reason-code": "retries_exhausted", "x-reason": "a bug, since fixed"},
            ),
            routing_key=dead_queue_name("bookkeeping"),
        )
    consultant = await signed_in(browser, running_system, "u-1")
    await expect(consultant.get_by_role("link", name="Drift")).to_have_count(0)

    page = await signed_in(browser, running_system, "u-ops", permissions=["operate"])
    await page.get_by_role("link", name="Drift").click()
    row = page.locator('#queues tr[data-consumer="bookkeeping"]')
    await expect(row.locator("[data-dead]")).to_have_attribute("data-dead", "1")
    await expect(row).to_contain_text("retries_exhausted: 1")
    await shot(page, "operations")
    await row.get_by_role("button", name="Spela upp igen (1)").click()
    await expect(row.locator("[data-dead]")).to_have_attribute("data-dead", "0")
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-4004/users/me")
        tab = (await api.get("/v1/companies/c-4004/bookkeeping")).json()
    january = next(p for p in tab["periods"] if p["period"] == "2026-01")
    assert january["status"] == "new"  # the replayed submission was applied
