"""Bad input at the HTTP edge: any cursor, any body, and an oversized body each get a 4xx
problem, never a 500 (the running API, driven by hypothesis)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.world import build_world, client
from tests.harness import RunningSystem

PROBLEM = "application/problem+json"

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=12,
)


def as_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


CURSORS = st.one_of(
    st.text(max_size=80),
    JSON.map(as_cursor),
    st.lists(st.none() | st.text(max_size=10) | st.integers(), min_size=2, max_size=4).map(
        as_cursor
    ),
    st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode()),
)
BODIES = st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200))
WRITES = [
    ("PUT", "/v1/companies/c-2002/bookkeeping/periods/2026-02/status"),
    ("PUT", "/v1/companies/c-2002/payroll/periods/2026-02/status"),
    ("POST", "/v1/companies/c-2002/notes"),
    ("POST", "/v1/companies/c-2002/users"),
    ("PUT", "/v1/companies/c-2002/engagement"),
]


def refused_or_answered(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith(PROBLEM), answer.headers


async def test_any_cursor_and_any_body_gets_an_answer_not_a_server_error(
    running_system: RunningSystem,
) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-2002/users/me")
    headers = {
        "Authorization": f"Bearer {running_system.token('u-1', permissions=['manage_users'])}"
    }

    def fuzz() -> None:
        with httpx.Client(base_url=running_system.base_url, headers=headers, timeout=30) as http:
            for path in ("/v1/companies/c-2002/history", "/v1/companies", "/v1/me/companies"):
                answer = http.get(path, params={"cursor": as_cursor([None, None, None, None])})
                assert answer.status_code == 400, answer.text

            @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
            @given(
                cursor=CURSORS,
                path=st.sampled_from(["/v1/companies/c-2002/history", "/v1/companies"]),
            )
            def any_cursor(cursor: str, path: str) -> None:
                refused_or_answered(http.get(path, params={"cursor": cursor}))

            @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
            @given(body=BODIES, write=st.sampled_from(WRITES))
            def any_body(body: bytes, write: tuple[str, str]) -> None:
                method, path = write
                answer = http.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
                refused_or_answered(answer)

            any_cursor()
            any_body()

    await asyncio.to_thread(fuzz)


async def test_a_body_over_64_kib_is_refused_unread(running_system: RunningSystem) -> None:
    await build_world(running_system)
    async with client(running_system, "u-1") as api:
        await api.post("/v1/companies/c-2002/users/me")
        text = "x" * (64 * 1024)
        answer = await api.post(
            "/v1/companies/c-2002/notes", json={"kind": "comment", "text": text}
        )
        assert answer.status_code == 413, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        notes = (await api.get("/v1/companies/c-2002/notes")).json()["items"]
        assert notes == []
        small = await api.post(
            "/v1/companies/c-2002/notes", json={"kind": "comment", "text": "Ring kunden"}
        )
        assert small.status_code == 201, small.text
