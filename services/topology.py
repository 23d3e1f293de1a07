"""The broker topology, derived from the consumer definitions.

    accounting.events (topic, upstream)   --type-->     backoffice.<consumer>   (quorum)
    accounting.events, unroutable         --------->    accounting.unrouted (fanout)
                                                          --> backoffice.unrouted
    backoffice.commands (topic, the API)  --type-->     backoffice.<consumer>
    backoffice.clock (fanout)             --------->    backoffice.<consumer>   (if it follows time)
    backoffice.<consumer> (the relay)     --------->    backoffice.events (topic, subscribers)
    backoffice.<consumer>.retry.<ms>ms  (each copy expires after <ms>, then back to the main queue)
    backoffice.<consumer>.dead          (quorum; invalid, rejected and exhausted messages)

With BACKOFFICE_PARTITIONS=P > 1 (services/partitions.py) the main queue becomes the intake:

    backoffice.<consumer>  --router, key = aggregate-->  backoffice.<consumer>.partitions
                                                          (x-consistent-hash, equal weights)
                                                     --> backoffice.<consumer>.p0 .. p<P-1>
    backoffice.clock (fanout)             --------->    backoffice.<consumer>.p<i>

Every main and partition queue has a single active consumer: replicas stand by rather than
compete on a queue, and share the partitions.

Every declaration is idempotent and carries no argument but the queue's type (and single active
consumer), so each consumer declares what it uses when it connects, and upstream may declare
`accounting.events` as the contract says, before or after us. What an operator may tune (the
alternate exchange, dead-lettering, the delivery limit) is set by RabbitMQ policies, which
``policies`` derives from the consumers and the settings; `deploy/servers.sh` applies them with
`rabbitmqctl`, and the compose broker loads them from `deploy/rabbitmq/definitions.json`. A retry's
delay travels on the copy itself (its expiration), so no queue argument names it either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from consumers.registry import ConsumerDefinition
from contracts.outbound import EVENTS_EXCHANGE
from contracts.registry import COMMANDS, INBOUND_EVENTS, type_name
from services.config import Settings

ACCOUNTING_EXCHANGE: Final = "accounting.events"
UNROUTED_EXCHANGE: Final = "accounting.unrouted"
COMMANDS_EXCHANGE: Final = "backoffice.commands"
CLOCK_EXCHANGE: Final = "backoffice.clock"

UNROUTED: Final = "unrouted"
# RabbitMQ's consistent-hash exchange plugin (rabbitmq_consistent_hash_exchange): it hashes the
# routing key, which the router sets to the aggregate's key.
PARTITION_EXCHANGE_TYPE: Final = "x-consistent-hash"

_EVENT_TYPES: Final = frozenset(type_name(t) for t in INBOUND_EVENTS)
_COMMAND_TYPES: Final = frozenset(type_name(t) for t in COMMANDS)


def queue_name(consumer: str) -> str:
    return f"backoffice.{consumer}"


def dead_queue_name(consumer: str) -> str:
    return f"backoffice.{consumer}.dead"


def partition_exchange_name(consumer: str) -> str:
    return f"backoffice.{consumer}.partitions"


def partition_queue_name(consumer: str, partition: int) -> str:
    return f"backoffice.{consumer}.p{partition}"


def partitioned(consumer: str, settings: Settings) -> bool:
    """Whether ``consumer``'s work is split into partitions: the catch-all owns no aggregates."""
    return settings.partitions > 1 and consumer != UNROUTED


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
    # Exactly as SPEC §7 says: an event whose type no consumer binds reaches the catch-all
    # through the alternate exchange that a policy sets (``policies``).
    await channel.declare_exchange(ACCOUNTING_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(COMMANDS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(CLOCK_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    # What the service tells subscribers (SPEC §8), declared as the contract says.
    await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


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
        await channel.declare_queue(retry_queue_name(name, delay), durable=True)
    queue = await channel.declare_queue(
        main,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            # One replica consumes, the others stand by and take over when it goes away: an
            # aggregate then has one writer at a time. FerretDB as released cannot make a
            # filtered replace atomic (it reads, then writes by _id), so competing writers could
            # lose an update.
            "x-single-active-consumer": True,
        },
    )
    split = partitioned(name, settings)
    for binding in bindings(definition):
        if split and binding.exchange == CLOCK_EXCHANGE:
            # Each partition takes the ticks for the aggregates it owns; the intake takes none.
            await queue.unbind(binding.exchange, routing_key=binding.routing_key)
        else:
            await queue.bind(binding.exchange, routing_key=binding.routing_key)
    return queue


async def declare_partitions(
    channel: AbstractChannel, definition: ConsumerDefinition, settings: Settings
) -> list[AbstractQueue]:
    """The consistent-hash exchange of a partitioned consumer and its P queues, bound with
    equal weights (the binding key of a consistent-hash exchange is the weight)."""
    name = definition.name
    exchange = await channel.declare_exchange(
        partition_exchange_name(name), PARTITION_EXCHANGE_TYPE, durable=True
    )
    queues = []
    for partition in range(settings.partitions):
        queue = await channel.declare_queue(
            partition_queue_name(name, partition),
            durable=True,
            arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
        )
        await queue.bind(exchange, routing_key="1")
        if definition.follows_clock:
            await queue.bind(CLOCK_EXCHANGE, routing_key="")
        queues.append(queue)
    return queues


@dataclass(frozen=True)
class Policy:
    """A RabbitMQ policy: what the broker adds to the exchanges or queues a pattern matches."""

    name: str
    pattern: str
    apply_to: str  # exchanges or queues
    definition: dict[str, Any]
    priority: int = 0


POLICY_PREFIX: Final = "backoffice."


def _exactly(name: str) -> str:
    return "^" + re.escape(name) + "$"


def policies(consumer_names: Iterable[str], settings: Settings) -> list[Policy]:
    """The policies the service needs, one per object so none shadows another: the alternate
    exchange of `accounting.events`; per consumer, its main queue's dead-lettering and delivery
    limit (the last guard against a message that crashes its consumer every time), and where
    its retry queues send a copy once it expires."""
    found = [
        Policy(
            POLICY_PREFIX + "accounting-events",
            _exactly(ACCOUNTING_EXCHANGE),
            "exchanges",
            {"alternate-exchange": UNROUTED_EXCHANGE},
        )
    ]
    for name in consumer_names:
        main = queue_name(name)
        found.append(
            Policy(
                POLICY_PREFIX + name,
                _exactly(main),
                "queues",
                {
                    "dead-letter-exchange": "",
                    "dead-letter-routing-key": dead_queue_name(name),
                    "delivery-limit": settings.delivery_limit,
                },
            )
        )
        if name != UNROUTED:  # its queues, should the consumer be partitioned (P > 1)
            found.append(
                Policy(
                    POLICY_PREFIX + name + ".partitions",
                    "^" + re.escape(main + ".p") + r"[0-9]+$",
                    "queues",
                    {
                        "dead-letter-exchange": "",
                        "dead-letter-routing-key": dead_queue_name(name),
                        "delivery-limit": settings.delivery_limit,
                    },
                )
            )
        found.append(
            Policy(
                POLICY_PREFIX + name + ".retry",
                "^" + re.escape(main + ".retry.") + r"[0-9]+ms$",
                "queues",
                {"dead-letter-exchange": "", "dead-letter-routing-key": main},
            )
        )
    return found


@dataclass(frozen=True)
class Permissions:
    """What a broker user may do on a vhost: regular expressions over exchange and queue names
    (``amq.default`` is the default exchange, ``amq.gen-*`` the server-named queues)."""

    configure: str
    write: str
    read: str


# The service (consumers, clock, API): its own exchanges and queues, the replies' server-named
# queues, and the default exchange, through which it moves copies to retry and dead-letter
# queues and answers a command's sender.
SERVICE_PERMISSIONS: Final = Permissions(
    configure=r"^(backoffice|accounting)\.|^amq\.gen-",
    write=r"^(backoffice|accounting)\.|^amq\.default$|^amq\.gen-",
    read=r"^(backoffice|accounting)\.|^amq\.gen-",
)
# An upstream publisher: declares `accounting.events` (SPEC §7) and publishes there; nothing
# else, so it can neither reach a queue through the default exchange nor read one.
UPSTREAM_PERMISSIONS: Final = Permissions(
    configure=_exactly(ACCOUNTING_EXCHANGE), write=_exactly(ACCOUNTING_EXCHANGE), read="^$"
)


ROLES: Final = {"service": SERVICE_PERMISSIONS, "upstream": UPSTREAM_PERMISSIONS}


def definitions(
    found: Iterable[Policy],
    vhost: str = "/",
    permissions: dict[str, Permissions] | None = None,
    passwords: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A RabbitMQ definitions document holding ``found`` and the users' ``permissions`` on
    ``vhost``: what `rabbitmqctl import_definitions` applies, or a broker loads at boot. Users
    are created only for those given a password; the others must exist."""
    return {
        "users": [
            {"name": user, "password": password, "tags": ""}
            for user, password in (passwords or {}).items()
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {"user": user, "vhost": vhost, **vars(granted)}
            for user, granted in (permissions or {}).items()
        ],
        "policies": [
            {
                "vhost": vhost,
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "definition": p.definition,
                "priority": p.priority,
            }
            for p in found
        ],
    }
