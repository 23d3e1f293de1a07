"""The relay's batch publisher on the real broker: what a subscriber receives is what was sent,
in order, with its properties, once committed; a commit that the broker does not take in full
raises, whether the exchange is missing or a queue refuses a message."""

from __future__ import annotations

import aio_pika
import aiormq
import pytest
from pamqp import frame, header

from services.committed import Outgoing, commit_all, content_header, open_transactional


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


async def test_a_batch_arrives_whole_in_order_once_committed(amqp_url: str) -> None:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("test.committed", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        transactional = await open_transactional(await channel.get_underlay_channel())
        large = bytes(range(256)) * 1200  # 307,200 bytes: more than one frame
        sent = [
            Outgoing(
                "test.committed",
                f"status.bookkeeping.{i % 3}",
                f'{{"n":{i}}}'.encode(),
                f"id-{i}",
                "status.changed",
            )
            for i in range(300)
        ] + [Outgoing("test.committed", "large", large, "id-large", "status.changed")]
        await commit_all(transactional, sent, timeout=30)
        taken = await channel.declare_queue(queue.name, passive=True)
        assert taken.declaration_result.message_count == len(sent)
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


async def test_a_commit_to_a_missing_exchange_raises_and_the_channel_is_closed(
    amqp_url: str,
) -> None:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        transactional = await open_transactional(await channel.get_underlay_channel())
        missing = [Outgoing("test.no-such-exchange", "k", b"{}", f"id-{i}", "t") for i in range(5)]
        with pytest.raises(aiormq.exceptions.AMQPError):
            await commit_all(transactional, missing, timeout=30)
        with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
            await commit_all(transactional, missing, timeout=30)


async def test_a_queue_that_refuses_a_message_fails_the_commit(amqp_url: str) -> None:
    """A full queue that rejects publishes (as an operator's length limit may): the broker does
    not answer the commit with commit-ok, so the relay keeps the messages for its next try."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("test.committed", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(
            exclusive=True, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
        )
        await queue.bind(exchange, routing_key="#")
        transactional = await open_transactional(await channel.get_underlay_channel())
        sent = [Outgoing("test.committed", "k", b"{}", f"id-{i}", "t") for i in range(5)]
        with pytest.raises(aiormq.exceptions.AMQPError, match="partial tx completion"):
            await commit_all(transactional, sent, timeout=30)


async def test_a_quorum_queue_takes_a_committed_batch(amqp_url: str) -> None:
    """Dashboards may bind quorum queues: RabbitMQ takes transactional publishes into them and
    answers the commit once they have confirmed the messages."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("test.committed", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(
            "test.committed.quorum", durable=True, arguments={"x-queue-type": "quorum"}
        )
        try:
            await queue.bind(exchange, routing_key="#")
            transactional = await open_transactional(await channel.get_underlay_channel())
            sent = [Outgoing("test.committed", "k", b"{}", f"id-{i}", "t") for i in range(50)]
            await commit_all(transactional, sent, timeout=30)
            taken = await channel.declare_queue(queue.name, passive=True)
            assert taken.declaration_result.message_count == len(sent)
        finally:
            await queue.delete(if_unused=False, if_empty=False)
