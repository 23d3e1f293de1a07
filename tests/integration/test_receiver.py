"""The consumer's receiver on the real broker: a delivery reads as aio-pika reads it, whatever its
size; the prefetch bounds what arrives, an ack covers what came before it and a nack gives it
back; the broker's refusals are clear errors; and the receiver ends, for the session to start
anew, when the broker cancels the consumer or the connection goes quiet."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from services.receiver import FRAME_MAX, Incoming, Receiver, ReceiverError, open_receiver
from tests.harness import eventually, queue_depth

WAIT_S = 10.0


async def taken(inbox: asyncio.Queue[Incoming], count: int) -> list[Incoming]:
    async with asyncio.timeout(WAIT_S):
        return [await inbox.get() for _ in range(count)]


async def nothing_more(inbox: asyncio.Queue[Incoming], seconds: float = 0.5) -> bool:
    await asyncio.sleep(seconds)
    return inbox.empty()


@contextlib.asynccontextmanager
async def receiving(
    url: str, queue: str, prefetch: int
) -> AsyncIterator[tuple[Receiver, asyncio.Queue[Incoming]]]:
    """A receiver of ``queue`` and the inbox it fills, closed at the end."""
    inbox: asyncio.Queue[Incoming] = asyncio.Queue()
    receiver = await open_receiver(url, queue, prefetch, inbox.put_nowait)
    try:
        yield receiver, inbox
    finally:
        await receiver.close()


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    async with await aio_pika.connect(amqp_url) as connection:
        yield await connection.channel()


async def declared(channel: aio_pika.abc.AbstractChannel) -> str:
    name = f"test.receiver.{uuid.uuid4().hex[:8]}"
    await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    return name


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, *bodies: bytes) -> None:
    for body in bodies:
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)


async def test_a_delivery_reads_as_aio_pika_reads_it(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await declared(channel)
    message = aio_pika.Message(
        b'{"id": "e-1"}',
        content_type="application/json",
        content_encoding="utf-8",
        headers={
            "x-signature": "abc",
            "x-attempt": 3,
            "x-flag": True,
            "x-nested": {"a": [1, "two"]},
            "x-at": dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC),
        },
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=5,
        correlation_id="corr-1",
        reply_to="amq.rabbitmq.reply-to.x",
        expiration=3600,
        message_id="e-1",
        timestamp=dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC),
        type="bookkeeping.period_submitted",
        user_id="guest",
        app_id="accounting",
    )
    for _ in range(2):
        await channel.default_exchange.publish(message, routing_key=queue)
    expected = await (await channel.get_queue(queue)).get(timeout=WAIT_S)
    assert expected is not None
    async with receiving(amqp_url, queue, 10) as (_, inbox):
        (incoming,) = await taken(inbox, 1)
        for name in (
            "body",
            "exchange",
            "routing_key",
            "content_type",
            "content_encoding",
            "delivery_mode",
            "priority",
            "correlation_id",
            "reply_to",
            "expiration",
            "message_id",
            "timestamp",
            "type",
            "user_id",
            "app_id",
        ):
            assert getattr(incoming, name) == getattr(expected, name), name
        assert incoming.headers == message.headers  # the broker adds none on a first delivery
        assert incoming.redelivered is False
        await incoming.ack()


async def test_bodies_of_any_size_arrive_whole_and_in_order(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await declared(channel)
    large = bytes(range(256)) * 1500  # 384,000 bytes: three frames and a part
    bodies = [b"", b"x" * (FRAME_MAX - 8), large, b"after"]
    await publish(channel, queue, *bodies)
    async with receiving(amqp_url, queue, 10) as (_, inbox):
        received = await taken(inbox, len(bodies))
        assert [m.body for m in received] == bodies
        assert [m.delivery_tag for m in received] == [1, 2, 3, 4]
        await received[-1].ack(multiple=True)


async def test_the_prefetch_bounds_deliveries_and_an_ack_covers_those_before_it(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await declared(channel)
    await publish(channel, queue, *(f"m-{i}".encode() for i in range(12)))
    async with receiving(amqp_url, queue, 5) as (_, inbox):
        first = await taken(inbox, 5)
        assert await nothing_more(inbox)  # five unacknowledged: the broker holds the rest
        await first[-1].ack(multiple=True)  # all five
        second = await taken(inbox, 5)
        assert [m.body for m in first + second] == [f"m-{i}".encode() for i in range(10)]
        await second[0].ack()  # one: four stay unacknowledged
        (eleventh,) = await taken(inbox, 1)
        assert await nothing_more(inbox)
        await eleventh.nack(requeue=True)  # back to the queue, and to us again
        others = []  # RabbitMQ 4 puts it back at the end of a quorum queue: after the twelfth
        while True:
            (incoming,) = await taken(inbox, 1)
            if incoming.body == eleventh.body:
                assert incoming.redelivered
                break
            others.append(incoming.body)
            await incoming.ack()
        assert others in ([], [b"m-11"])
    # Closing gave the unacknowledged back: the four of the second five and the retried one;
    # the twelfth too, unless it came first. A quorum queue takes them back a moment after the
    # connection has closed, not before its Close-Ok.
    expected = 6 - len(others)

    async def given_back() -> bool:
        return await queue_depth(amqp_url, queue) == expected

    await eventually(given_back, timeout=WAIT_S, what=f"{expected} messages back in the queue")


async def test_after_a_cancel_nothing_more_arrives(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await declared(channel)
    async with receiving(amqp_url, queue, 10) as (receiver, inbox):
        await publish(channel, queue, b"one")
        (one,) = await taken(inbox, 1)
        await receiver.cancel()
        await one.ack()  # a delivery taken before the cancel is still settled on it
        await publish(channel, queue, b"two")
        assert await nothing_more(inbox)
        assert not receiver.closed.is_set()
    assert receiver.closed.is_set()


async def test_a_missing_queue_or_a_wrong_password_is_a_clear_error(amqp_url: str) -> None:
    with pytest.raises(ReceiverError, match="404 NOT_FOUND"):
        await open_receiver(amqp_url, "no.such.queue", 1, lambda _: None)
    wrong = amqp_url.replace("guest:guest@", "guest:wrong@")
    with pytest.raises(ReceiverError, match="403 ACCESS_REFUSED"):
        await open_receiver(wrong, "no.such.queue", 1, lambda _: None)


async def test_the_receiver_ends_when_the_broker_cancels_its_consumer(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await declared(channel)
    closed = asyncio.Event()
    receiver = await open_receiver(amqp_url, queue, 1, lambda _: None, closed)
    await channel.queue_delete(queue)
    async with asyncio.timeout(WAIT_S):
        await closed.wait()
    assert receiver.error is not None and "cancelled the consumer" in str(receiver.error)
    with pytest.raises(ReceiverError):  # what it held went back to the broker with the connection
        await Incoming(receiver, 1, False, "", queue).ack()


async def test_heartbeats_keep_an_idle_receiver_open(
    amqp_url: str, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await declared(channel)
    # The broker closes a connection that sends nothing for two heartbeats (2 s here).
    async with receiving(f"{amqp_url}?heartbeat=1", queue, 1) as (receiver, inbox):
        await asyncio.sleep(3.5)
        assert not receiver.closed.is_set()
        await publish(channel, queue, b"still here")
        (incoming,) = await taken(inbox, 1)
        assert incoming.body == b"still here"


async def test_a_silent_broker_ends_the_receiver() -> None:
    """A broker that answers nothing more (a network gone without a reset) is noticed within
    two heartbeats."""
    closed = asyncio.Event()
    receiver = Receiver(lambda _: None, closed)
    receiver._heartbeat_s = 1  # and it never heard from the broker
    beats = asyncio.create_task(receiver._beat())
    async with asyncio.timeout(WAIT_S):
        await closed.wait()
    assert receiver.error is not None and "no frame from the broker in 2 s" in str(receiver.error)
    await asyncio.wait({beats})
