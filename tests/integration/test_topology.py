"""The broker topology as publishers and operators meet it (SPEC §7): `accounting.events` is
declared exactly as the contract says, whoever declares it first, and what an operator tunes
(alternate exchange, dead-lettering, delivery limit) comes from policies, so a changed setting
needs no queue to be deleted."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import aio_pika
import aiormq
import pytest

from contracts.registry import encode
from services.__main__ import ALL_NAMES
from services.config import Settings
from services.signing import SIGNATURE_HEADER, signature
from services.topology import (
    ACCOUNTING_EXCHANGE,
    UPSTREAM_PERMISSIONS,
    dead_queue_name,
    definitions,
    policies,
)
from tests import factories as f
from tests.harness import Servers, System, dead_letters, eventually, publish, queue_depth

KEY = f"{f.AGENCY}/{f.COMPANY}"


async def declare_as_upstream(amqp_url: str) -> None:
    """What an upstream publisher does: the exchange of SPEC §7, durable topic, no arguments."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(
            ACCOUNTING_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )


async def submitted_shows(system: System, period: str) -> bool:
    doc = await system.document("bookkeeping", KEY)
    return bool(doc and period in doc["facts"])


async def test_upstream_declares_the_exchange_before_the_service_starts(system: System) -> None:
    await declare_as_upstream(system.settings.amqp_url)
    await system.start()
    await declare_as_upstream(system.settings.amqp_url)  # and again, once we declared it too
    await publish(
        system.settings.amqp_url,
        [f.details("2026-01-02T08:00"), f.submitted("2026-01", "2026-02-02T09:00")],
    )
    await eventually(lambda: submitted_shows(system, "2026-01"), what="the submission applied")


async def test_upstream_declares_the_exchange_after_the_service_started(system: System) -> None:
    await system.start()
    await declare_as_upstream(system.settings.amqp_url)
    await publish(
        system.settings.amqp_url,
        [f.details("2026-01-02T08:00"), f.submitted("2026-02", "2026-03-02T09:00")],
    )
    await eventually(lambda: submitted_shows(system, "2026-02"), what="the submission applied")
    # The alternate exchange still comes from the policy: an unknown type reaches the catch-all.
    unknown = f.body("bookkeeping.period_approved", {"period": "2026-02"}, "2026-03-04T09:12")
    await publish(system.settings.amqp_url, [("bookkeeping.period_approved", _json(unknown))])
    await eventually(
        lambda: system.runners["unrouted"].counters.dead_lettered == 1, what="the unrouted event"
    )


async def test_changed_retry_delays_and_delivery_limit_just_work_after_a_restart(
    servers: Servers, system: System, settings: Settings
) -> None:
    await system.start("bookkeeping")
    await system.stop("bookkeeping")
    # New settings: other retry queues, a lower delivery limit, applied as deploy/servers.sh does.
    changed = dataclasses.replace(settings, retry_delays=(0.25, 0.5), delivery_limit=2)
    vhost = settings.amqp_url.rsplit("/", 1)[1]
    servers.import_definitions(definitions(policies(ALL_NAMES, changed), vhost))
    restarted = System(changed)
    try:
        await restarted.start("bookkeeping")
        await publish(changed.amqp_url, [f.details("2026-01-02T08:00")])
        await eventually(lambda: _exists(restarted, "bookkeeping", KEY), what="the details applied")
    finally:
        await restarted.close()
    # The broker itself dead-letters a message delivered more often than the new limit.
    body = _json(f.body("bookkeeping.period_submitted", {"period": "2026-02"}, "2026-03-04T09:12"))
    await publish(changed.amqp_url, [("bookkeeping.period_submitted", body)])
    async with await aio_pika.connect(changed.amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue("backoffice.bookkeeping", ensure=False)

        async def crash(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            await incoming.nack(requeue=True)  # a consumer that crashes on it every time

        tag = await queue.consume(crash)

        async def dead_lettered_by_the_broker() -> bool:
            return len(await dead_letters(changed.amqp_url, "bookkeeping")) == 1

        await eventually(
            dead_lettered_by_the_broker,
            what=f"a dead letter in {dead_queue_name('bookkeeping')}",
        )
        await queue.cancel(tag)


async def _exists(system: System, collection: str, key: str) -> bool:
    return await system.document(collection, key) is not None


def _json(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


async def test_upstream_may_publish_events_and_nothing_else(
    servers: Servers, system: System, settings: Settings
) -> None:
    """The `upstream` role of the README: `accounting.events` only, so no path into a queue."""
    vhost = settings.amqp_url.rsplit("/", 1)[1]
    user, password = f"upstream-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    servers.import_definitions(
        definitions([], vhost, {user: UPSTREAM_PERMISSIONS}, {user: password})
    )
    upstream_url = settings.amqp_url.replace("guest:guest", f"{user}:{password}")
    try:
        await system.start("bookkeeping")
        await declare_as_upstream(upstream_url)
        await publish(upstream_url, [f.details("2026-01-02T08:00")])
        await eventually(lambda: _exists(system, "bookkeeping", KEY), what="the upstream event")
        command = f.set_status("2026-01", "done", "2026-02-02T09:00")
        for exchange, key in (
            ("", "backoffice.bookkeeping"),
            ("backoffice.commands", command.type),
        ):
            async with await aio_pika.connect(upstream_url) as connection:
                channel = await connection.channel(publisher_confirms=True)
                target = (
                    channel.default_exchange
                    if not exchange
                    else await channel.get_exchange(exchange, ensure=False)
                )
                with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                    await target.publish(aio_pika.Message(encode(command)), routing_key=key)
    finally:
        servers.rabbitmqctl("delete_user", user)


async def test_a_forged_command_or_tick_put_straight_into_a_queue_is_dead_lettered(
    system: System,
) -> None:
    """Whoever may write to a queue (here the service's own broker user) cannot act as a
    consultant or move time without the service secret."""
    await system.start("bookkeeping")
    await publish(system.settings.amqp_url, [f.details("2026-01-02T08:00")])
    await eventually(lambda: _exists(system, "bookkeeping", KEY), what="the details")
    command = f.set_status("2026-01", "done", "2026-02-02T09:00")
    tick = f.tick("2026-01-03T00:00")
    async with await aio_pika.connect(system.settings.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for message, headers in (
            (command, {}),
            (command, {"x-source": "backoffice.commands"}),
            (command, {SIGNATURE_HEADER: signature("not-the-service-secret" * 2, encode(command))}),
            (tick, {"x-source": "backoffice.clock"}),
        ):
            await channel.default_exchange.publish(
                aio_pika.Message(encode(message), headers=headers, message_id=message.id),
                routing_key="backoffice.bookkeeping",
            )

    async def all_dead() -> bool:
        # Counted without taking them: taking two of the four while the others are on their way
        # would leave the count short for good.
        return await queue_depth(system.settings.amqp_url, dead_queue_name("bookkeeping")) == 4

    await eventually(all_dead, what="four dead letters")
    assert len(await dead_letters(system.settings.amqp_url, "bookkeeping")) == 4
    assert system.runners["bookkeeping"].counters.by_reason == {"unsigned": 4}
    doc = await system.document("bookkeeping", KEY)
    assert doc is not None and doc["facts"] == {}
