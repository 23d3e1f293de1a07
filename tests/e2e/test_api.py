"""Through the running system: publish events, read them through the API; act through the API
and see the new state (SPEC §9)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

from consumers.bookkeeping import BookkeepingTab
from consumers.stockholm import today
from services.store.port import plain
from tests import factories as f
from tests.e2e.world import build_world, client
from tests.harness import RunningSystem, Servers, eventually, publish

PROBLEM = "application/problem+json"
INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
LOOKS_LIKE_AN_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T")


def days_to(deadline: str) -> int:
    return (dt.date.fromisoformat(deadline) - today(dt.datetime.now(dt.UTC))).days


def instants_in(value: Any) -> list[str]:
    """Every string in a JSON answer that holds a date and a time."""
    if isinstance(value, str):
        return [value] if LOOKS_LIKE_AN_INSTANT.match(value) else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in instants_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in instants_in(v)]
    return []


async def test_a_consultant_works_through_the_back_office(running_system: RunningSystem) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        overview = (await api.get("/v1/companies")).json()
        assert [i["name"] for i in overview["items"]] == [
            "Allt i Trä EF",
            "Bageriet i Byn AB",
            "Cykelverkstan HB",
        ]
        bageriet = overview["items"][1]
        assert bageriet["org_number"] == "556677-8899"
        assert bageriet["domains"]["bookkeeping"]["counts"]["new"] == 1

        # The tabs are for users added to the company.
        denied = await api.get("/v1/companies/c-2002/bookkeeping")
        assert denied.status_code == 403
        assert denied.headers["content-type"].startswith(PROBLEM)
        added = await api.post("/v1/companies/c-2002/users/me")
        assert added.status_code == 200, added.text
        assert [u["email"] for u in added.json()["users"]] == ["anna@byran.se"]

        tab = (await api.get("/v1/companies/c-2002/bookkeeping")).json()
        february = next(p for p in tab["periods"] if p["period"] == "2026-02")
        assert february["status"] == "new"
        assert february["status_label"] == {"sv": "Ny", "en": "New"}
        assert february["updated_by_company_at"] == "2026-03-04T09:00:00.000Z"

        # Act: start work on February, send January back with a new last day.
        row = await api.put(
            "/v1/companies/c-2002/bookkeeping/periods/2026-02/status",
            json={"status": "in_progress"},
        )
        assert row.status_code == 200, row.text
        assert (row.json()["status"], row.json()["status_set_by"]) == ("in_progress", "u-1")
        far = (dt.date.today() + dt.timedelta(days=40)).isoformat()
        back = await api.put(
            "/v1/companies/c-2002/bookkeeping/periods/2026-01/status",
            json={"status": "waiting", "deadline": far},
        )
        assert (back.json()["status"], back.json()["deadline"]) == ("waiting", far)
        tab = (await api.get("/v1/companies/c-2002/bookkeeping")).json()
        assert tab["header"]["client_todo_count"] >= 1
        # The days left are worked out when a row is read, in Stockholm days (SPEC §5.1).
        january = next(p for p in tab["periods"] if p["period"] == "2026-01")
        assert january["days_left"] == days_to(far)

        # Payroll, VAT and closing read the same way.
        payroll = (await api.get("/v1/companies/c-2002/payroll")).json()
        assert payroll["header"]["employees"] == 4
        vat = (await api.get("/v1/companies/c-2002/vat")).json()
        q1 = next(p for p in vat["periods"] if p["period"] == "2026-Q1")
        assert q1["steps_completed"] == 1
        assert q1["days_left"] == days_to(q1["deadline"])
        closing = (await api.get("/v1/companies/c-2002/closing")).json()
        assert closing["periods"][0]["deadlines"]["income_tax_return"] == "2026-08-03"

        # The engagement (manage_users), then My companies.
        engaged = await api.put(
            "/v1/companies/c-2002/engagement",
            json={"start_month": "2026-01", "responsible_user_id": "u-1"},
        )
        assert engaged.status_code == 200, engaged.text
        assert engaged.json()["engagement"] == {
            "start_month": "2026-01",
            "responsible_user_id": "u-1",
        }
        mine = (await api.get("/v1/me/companies")).json()
        assert [i["company_id"] for i in mine["items"]] == ["c-2002"]

        # Notes: a comment and a to-do that moves on, newest first.
        comment = await api.post(
            "/v1/companies/c-2002/notes",
            json={"kind": "comment", "text": "Kvitton saknas för februari"},
        )
        assert comment.status_code == 201, comment.text
        todo = await api.post(
            "/v1/companies/c-2002/notes",
            json={"kind": "todo", "text": "Ring om momsen", "status": "new"},
        )
        todo_id = todo.json()["note_id"]
        moved = await api.put(
            f"/v1/companies/c-2002/notes/{todo_id}/status", json={"status": "done"}
        )
        assert moved.json()["status"] == "done"
        notes = (await api.get("/v1/companies/c-2002/notes")).json()["items"]
        assert [n["kind"] for n in notes] == ["todo", "comment"]

        # History: the consultant's changes, newest first, paged.
        first = (await api.get("/v1/companies/c-2002/history", params={"limit": 2})).json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        ats = [dt.datetime.fromisoformat(i["at"]) for i in first["items"]]
        assert ats == sorted(ats, reverse=True)  # as instants: text need not sort as they do
        rest = (
            await api.get(
                "/v1/companies/c-2002/history",
                params={"cursor": first["next_cursor"], "limit": 200},
            )
        ).json()
        every = first["items"] + rest["items"]
        # One text form for every instant (RFC 3339, UTC, milliseconds, Z), in every answer.
        answers = [every, notes, (await api.get("/v1/companies/c-2002/bookkeeping")).json()]
        found = instants_in(answers)
        assert found and all(INSTANT.fullmatch(text) for text in found), found
        assert any(i["cause"] == {"kind": "user", "id": "u-1"} for i in every)
        assert len({(i["domain"], i["period"], i["at"], i["to"]) for i in every}) == len(every)
        # The changes of every tab that has some (this company has no payroll or closing yet),
        # in one order: the tabs are read at once, and merged.
        assert {i["domain"] for i in every} == {"bookkeeping", "vat"}


async def test_refusals_are_clear_and_change_nothing(running_system: RunningSystem) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-2002/users/me")
        before = (await api.get("/v1/companies/c-2002/bookkeeping")).json()
        cases = [
            (
                "put",
                "/v1/companies/c-2002/bookkeeping/periods/2026-02/status",
                {"status": "sent"},
                400,
            ),
            (
                "put",
                "/v1/companies/c-2002/bookkeeping/periods/2026-02/status",
                {"status": "bogus"},
                400,
            ),
            (
                "put",
                "/v1/companies/c-2002/bookkeeping/periods/2026-02/status",
                {"status": "done", "deadline": "2026-05-01"},
                400,
            ),
            (
                "put",
                "/v1/companies/c-2002/bookkeeping/periods/2024-01/status",
                {"status": "done"},
                422,
            ),  # outside tracking: the consumer refuses
            (
                "put",
                "/v1/companies/c-2002/bookkeeping/periods/2026-13/status",
                {"status": "done"},
                400,
            ),
            ("post", "/v1/companies/c-2002/users", {"email": "nobody@byran.se"}, 422),
            ("post", "/v1/companies/c-2002/users", {"email": "gone@byran.se"}, 422),
            ("post", "/v1/companies/c-2002/users", {"email": "eve@annan.se"}, 422),
            (
                "put",
                "/v1/companies/c-2002/engagement",
                {"start_month": "2026-01", "responsible_user_id": "u-3"},
                422,
            ),
            ("post", "/v1/companies/c-2002/notes", {"kind": "todo", "text": "x"}, 400),
            ("put", "/v1/companies/c-2002/notes/nope/status", {"status": "done"}, 404),
        ]
        for method, path, body, status in cases:
            answer = await api.request(method.upper(), path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
            assert answer.headers["content-type"].startswith(PROBLEM)
            problem = answer.json()
            assert problem["status"] == status and problem["detail"]
        after = (await api.get("/v1/companies/c-2002/bookkeeping")).json()
        assert after == before
        company = (await api.get("/v1/companies/c-2002")).json()
        assert [u["user_id"] for u in company["users"]] == ["u-1"]
        assert company["engagement"]["responsible_user_id"] is None


async def test_no_input_reaches_the_database_as_an_operator(
    running_system: RunningSystem,
) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-2002/users/me")
        for params in [
            {"q": '{"$ne": null}'},
            {"q": ".*"},
            {"q": "$where"},
            {"responsible": '{"$ne": null}'},
            {"cursor": "eyIkbmUiOiBudWxsfQ"},
            {"domain": "bookkeeping", "status": '{"$gt": ""}'},
            {"domain": "$where", "status": "late"},
        ]:
            answer = await api.get("/v1/companies", params=params)
            assert answer.status_code in (200, 400), (params, answer.text)
            if answer.status_code == 200:
                assert answer.json()["items"] == [], params
        for body in [
            {"status": {"$gt": ""}},
            {"status": "done", "$set": {"x": 1}},
            {"email": {"$regex": ".*"}},
        ]:
            answer = await api.put(
                "/v1/companies/c-2002/bookkeeping/periods/2026-02/status", json=body
            )
            assert answer.status_code == 400, (body, answer.text)
        assert (await api.get("/v1/companies/%24where")).status_code in (400, 404)
        found = await api.get("/v1/companies", params={"q": "bageriet"})
        assert [i["company_id"] for i in found.json()["items"]] == ["c-2002"]
        by_number = await api.get("/v1/companies", params={"q": "556677"})
        assert [i["company_id"] for i in by_number.json()["items"]] == ["c-2002"]


async def test_overview_filters_and_paging(running_system: RunningSystem) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        pages, cursor = [], None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/companies", params=params)).json()
            pages += [i["company_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == ["c-4004", "c-2002", "c-3003"]
        new = await api.get("/v1/companies", params={"domain": "bookkeeping", "status": "new"})
        assert [i["company_id"] for i in new.json()["items"]] == ["c-2002"]
        half = await api.get("/v1/companies", params={"domain": "bookkeeping"})
        assert half.status_code == 400
        # A status shown by several companies, paged one at a time: the companies that show
        # it, in the overview's order.
        everyone = (await api.get("/v1/companies")).json()["items"]
        shown: dict[str, list[str]] = {}
        for item in everyone:
            for shown_status in item["domains"]["bookkeeping"]["counts"]:
                shown.setdefault(shown_status, []).append(item["company_id"])
        common = next(s for s, ids in sorted(shown.items()) if len(ids) >= 2)
        filtered, cursor = [], None
        while True:
            params = {"domain": "bookkeeping", "status": common, "limit": 1}
            page = (
                await api.get(
                    "/v1/companies", params={**params, "cursor": cursor} if cursor else params
                )
            ).json()
            filtered += [i["company_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert filtered == shown[common]
        await publish(running_system.settings.amqp_url, [f.disconnected("2026-06-01T00:00")])

        async def hidden() -> bool:
            items = (await api.get("/v1/companies")).json()["items"]
            return [i["company_id"] for i in items] == ["c-4004", "c-3003"]

        await eventually(hidden, what="a disconnected company to leave the overview")
        assert (await api.get("/v1/companies/c-2002")).json()["connected"] is False


async def test_operations_endpoints(running_system: RunningSystem) -> None:
    await build_world(running_system)
    async with client(running_system, None) as api:
        assert (await api.get("/healthz")).json() == {"status": "ok"}
        assert (await api.get("/readyz")).status_code == 200
        document = (await api.get("/openapi.json")).json()
        assert "/v1/companies/{company_id}/bookkeeping" in document["paths"]
        metrics = (await api.get("/metrics")).text
        assert 'backoffice_messages_total{consumer="directory",outcome="applied"}' in metrics
        assert 'outcome="_v"' not in metrics  # the counters' version is no outcome
        assert 'backoffice_queue_messages{queue="backoffice.bookkeeping.dead"}' in metrics
        assert "backoffice_http_requests_total" in metrics


async def test_readiness_says_within_seconds_that_the_store_is_gone(
    running_system: RunningSystem, servers: Servers
) -> None:
    async with client(running_system, None) as api:
        assert (await api.get("/readyz")).status_code == 200
        servers.stop_database()
        try:
            started = asyncio.get_running_loop().time()
            answer = await api.get("/readyz", timeout=30)
            assert answer.status_code == 503
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert asyncio.get_running_loop().time() - started < 5
        finally:
            servers.start_database()
        await eventually(lambda: _ready(api), timeout=60, what="readiness once the store is back")


async def _ready(api: Any) -> bool:
    return bool((await api.get("/readyz")).status_code == 200)


async def test_a_company_with_years_behind_it_shows_them_all(
    running_system: RunningSystem, mongo: Any
) -> None:
    """Settled years are packed in the tab's document (consumers/archive.py); the tab, its
    history, the overview's counts and a consultant's action on an old period show them as
    if nothing were packed."""
    company = "c-7007"
    months = [f"{y}-{m:02d}" for y in (2023, 2024, 2025) for m in range(1, 13)]
    events = [
        f.user_changed("u-1", "anna@byran.se", "2023-01-01T08:00", name="Anna Konsult"),
        f.details(
            "2023-01-02T08:00",
            company_id=company,
            name="Gamla Bolaget AB",
            fiscal_year_start="2023-01-01",
            fiscal_year_end="2023-12-31",
        ),
        *[f.submitted(m, f"{m}-27T09:00", company_id=company) for m in months],
        # Something today, so the tab is worked out now (else the clock's next sweep does).
        f.uploaded(dt.datetime.now(dt.UTC).isoformat(), company_id=company),
    ]
    await publish(running_system.settings.amqp_url, events)
    tabs = mongo[running_system.settings.mongo_db]["bookkeeping"]
    key = f"{f.AGENCY}/{company}"

    async def packed() -> bool:
        stored = await tabs.find_one({"_id": key})
        return stored is not None and "2025" in plain(stored, BookkeepingTab)["archive"]

    await eventually(packed, timeout=60, what="the settled years to be packed")
    stored = await tabs.find_one({"_id": key})
    assert stored is not None
    archive = plain(stored, BookkeepingTab)["archive"]
    assert list(archive) == ["2023", "2024", "2025"]
    # The tab's own document names each packed year; its bytes live in a document of their own.
    year = archive["2024"]
    assert set(year) == {"counts", "digest"} and year["counts"] == {"new": 12}
    part = await mongo[running_system.settings.mongo_db]["bookkeeping_packed"].find_one(
        {"_id": f"{key}/2024/{year['digest']}"}
    )
    assert part is not None and isinstance(part["packed"], bytes)
    rows = plain(stored, BookkeepingTab)["periods"]
    assert rows and all(row["period"] >= "2026" for row in rows)

    async with client(running_system, "u-1") as api:
        assert (await api.post(f"/v1/companies/{company}/users/me")).status_code == 200
        tab = (await api.get(f"/v1/companies/{company}/bookkeeping")).json()
        shown = [row["period"] for row in tab["periods"]]
        this_month = today(dt.datetime.now(dt.UTC)).isoformat()[:7]
        assert shown[:36] == months and shown[-1] == this_month
        assert shown == sorted(shown)
        may = tab["periods"][16]
        assert (may["period"], may["status"]) == ("2024-05", "new")
        assert may["days_left"] == days_to(may["deadline"])
        history = (
            await api.get(
                f"/v1/companies/{company}/history",
                params={"domain": "bookkeeping", "limit": 200},
            )
        ).json()["items"]
        assert {i["period"] for i in history if i["to"] == "new"} == set(months)

        # A consultant's action on a packed period: the row answered, the tab, the overview.
        done = await api.put(
            f"/v1/companies/{company}/bookkeeping/periods/2024-05/status",
            json={"status": "done"},
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "done"
        tab = (await api.get(f"/v1/companies/{company}/bookkeeping")).json()
        assert tab["periods"][16]["status"] == "done"
        overview = (await api.get("/v1/companies", params={"q": "Gamla"})).json()["items"]
        counts = overview[0]["domains"]["bookkeeping"]["counts"]
        assert (counts["new"], counts["done"]) == (35, 1)
