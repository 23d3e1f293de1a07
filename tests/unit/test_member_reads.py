"""A member's read starts while the membership is checked, and is shown to members only."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, PermissionDeniedException

from services.api.app import for_member, member_entry
from services.api.auth import Caller

COMPANY = {"_id": "a-1/c-1", "users": [{"user_id": "u-1"}]}


class SlowDirectory:
    """The company lookup of the read model, answering only when told to."""

    def __init__(self, entry: dict[str, Any] | None) -> None:
        self.entry = entry
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
    await directory.asked.wait()
    # The membership has not answered yet, and the read has already begun.
    await asyncio.wait_for(started.wait(), 1)
    assert not request.done()
    directory.answer.set()
    assert await request == "the tab"


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
        self.fresh_reads = 0

    async def company_entry(
        self, agency_id: str, company_id: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        if fresh:
            self.fresh_reads += 1
            return self.stored
        return self.held


NOBODY = {"_id": "a-1/c-1", "users": []}


async def test_a_member_in_the_held_entry_is_let_in_without_reading_the_store() -> None:
    directory = HeldDirectory(COMPANY, NOBODY)
    assert await member_entry(State({"reads": directory}), caller("u-1"), "c-1") == COMPANY
    assert directory.fresh_reads == 0


@pytest.mark.parametrize("held", [NOBODY, None], ids=["added since", "company new since"])
async def test_a_refusal_by_the_held_entry_is_checked_against_the_store(
    held: dict[str, Any] | None,
) -> None:
    directory = HeldDirectory(held, COMPANY)
    assert await member_entry(State({"reads": directory}), caller("u-1"), "c-1") == COMPANY
    assert directory.fresh_reads == 1


@pytest.mark.parametrize(
    ("stored", "refusal"), [(NOBODY, PermissionDeniedException), (None, NotFoundException)]
)
async def test_a_refusal_stands_when_the_store_agrees(
    stored: dict[str, Any] | None, refusal: type[Exception]
) -> None:
    directory = HeldDirectory(COMPANY, stored)
    with pytest.raises(refusal):
        await member_entry(State({"reads": directory}), caller("u-2"), "c-1")
    assert directory.fresh_reads == 1
