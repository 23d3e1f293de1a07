"""The broker topology, derived from the consumer definitions.

    accounting.events (topic, upstream)   --type-->     backoffice.<consumer>   (quorum)
    accounting.events, unroutable         --------->    accounting.unrouted (fanout)
                                                          --> backoffice.unrouted
    backoffice.commands (topic, the API)  --type-->     backoffice.<consumer>
    backoffice.clock (fanout)             --------->    backoffice.<consumer>   (if it follows time)
    backoffice.<consumer>.retry.<ms>ms  (TTL, then back to backoffice.<consumer>)
    backoffice.<consumer>.dead          (quorum; invalid, rejected and exhausted messages)

The main queue has a single active consumer: replicas stand by rather than compete.

Every declaration is idempotent, so each consumer declares what it uses when it connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from consumers.registry import ConsumerDefinition
from contracts.registry import COMMANDS, INBOUND_EVENTS, type_name
from services.config import Settings

ACCOUNTING_EXCHANGE: Final = "accounting.events"
UNROUTED_EXCHANGE: Final = "accounting.unrouted"
COMMANDS_EXCHANGE: Final = "backoffice.commands"
CLOCK_EXCHANGE: Final = "backoffice.clock"

UNROUTED: Final = "unrouted"

_EVENT_TYPES: Final = frozenset(type_name(t) for t in INBOUND_EVENTS)
_COMMAND_TYPES: Final = frozenset(type_name(t) for t in COMMANDS)


def queue_name(consumer: str) -> str:
    return f"backoffice.{consumer}"


def dead_queue_name(consumer: str) -> str:
    return f"backoffice.{consumer}.dead"


def retry_queue_name(consumer: str, delay: float) -> str:
    return f"backoffice.{consumer}.retry.{round(delay * 1000)}ms"


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str


def bindings(definition: ConsumerDefinition) -> list[Binding]:
    if definition.name == UNROUTED:
        return [Binding(UNROUTED_EXCHANGE, "")]
    handles = definition.handles
    found = [Binding(ACCOUNTING_EXCHANGE, key) for key in sorted(handles & _EVENT_TYPES)]
    found += [Binding(COMMANDS_EXCHANGE, key) for key in sorted(handles & _COMMAND_TYPES)]
    if definition.follows_clock:
        found.append(Binding(CLOCK_EXCHANGE, ""))
    return found


async def declare_exchanges(channel: AbstractChannel) -> None:
    await channel.declare_exchange(UNROUTED_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_exchange(
        ACCOUNTING_EXCHANGE,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        # An event whose type no consumer binds is kept, not dropped by the broker.
        arguments={"alternate-exchange": UNROUTED_EXCHANGE},
    )
    await channel.declare_exchange(COMMANDS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(CLOCK_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)


async def declare_consumer(
    channel: AbstractChannel, definition: ConsumerDefinition, settings: Settings
) -> AbstractQueue:
    """Declares the consumer's queues and bindings; returns its main queue."""
    await declare_exchanges(channel)
    name = definition.name
    main = queue_name(name)
    await channel.declare_queue(
        dead_queue_name(name), durable=True, arguments={"x-queue-type": "quorum"}
    )
    for delay in settings.retry_delays:
        await channel.declare_queue(
            retry_queue_name(name, delay),
            durable=True,
            arguments={
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": main,
            },
        )
    queue = await channel.declare_queue(
        main,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            # One replica consumes, the others stand by and take over when it goes away: an
            # aggregate then has one writer at a time. FerretDB cannot make a filtered replace
            # atomic (it reads, then writes by _id), so competing writers could lose an update.
            "x-single-active-consumer": True,
            "x-delivery-limit": settings.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_queue_name(name),
        },
    )
    for binding in bindings(definition):
        await queue.bind(binding.exchange, routing_key=binding.routing_key)
    return queue
