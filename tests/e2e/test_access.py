"""SPEC §9 access rules, route by route: every route by (no token, bad signature, expired,
other agency, not added, added, with manage_users)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.world import OTHER_AGENCY, build_world
from tests.harness import RunningSystem

# (method, path, body, needs membership, needs manage_users, success status)
ROUTES: list[tuple[str, str, dict[str, Any] | None, bool, bool, int]] = [
    ("GET", "/v1/companies/c-2002", None, False, False, 200),
    ("GET", "/v1/companies/c-2002/bookkeeping", None, True, False, 200),
    ("GET", "/v1/companies/c-2002/payroll", None, True, False, 200),
    ("GET", "/v1/companies/c-2002/vat", None, True, False, 200),
    ("GET", "/v1/companies/c-2002/closing", None, True, False, 200),
    ("GET", "/v1/companies/c-2002/notes", None, True, False, 200),
    ("GET", "/v1/companies/c-2002/history", None, True, False, 200),
    (
        "PUT",
        "/v1/companies/c-2002/bookkeeping/periods/2026-02/status",
        {"status": "done"},
        True,
        False,
        200,
    ),
    (
        "PUT",
        "/v1/companies/c-2002/payroll/periods/2026-02/status",
        {"status": "done"},
        True,
        False,
        200,
    ),
    (
        "PUT",
        "/v1/companies/c-2002/engagement",
        {"start_month": "2026-01", "responsible_user_id": "u-1"},
        False,
        True,
        200,
    ),
    ("POST", "/v1/companies/c-2002/notes", {"kind": "comment", "text": "Hej"}, True, False, 201),
    ("PUT", "/v1/companies/c-2002/notes/{note}/status", {"status": "done"}, True, False, 200),
    # Last: a caller not added before is added by these.
    ("POST", "/v1/companies/c-2002/users", {"email": "bo@byran.se"}, False, False, 200),
    ("POST", "/v1/companies/c-2002/users/me", None, False, False, 200),
]
LISTINGS = ["/v1/companies", "/v1/me/companies"]


async def call(
    system: RunningSystem, method: str, path: str, body: Any, token: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=system.base_url, timeout=15) as api:
        return await api.request(method, path, json=body, headers=headers)


async def test_every_route_by_every_kind_of_caller(running_system: RunningSystem) -> None:
    system = running_system
    await build_world(system)
    member = system.token("u-2", permissions=[])  # added below; no manage_users
    manager = system.token("u-1")  # manage_users; added below
    outsider = system.token("u-1", permissions=[])  # same user, without manage_users
    stranger = system.token("u-9", agency_id=OTHER_AGENCY)
    not_added = system.token("u-4", permissions=["manage_users"])

    # u-2 and u-1 join; a to-do exists for the note route.
    assert (
        await call(system, "POST", "/v1/companies/c-2002/users", {"email": "bo@byran.se"}, manager)
    ).status_code == 200
    assert (
        await call(system, "POST", "/v1/companies/c-2002/users/me", None, manager)
    ).status_code == 200
    todo = await call(
        system,
        "POST",
        "/v1/companies/c-2002/notes",
        {"kind": "todo", "text": "Bokslut", "status": "new"},
        member,
    )
    note = todo.json()["note_id"]

    bad_tokens = {
        "no token": None,
        "bad signature": system.token("u-1", secret="another-secret-0123456789abcdef0123"),
        "expired": system.token("u-1", expires_in=-60),
        "not a JWT": "not.a.jwt",
    }
    for method, template, body, membership, manage, ok in ROUTES:
        path = template.format(note=note)
        for case, token in bad_tokens.items():
            answer = await call(system, method, path, body, token)
            assert answer.status_code == 401, (case, method, path, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
        other = await call(system, method, path, body, stranger)
        assert other.status_code == 404, ("other agency", method, path, other.text)
        outside = await call(system, method, path, body, not_added)
        expected = 403 if membership else ok
        assert outside.status_code == expected, ("not added", method, path, outside.text)
        added = await call(system, method, path, body, member)
        assert added.status_code == (403 if manage else ok), ("added", method, path, added.text)
        managing = await call(system, method, path, body, manager)
        assert managing.status_code == ok, ("manage_users", method, path, managing.text)
        if manage:
            assert (await call(system, method, path, body, outsider)).status_code == 403

    for path in LISTINGS:
        for case, token in bad_tokens.items():
            assert (await call(system, "GET", path, None, token)).status_code == 401, case
        theirs = await call(system, "GET", path, None, stranger)
        assert theirs.status_code == 200 and theirs.json()["items"] == [], path
        ours = await call(system, "GET", path, None, member)
        assert ours.status_code == 200, path
