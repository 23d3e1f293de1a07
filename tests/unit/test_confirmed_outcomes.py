"""Waiting for the relay's confirmations: every outcome in order, errors as values, and a
cancelled caller stays cancelled."""

from __future__ import annotations

import asyncio

import pytest

from services.confirmed import outcomes


async def test_each_confirmation_gives_its_result_or_its_error_in_order() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[object]] = [loop.create_future() for _ in range(4)]
    nack = RuntimeError("nacked")
    # Out of order, and after the wait began.
    loop.call_soon(futures[2].set_exception, nack)
    loop.call_soon(futures[0].set_result, "ack-0")
    loop.call_soon(futures[3].cancel)
    loop.call_soon(futures[1].set_result, "ack-1")
    found = await asyncio.wait_for(outcomes(futures), 5)
    assert found[:3] == ["ack-0", "ack-1", nack]
    assert isinstance(found[3], asyncio.CancelledError)


async def test_a_cancelled_caller_is_not_taken_for_a_cancelled_confirmation() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[object] = loop.create_future()
    waiting = asyncio.create_task(outcomes([never]))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
