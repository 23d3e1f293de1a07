"""How a consumer takes its next batch (services/runner.py): a lone message at once, a consumer
that is behind waits a little for a fuller batch; when idle, it tidies between pauses."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from consumers.registry import CONSUMERS
from services import heap
from services.config import Settings
from services.runner import TIDY_PAUSE_S, ConsumerRunner, tidy_pause
from services.store.memory import MemoryStore


def runner(batch_size: int) -> ConsumerRunner:
    # A linger far longer than the test: waiting for it would show.
    settings = Settings(batch_size=batch_size, batch_linger_ms=60_000)
    return ConsumerRunner(CONSUMERS["bookkeeping"], settings, MemoryStore())


async def turns(task: asyncio.Task[Any], count: int = 20) -> None:
    """Lets the event loop run ``count`` times without any time passing."""
    for _ in range(count):
        if task.done():
            return
        await asyncio.sleep(0)


async def test_a_consumer_that_keeps_up_hands_a_lone_message_over_at_once() -> None:
    consumer = runner(batch_size=3)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    stop, closed = asyncio.Event(), asyncio.Event()
    taking = asyncio.ensure_future(consumer._next_batch(inbox, stop, closed))
    await turns(taking)
    inbox.put_nowait("command")
    await turns(taking)
    assert taking.done() and taking.result() == ["command"]


async def test_a_consumer_that_is_behind_waits_to_fill_its_batch() -> None:
    consumer = runner(batch_size=2)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    stop, closed = asyncio.Event(), asyncio.Event()
    for message in ("a", "b", "c"):
        inbox.put_nowait(message)
    assert await consumer._next_batch(inbox, stop, closed) == ["a", "b"]  # full: behind
    taking = asyncio.ensure_future(consumer._next_batch(inbox, stop, closed))
    await turns(taking)
    assert not taking.done()  # waits for a second message within the linger
    inbox.put_nowait("d")
    await turns(taking)
    assert taking.done() and taking.result() == ["c", "d"]
    # That batch was full too; one that is not ends the waiting.
    inbox.put_nowait("e")
    stop.set()
    assert await consumer._next_batch(inbox, stop, closed) == ["e"]
    stop.clear()
    taking = asyncio.ensure_future(consumer._next_batch(inbox, stop, closed))
    inbox.put_nowait("f")
    await turns(taking)
    assert taking.done() and taking.result() == ["f"]


def test_settling_the_heap_sets_what_lives_at_start_aside_from_full_collections() -> None:
    gc.collect()
    try:
        heap.settle()
        assert gc.get_freeze_count() > 10_000  # the modules, functions and classes loaded
        assert len(gc.get_objects()) < gc.get_freeze_count()
    finally:
        gc.unfreeze()


def test_the_pauses_between_tidy_steps_vary_so_that_consumers_drift_apart() -> None:
    """Every consumer of a process begins to tidy when the same backlog drains: with equal
    pauses their writes would reach the store together, step after step."""
    pauses = [tidy_pause() for _ in range(200)]
    assert all(TIDY_PAUSE_S / 2 <= p <= TIDY_PAUSE_S * 3 / 2 for p in pauses)
    assert max(pauses) - min(pauses) > TIDY_PAUSE_S / 2
    assert tidy_pause(lambda low, high: low) == TIDY_PAUSE_S / 2
