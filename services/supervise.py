"""Keeps a broker session alive: reconnects with growing delay until asked to stop.

We do not rely on aio-pika's robust connection to restore consumers after a broker restart (the
failure users of aio-pika and FastStream report most): each session declares its topology and
starts consuming from scratch, so a new session is always complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel

from services.config import Settings

INITIAL_DELAY = 0.5
MAX_DELAY = 30.0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def supervise(
    session: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    delay = INITIAL_DELAY
    while not stop.is_set():
        started = asyncio.get_running_loop().time()
        try:
            await session(stop)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # broker gone, socket reset, channel closed: start anew
            log.warning("session ended", error=f"{type(error).__name__}: {error}", retry_in_s=delay)
        else:
            if stop.is_set():
                return
            log.warning("connection closed", retry_in_s=delay)
        if asyncio.get_running_loop().time() - started > MAX_DELAY:
            delay = INITIAL_DELAY  # the session had been healthy; start backing off afresh
        await wait_or_stop(stop, delay)
        delay = min(delay * 2, MAX_DELAY)


@contextlib.asynccontextmanager
async def amqp_session(settings: Settings) -> AsyncIterator[tuple[AbstractChannel, asyncio.Event]]:
    """A connection and a channel with publisher confirms and the consumer's prefetch, for one
    session; the event is set when either closes (a channel error ends the session too)."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        channel = await connection.channel(publisher_confirms=True)
        channel.close_callbacks.add(lambda *_: closed.set())
        await channel.set_qos(prefetch_count=settings.prefetch)
        yield channel, closed
    finally:
        await connection.close()
