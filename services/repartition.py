"""Changing a consumer kind's number of partitions: an operation, run while the kind is stopped.

A stored aggregate carries the partition that writes it (``partition``): that partition alone
sweeps it for the clock and recovers its outbox. A new P changes where the consistent-hash
exchange sends a key, so before the kind runs with it:

1. what waits in the partition queues (routed under the old P) goes back to the intake, from
   which the new router routes it again;
2. queues beyond the new P are deleted, and the new ones declared and bound;
3. every stored aggregate of the kind is marked with the partition the exchange now gives its
   key. The exchange's ring is the broker's own, so it is asked: one probe message per key goes
   through the exchange, and the queue it lands in is the answer;
4. the partitions' clock watermarks are dropped, so each partition's next tick sweeps its own
   aggregates once.

Nothing is consumed meanwhile (the kind is stopped): upstream's events wait in the intake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from consumers.registry import ConsumerDefinition
from services.config import MAX_PARTITIONS, Settings
from services.store.port import PARTITION_FIELD
from services.sweep import SWEEPS
from services.topology import (
    declare_partitions,
    partition_exchange_name,
    partition_queue_name,
    queue_name,
)

PROBE_HEADER: Final = "x-backoffice-probe"
IDLE_S: Final = 5.0  # a queue that sends nothing for this long has nothing more
MARK_CHUNK: Final = 50
PROBE_CHUNK: Final = 500  # updates per bulk write: FerretDB stalls on long multi-statement writes


class StillRunning(Exception):
    """Replicas still consume the kind's queues: they must be stopped first."""


@dataclass(frozen=True)
class Repartitioned:
    moved_back: int  # messages moved from the old partition queues to the intake
    removed: list[str]  # partition queues deleted
    marked: int  # stored aggregates whose partition changed


async def repartition(
    settings: Settings,
    database: AsyncDatabase[dict[str, Any]],
    definition: ConsumerDefinition,
    partitions: int,
) -> Repartitioned:
    name = definition.name
    new = replace(settings, partitions=partitions)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        existing = await _existing_partitions(connection, name)
        channel = await connection.channel(publisher_confirms=True)
        busy = await _consumers(channel, [queue_name(name), *existing.values()])
        if busy:
            raise StillRunning(
                f"stop every replica of {name} first: "
                + ", ".join(f"{q} has {n} consumer(s)" for q, n in busy.items())
            )
        moved = 0
        for queue in existing.values():
            moved += await _move_back(channel, queue, queue_name(name))
        removed = []
        keep = partitions if partitions > 1 else 0
        for number, queue in sorted(existing.items()):
            if number >= keep:
                declared = await channel.declare_queue(queue, passive=True)
                await declared.delete(if_unused=False, if_empty=False)
                removed.append(queue)
        if partitions > 1:
            queues = await declare_partitions(channel, definition, new)
            marked = await _mark(channel, database, definition, queues)
        else:  # unpartitioned again: no marks, no exchange
            marked = 0
            for rulebook in definition.rulebooks:
                result = await database[rulebook.collection].update_many(
                    {PARTITION_FIELD: {"$exists": True}}, {"$unset": {PARTITION_FIELD: ""}}
                )
                marked += result.modified_count
            with contextlib.suppress(aiormq.exceptions.ChannelClosed):
                await channel.exchange_delete(partition_exchange_name(name))
    marks = [f"{r.collection}@p{n}" for r in definition.rulebooks for n in range(MAX_PARTITIONS)]
    await database[SWEEPS].delete_many({"_id": {"$in": marks}})
    return Repartitioned(moved, removed, marked)


async def _existing_partitions(connection: AbstractConnection, name: str) -> dict[int, str]:
    """The partition queues of ``name`` that exist (a missing one closes the channel asked)."""
    found = {}
    for number in range(MAX_PARTITIONS):
        queue = partition_queue_name(name, number)
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, passive=True)
            found[number] = queue
        except aiormq.exceptions.ChannelNotFoundEntity:
            continue
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
    return found


async def _consumers(channel: AbstractChannel, queues: list[str]) -> dict[str, int]:
    busy = {}
    for queue in queues:
        declared = await channel.declare_queue(queue, passive=True)
        if declared.declaration_result.consumer_count:
            busy[queue] = declared.declaration_result.consumer_count
    return busy


async def _taken(channel: AbstractChannel, queue: str) -> AsyncIterator[AbstractIncomingMessage]:
    """Every message waiting in ``queue``, through a consumer: a quorum queue with a single
    active consumer refuses ``basic.get``. Ends when as many as were waiting have come, or
    when none came for a while."""
    declared = await channel.declare_queue(queue, passive=True)
    waiting = declared.declaration_result.message_count or 0
    if not waiting:
        return
    inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    tag = await declared.consume(inbox.put)
    try:
        for _ in range(waiting):
            try:
                yield await asyncio.wait_for(inbox.get(), IDLE_S)
            except TimeoutError:
                return
    finally:
        await declared.cancel(tag)
        while not inbox.empty():  # delivered after the count: back to the queue
            await inbox.get_nowait().nack(requeue=True)


async def _move_back(channel: AbstractChannel, queue: str, intake: str) -> int:
    moved = 0
    async for incoming in _taken(channel, queue):
        await channel.default_exchange.publish(
            aio_pika.Message(
                incoming.body,
                headers=dict(incoming.headers or {}),
                content_type=incoming.content_type,
                message_id=incoming.message_id,
                correlation_id=incoming.correlation_id,
                reply_to=incoming.reply_to,
                timestamp=incoming.timestamp,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=intake,
        )
        await incoming.ack()
        moved += 1
    return moved


async def _mark(
    channel: AbstractChannel,
    database: AsyncDatabase[dict[str, Any]],
    definition: ConsumerDefinition,
    queues: list[AbstractQueue],
) -> int:
    """Marks each stored aggregate with the partition the exchange sends its key to."""
    exchange = await channel.get_exchange(partition_exchange_name(definition.name))
    marked = 0
    for rulebook in definition.rulebooks:
        collection = database[rulebook.collection]
        current = {
            d["_id"]: d.get(PARTITION_FIELD)
            async for d in collection.find({}, {PARTITION_FIELD: 1})
        }
        keys = list(current)
        for start in range(0, len(keys), PROBE_CHUNK):  # confirmed, so routed before we look
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            b"", message_id=key, headers={PROBE_HEADER: rulebook.collection}
                        ),
                        routing_key=key,
                    )
                    for key in keys[start : start + PROBE_CHUNK]
                )
            )
        landed: dict[str, int] = {}
        for number, queue in enumerate(queues):
            others = []  # a clock tick that came meanwhile stays for the partition
            async for probe in _taken(channel, queue.name):
                if (probe.headers or {}).get(PROBE_HEADER) == rulebook.collection:
                    landed[str(probe.message_id)] = number
                    await probe.ack()
                else:
                    others.append(probe)
            for other in others:
                await other.nack(requeue=True)
        if len(landed) != len(current):
            raise RuntimeError(
                f"{len(current) - len(landed)} probes of {rulebook.collection} did not come back;"
                " run the operation again"
            )
        changes = [
            UpdateOne({"_id": key}, {"$set": {PARTITION_FIELD: number}})
            for key, number in landed.items()
            if current.get(key) != number
        ]
        for start in range(0, len(changes), MARK_CHUNK):
            await collection.bulk_write(changes[start : start + MARK_CHUNK], ordered=False)
        marked += len(changes)
    return marked
