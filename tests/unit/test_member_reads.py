"""A member's read starts while the membership is checked, and is shown to members only; a
member let in once is let in again without a lookup, a refusal is never remembered."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, PermissionDeniedException

from services.api.app import check_member, for_member
from services.api.auth import Caller
from services.api.members import Members

COMPANY = {"_id": "a-1/c-1", "users": [{"user_id": "u-1"}]}


class SlowDirectory:
    """The company lookup of the read model, answering only when told to."""

    def __init__(self, entry: dict[str, Any] | None) -> None:
        self.entry = entry
        self.members = Members(16)
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()

    async def company_entry(
        self, agency_id: str, company_id: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        self.asked.set()
        await self.answer.wait()
        return self.entry


def caller(user_id: str) -> Caller:
    return Caller(user_id=user_id, agency_id="a-1", permissions=frozenset())


async def test_the_read_runs_while_the_membership_is_checked() -> None:
    directory = SlowDirectory(COMPANY)
    started = asyncio.Event()

    async def read() -> str:
        started.set()
        return "the tab"

    request = asyncio.ensure_future(
        for_member(State({"reads": directory}), caller("u-1"), "c-1", read())
    )
    await asyncio.wait_for(directory.asked.wait(), 1)
    # The membership has not answered yet, and the read has already begun.
    await asyncio.wait_for(started.wait(), 1)
    assert not request.done()
    directory.answer.set()
    assert await request == "the tab"


async def test_a_member_let_in_before_is_answered_without_a_lookup() -> None:
    directory = SlowDirectory(COMPANY)  # would never answer
    directory.members.admit("a-1", "c-1", "u-1")

    async def read() -> str:
        return "the tab"

    state = State({"reads": directory})
    assert await asyncio.wait_for(for_member(state, caller("u-1"), "c-1", read()), 1) == "the tab"
    assert not directory.asked.is_set()
    # Another company of the same caller is checked.
    other = asyncio.ensure_future(for_member(state, caller("u-1"), "c-2", read()))
    await asyncio.wait_for(directory.asked.wait(), 1)
    directory.entry = NOBODY
    directory.answer.set()
    with pytest.raises(PermissionDeniedException):
        await other


@pytest.mark.parametrize("outcome", ["found", "failed"])
@pytest.mark.parametrize(
    ("entry", "user_id", "refusal"),
    [(COMPANY, "u-2", PermissionDeniedException), (None, "u-1", NotFoundException)],
)
async def test_a_refused_caller_gets_the_refusal_whatever_the_read_found(
    entry: dict[str, Any] | None, user_id: str, refusal: type[Exception], outcome: str
) -> None:
    directory = SlowDirectory(entry)
    directory.answer.set()
    finished = asyncio.Event()

    async def read() -> str:
        await asyncio.sleep(0.01)  # still reading when the refusal comes
        finished.set()
        if outcome == "failed":
            raise RuntimeError("the store failed")
        return "the tab"

    with pytest.raises(refusal):
        await for_member(State({"reads": directory}), caller(user_id), "c-1", read())
    # The read is let finish (not cancelled halfway), and its outcome is dropped.
    await asyncio.wait_for(finished.wait(), 1)


async def test_a_failed_read_after_a_refusal_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = SlowDirectory(None)
    directory.answer.set()

    async def read() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("the store failed")

    with pytest.raises(NotFoundException):
        await for_member(State({"reads": directory}), caller("u-1"), "c-1", read())
    await asyncio.sleep(0.05)
    gc.collect()
    assert "exception was never retrieved" not in caplog.text


class HeldDirectory:
    """The read model's company entries: one held in memory, and the one in the store."""

    def __init__(self, held: dict[str, Any] | None, stored: dict[str, Any] | None) -> None:
        self.held = held
        self.stored = stored
        self.members = Members(16)
        self.reads = 0
        self.fresh_reads = 0

    async def company_entry(
        self, agency_id: str, company_id: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        self.reads += 1
        if fresh:
            self.fresh_reads += 1
            return self.stored
        return self.held


NOBODY = {"_id": "a-1/c-1", "users": []}


async def test_a_member_in_the_held_entry_is_let_in_without_reading_the_store() -> None:
    directory = HeldDirectory(COMPANY, NOBODY)
    await check_member(State({"reads": directory}), caller("u-1"), "c-1")
    assert directory.fresh_reads == 0


@pytest.mark.parametrize("held", [NOBODY, None], ids=["added since", "company new since"])
async def test_a_refusal_by_the_held_entry_is_checked_against_the_store(
    held: dict[str, Any] | None,
) -> None:
    directory = HeldDirectory(held, COMPANY)
    await check_member(State({"reads": directory}), caller("u-1"), "c-1")
    assert directory.fresh_reads == 1


@pytest.mark.parametrize(
    ("stored", "refusal"), [(NOBODY, PermissionDeniedException), (None, NotFoundException)]
)
async def test_a_refusal_stands_when_the_store_agrees(
    stored: dict[str, Any] | None, refusal: type[Exception]
) -> None:
    directory = HeldDirectory(COMPANY, stored)
    with pytest.raises(refusal):
        await check_member(State({"reads": directory}), caller("u-2"), "c-1")
    assert directory.fresh_reads == 1


@pytest.mark.parametrize(("held", "stored"), [(COMPANY, NOBODY), (NOBODY, COMPANY)])
async def test_a_member_let_in_once_is_let_in_again_without_a_lookup(
    held: dict[str, Any], stored: dict[str, Any]
) -> None:
    directory = HeldDirectory(held, stored)
    state = State({"reads": directory})
    await check_member(state, caller("u-1"), "c-1")
    looked_up = directory.reads
    # Whatever the entries say now: users are never taken off a company.
    directory.held = directory.stored = NOBODY
    for _ in range(3):
        await check_member(state, caller("u-1"), "c-1")
    assert directory.reads == looked_up


@pytest.mark.parametrize(
    ("other", "company_id"),
    [
        (Caller(user_id="u-2", agency_id="a-1", permissions=frozenset()), "c-1"),
        (Caller(user_id="u-1", agency_id="a-1", permissions=frozenset()), "c-2"),
        (Caller(user_id="u-1", agency_id="a-2", permissions=frozenset()), "c-1"),
    ],
    ids=["another user", "another company", "another agency"],
)
async def test_a_membership_remembered_lets_in_no_one_else(other: Caller, company_id: str) -> None:
    directory = HeldDirectory(COMPANY, COMPANY)
    state = State({"reads": directory})
    await check_member(state, caller("u-1"), "c-1")
    directory.held = directory.stored = NOBODY
    with pytest.raises(PermissionDeniedException):
        await check_member(state, other, company_id)


async def test_a_refusal_is_not_remembered() -> None:
    directory = HeldDirectory(NOBODY, NOBODY)
    state = State({"reads": directory})
    with pytest.raises(PermissionDeniedException):
        await check_member(state, caller("u-1"), "c-1")
    assert len(directory.members) == 0
    directory.stored = COMPANY  # added since
    await check_member(state, caller("u-1"), "c-1")
    assert len(directory.members) == 1


def test_the_ids_of_a_membership_cannot_run_into_each_other() -> None:
    members = Members(16)
    members.admit("a/b", "c", "u")
    assert not members.knows("a", "b/c", "u")
    assert not members.knows("a", "b", "c/u")
    assert members.knows("a/b", "c", "u")


def test_the_memberships_remembered_are_bounded_the_least_used_going_first() -> None:
    members = Members(16)
    for n in range(16):
        members.admit("a-1", f"c-{n}", "u-1")
    assert members.knows("a-1", "c-0", "u-1")  # used again: kept
    for n in range(16, 40):
        members.admit("a-1", f"c-{n}", "u-1")
    assert len(members) <= 16 + 16 // 16
    assert members.knows("a-1", "c-39", "u-1")
    assert not members.knows("a-1", "c-1", "u-1")


def test_nothing_is_remembered_where_the_store_is_read_for_every_request() -> None:
    from pymongo import AsyncMongoClient

    from services.api.reads import ReadModel

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(connect=False)
    reads = ReadModel(client["unused"], max_age_s=0)
    reads.members.admit("a-1", "c-1", "u-1")
    assert not reads.members.knows("a-1", "c-1", "u-1")
    held = ReadModel(client["unused"], max_age_s=0.5)
    held.members.admit("a-1", "c-1", "u-1")
    assert held.members.knows("a-1", "c-1", "u-1")
