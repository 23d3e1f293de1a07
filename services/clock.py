"""The clock: publishes a tick every ``tick_seconds`` so statuses follow the passage of time.

Ticks are not persistent and expire after one interval: a consumer that was away needs only the
newest tick, not every minute it missed. Several clocks may run; a tick is idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable

import aio_pika
import structlog

from contracts.clock import ClockTick
from contracts.fields import normalize_instant
from contracts.registry import encode
from services.config import Settings
from services.signing import SIGNATURE_HEADER, signature
from services.supervise import supervise, wait_or_stop
from services.topology import CLOCK_EXCHANGE


def tick_message(now: dt.datetime, secret: str, expiration_s: float) -> aio_pika.Message:
    tick = ClockTick(id=str(uuid.uuid4()), version=1, occurred_at=normalize_instant(now))
    body = encode(tick)
    return aio_pika.Message(
        body,
        headers={SIGNATURE_HEADER: signature(secret, body)},
        content_type="application/json",
        message_id=tick.id,
        expiration=expiration_s,
        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
    )


async def publish_tick(
    channel: aio_pika.abc.AbstractChannel,
    now: dt.datetime,
    secret: str,
    expiration_s: float = 60,
) -> None:
    """Publishes a tick for ``now``, signed with the service's ``secret``."""
    exchange = await channel.declare_exchange(
        CLOCK_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    await exchange.publish(tick_message(now, secret, expiration_s), routing_key="")


class Clock:
    def __init__(
        self,
        settings: Settings,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.wall_clock = wall_clock
        self.log = structlog.get_logger().bind(consumer="clock")

    async def run(self, stop: asyncio.Event) -> None:
        await supervise(self._session, stop, self.log)

    async def _session(self, stop: asyncio.Event) -> None:
        async with await aio_pika.connect(self.settings.amqp_url, timeout=10) as connection:
            channel = await connection.channel(publisher_confirms=True)
            self.log.info("ticking", every_s=self.settings.tick_seconds)
            while not stop.is_set():
                now = self.wall_clock()
                await publish_tick(
                    channel, now, self.settings.service_secret, self.settings.tick_seconds
                )
                self.log.debug("tick", now=now.isoformat())
                await wait_or_stop(stop, self.settings.tick_seconds)
