"""The relay's batch publisher on the real broker: what a subscriber receives is what was sent,
in order, with its properties, and every message is confirmed; a broken channel fails the
confirmations rather than leaving them waiting."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import pytest
from pamqp import frame, header
from pamqp.commands import Basic

from services.confirmed import Outgoing, content_header, outcomes, publish_all


@pytest.mark.parametrize(
    ("message_id", "message_type", "size"),
    [("bookkeeping/a-1/c-2/17/0", "status.changed", 251), ("x" * 255, "client.action_required", 0)],
)
def test_the_content_header_is_what_pamqp_writes(
    message_id: str, message_type: str, size: int
) -> None:
    message = Outgoing(
        "backoffice.events", "status.vat.late", b"x" * size, message_id, message_type
    )
    properties = aiormq.spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        message_type=message_type,
    )
    expected = frame.marshal(header.ContentHeader(0, size, properties), 3)
    assert content_header(3, message) == expected


def test_a_short_string_longer_than_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 255 bytes"):
        content_header(1, Outgoing("e", "k", b"", "ö" * 128, "status.changed"))


async def test_a_batch_arrives_whole_in_order_and_confirmed(amqp_url: str) -> None:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange("test.confirmed", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        raw = await channel.get_underlay_channel()
        large = bytes(range(256)) * 1200  # 307,200 bytes: more than one frame
        sent = [
            Outgoing(
                "test.confirmed",
                f"status.bookkeeping.{i % 3}",
                f'{{"n":{i}}}'.encode(),
                f"id-{i}",
                "status.changed",
            )
            for i in range(300)
        ] + [Outgoing("test.confirmed", "large", large, "id-large", "status.changed")]
        futures = await publish_all(raw, sent)  # type: ignore[arg-type]
        results = await asyncio.wait_for(outcomes(futures), 30)
        assert all(isinstance(r, Basic.Ack) for r in results)
        received = []
        async with queue.iterator() as messages:
            async for incoming in messages:
                await incoming.ack()
                received.append(incoming)
                if len(received) == len(sent):
                    break
        assert [m.body for m in received] == [m.body for m in sent]
        assert [m.routing_key for m in received] == [m.routing_key for m in sent]
        assert [m.message_id for m in received] == [m.message_id for m in sent]
        assert {(m.type, m.content_type, m.delivery_mode) for m in received} == {
            ("status.changed", "application/json", aio_pika.DeliveryMode.PERSISTENT)
        }


async def test_a_channel_that_closes_fails_the_waiting_confirmations(amqp_url: str) -> None:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        raw = await channel.get_underlay_channel()
        missing = [Outgoing("test.no-such-exchange", "k", b"{}", f"id-{i}", "t") for i in range(5)]
        futures = await publish_all(raw, missing)  # type: ignore[arg-type]
        results = await asyncio.wait_for(outcomes(futures), 30)
        assert all(isinstance(r, Exception) for r in results)
        with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
            await publish_all(raw, missing)  # type: ignore[arg-type]
