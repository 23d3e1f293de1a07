"""Server-sent events for the Back-office page: the outbound events of the caller's agency, live.

While at least one page is open, the API process keeps one exclusive queue bound to
`backoffice.events` (whatever the number of pages) and hands each message to the pages of that
agency; with no page open it follows nothing, so an API without viewers costs the broker and
itself nothing for the outbound events. A page that falls behind loses
the oldest messages rather than holding memory: it reloads what it shows anyway, and a message
is only a hint that something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Final

import aio_pika
import structlog
from litestar.response import ServerSentEventMessage

from contracts.outbound import EVENTS_EXCHANGE

PAGE_BACKLOG: Final = 256  # messages a page may fall behind before the oldest are dropped
KEEPALIVE_S: Final = 15.0


class LiveHub:
    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.log = structlog.get_logger().bind(component="api")
        self._pages: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._bound = asyncio.Event()  # set while the queue is bound: a page then misses nothing

    def _follow(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        """Follows `backoffice.events`, reconnecting after a lost connection."""
        delay = 0.5
        while True:
            try:
                connection = await aio_pika.connect(self.amqp_url, timeout=10)
                async with connection:
                    channel = await connection.channel()
                    exchange = await channel.declare_exchange(
                        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
                    await queue.bind(exchange, "#")
                    self._bound.set()
                    delay = 0.5
                    async with queue.iterator(no_ack=True) as messages:
                        async for incoming in messages:
                            self._hand_out(incoming.body)
            except asyncio.CancelledError:
                self._bound.clear()
                raise
            except Exception as error:
                self._bound.clear()
                self.log.warning("live events unavailable; retrying", error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _hand_out(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            return
        for page in self._pages.get(str(message.get("agency_id")), ()):
            if page.full():
                page.get_nowait()
            page.put_nowait(message)

    @contextlib.asynccontextmanager
    async def page(self, agency_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(PAGE_BACKLOG)
        self._pages.setdefault(agency_id, set()).add(queue)
        self._follow()
        with contextlib.suppress(TimeoutError):  # the broker away: the page shows what it has
            await asyncio.wait_for(self._bound.wait(), 5)
        try:
            yield queue
        finally:
            self._pages[agency_id].discard(queue)
            if not any(self._pages.values()):
                await self.close()  # the last page has gone


async def stream(hub: LiveHub, agency_id: str) -> AsyncIterator[ServerSentEventMessage]:
    """One page's events: each outbound message of the agency (the overview shows every
    company's statuses to every user of the agency, so the page may hear of every company); a
    comment now and then keeps proxies from closing an idle stream."""
    async with hub.page(agency_id) as queue:
        yield ServerSentEventMessage(comment="connected")
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            yield ServerSentEventMessage(
                data=json.dumps(message, ensure_ascii=False),
                event=str(message.get("type")),
                id=str(message.get("id")),
            )
