"""Answers from memory for a moment: read again in the background after half of it, one read
per key at a time, and never keeping what a forgotten read found."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from services.api.fresh import Fresh


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A read that counts how often it ran, answering ``value`` once ``answer`` is set."""

    def __init__(self, value: Any = "v1") -> None:
        self.value = value
        self.reads = 0
        self.answer = asyncio.Event()
        self.answer.set()
        self.fail: Exception | None = None

    async def read(self) -> Any:
        self.reads += 1
        await self.answer.wait()
        if self.fail is not None:
            raise self.fail
        return self.value


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_value_younger_than_half_the_age_is_answered_without_a_read() -> None:
    clock, store = Clock(), Store()
    fresh: Fresh[str] = Fresh(1.0, 10, clock)
    assert await fresh.get("k", store.read) == "v1"
    store.value = "v2"
    clock.now += 0.49
    assert await fresh.get("k", store.read) == "v1"
    await settle()
    assert store.reads == 1


async def test_past_half_the_age_the_held_value_is_answered_and_read_again_behind_it() -> None:
    clock, store = Clock(), Store()
    fresh: Fresh[str] = Fresh(1.0, 10, clock)
    await fresh.get("k", store.read)
    store.value = "v2"
    store.answer.clear()
    clock.now += 0.6
    # Answered at once from memory, though the store has not answered the new read.
    assert await asyncio.wait_for(fresh.get("k", store.read), 1) == "v1"
    assert await asyncio.wait_for(fresh.get("k", store.read), 1) == "v1"
    await settle()
    assert store.reads == 2  # one read in the background for both requests
    store.answer.set()
    await settle()
    assert await fresh.get("k", store.read) == "v2"
    assert store.reads == 2


async def test_past_the_age_the_request_waits_for_the_store() -> None:
    clock, store = Clock(), Store()
    fresh: Fresh[str] = Fresh(1.0, 10, clock)
    await fresh.get("k", store.read)
    store.value = "v2"
    clock.now += 1.0
    assert await fresh.get("k", store.read) == "v2"


async def test_the_age_counts_from_when_the_read_began() -> None:
    clock, store = Clock(), Store()
    fresh: Fresh[str] = Fresh(1.0, 10, clock)
    store.answer.clear()
    first = asyncio.ensure_future(fresh.get("k", store.read))
    await settle()
    clock.now += 0.8  # the store was slow to answer
    store.answer.set()
    assert await first == "v1"
    store.value = "v2"
    clock.now += 0.3  # 1.1 s since the read began, 0.3 since it ended
    assert await fresh.get("k", store.read) == "v2"


async def test_requests_at_once_share_one_read() -> None:
    store = Store()
    store.answer.clear()
    fresh: Fresh[str] = Fresh(1.0, 10, Clock())
    waiting = [asyncio.ensure_future(fresh.get("k", store.read)) for _ in range(5)]
    await settle()
    store.answer.set()
    assert await asyncio.gather(*waiting) == ["v1"] * 5
    assert store.reads == 1


async def test_a_read_forgotten_while_under_way_is_answered_but_not_kept() -> None:
    store = Store()
    store.answer.clear()
    fresh: Fresh[str] = Fresh(1.0, 10, Clock())
    before = asyncio.ensure_future(fresh.get("k", store.read))
    await settle()
    fresh.forget("k")  # a command changed the value meanwhile
    store.answer.set()
    assert await before == "v1"
    store.value = "v2"
    assert await fresh.get("k", store.read) == "v2"
    assert store.reads == 2


async def test_a_request_after_forget_does_not_join_the_older_read() -> None:
    store = Store()
    store.answer.clear()
    fresh: Fresh[str] = Fresh(1.0, 10, Clock())
    before = asyncio.ensure_future(fresh.get("k", store.read))
    await settle()
    fresh.forget("k")
    after = asyncio.ensure_future(fresh.get("k", store.read))
    await settle()
    assert store.reads == 2
    store.answer.set()
    await asyncio.gather(before, after)


async def test_forget_drops_what_is_held() -> None:
    store = Store()
    fresh: Fresh[str] = Fresh(1.0, 10, Clock())
    await fresh.get("k", store.read)
    store.value = "v2"
    fresh.forget("k")
    assert await fresh.get("k", store.read) == "v2"


async def test_a_failed_read_reaches_its_requests_and_keeps_nothing() -> None:
    store = Store()
    store.fail = RuntimeError("the store is away")
    fresh: Fresh[str] = Fresh(1.0, 10, Clock())
    with pytest.raises(RuntimeError):
        await fresh.get("k", store.read)
    store.fail = None
    assert await fresh.get("k", store.read) == "v1"
    assert store.reads == 2


async def test_a_failed_background_read_keeps_the_held_value_and_is_not_left_unretrieved() -> None:
    clock, store = Clock(), Store()
    fresh: Fresh[str] = Fresh(1.0, 10, clock)
    await fresh.get("k", store.read)
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        store.fail = RuntimeError("the store is away")
        clock.now += 0.6
        assert await fresh.get("k", store.read) == "v1"
        await settle()
        gc.collect()
        await settle()
    finally:
        loop.set_exception_handler(handler)
    assert unretrieved == []
    clock.now += 0.3  # still younger than the age: the held value stands
    assert await fresh.get("k", store.read) == "v1"


async def test_a_request_that_goes_away_does_not_cancel_the_read() -> None:
    store = Store()
    store.answer.clear()
    fresh: Fresh[str] = Fresh(1.0, 10, Clock())
    request = asyncio.ensure_future(fresh.get("k", store.read))
    await settle()
    request.cancel()
    await settle()
    store.answer.set()
    await settle()
    assert await fresh.get("k", store.read) == "v1"
    assert store.reads == 1


async def test_the_oldest_read_goes_first_beyond_the_size() -> None:
    store = Store()
    fresh: Fresh[str] = Fresh(1.0, 2, Clock())
    for key in ("a", "b", "c"):
        await fresh.get(key, store.read)
    assert store.reads == 3
    await fresh.get("b", store.read)
    await fresh.get("c", store.read)
    assert store.reads == 3
    await fresh.get("a", store.read)
    assert store.reads == 4


async def test_what_grew_too_old_is_let_go_when_another_is_read() -> None:
    clock, store = Clock(), Store()
    fresh: Fresh[str] = Fresh(1.0, 10, clock)
    await fresh.get("a", store.read)
    await fresh.get("b", store.read)
    clock.now += 0.5
    await fresh.get("c", store.read)
    assert len(fresh) == 3
    clock.now += 0.6  # a and b are a second and more old, c half a second
    await fresh.get("d", store.read)
    assert len(fresh) == 2


async def test_no_age_reads_the_store_every_time() -> None:
    store = Store()
    fresh: Fresh[str] = Fresh(0.0, 10, Clock())
    for _ in range(3):
        await fresh.get("k", store.read)
    assert store.reads == 3
