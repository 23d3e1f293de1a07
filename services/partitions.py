"""Partitioned work: P queues per consumer kind, each with one writer, shared by the replicas.

A consumer's main queue has a single active consumer, so one process applies all its work
however many replicas run. With ``BACKOFFICE_PARTITIONS=P`` > 1 that queue becomes the intake:

- the **router** (one active per kind, on the intake) reads each message's aggregate key and
  republishes the message, unchanged but for its routing key, to the kind's consistent-hash
  exchange, which sends every message of one aggregate to the same one of P partition queues.
  The key is in the body only (SPEC §7: AMQP properties may be missing), so no exchange could
  hash it straight from upstream: that one step reads it. The router publishes with confirms and
  acks the intake only for what the broker confirmed, so nothing is lost between the two.
- each **partition** is a queue with a single active consumer: a ``ConsumerRunner`` whose
  pipeline marks what it writes with its partition, and sweeps the clock and recovers outboxes
  among its own aggregates only. So an aggregate still has one writer.
- **replicas share the partitions**: each one writes a heartbeat (``replicas``), reads the live
  replicas of its kind, and consumes the partitions ``p`` with ``p % N == rank`` among the N
  live ones. When a replica stops beating its partitions are taken by the others within
  ``HEARTBEAT_TTL_S``; a partition whose owner has not let go yet is safe, since its queue has
  a single active consumer.

Partitioning is by RabbitMQ's consistent-hash exchange rather than by streams: it works with
AMQP 0-9-1 clients and quorum queues as they are (a super stream needs the stream protocol for
its single active consumer), and adding a partition moves only about 1/P of the aggregates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pamqp.commands import Basic

from consumers.registry import ConsumerDefinition
from contracts.registry import InvalidMessage, decode
from services.config import Settings
from services.pipeline import peek
from services.runner import SOURCE_HEADER, SOURCES, ConsumerRunner, utc_now
from services.store import Store
from services.supervise import amqp_session, supervise, wait_or_stop
from services.topology import declare_consumer, declare_partitions, partition_exchange_name

REPLICAS: Final = "replicas"  # one heartbeat document per replica of a partitioned kind
HEARTBEAT_S: Final = 5.0
FIRST_BEAT_S: Final = 1.0
HEARTBEAT_TTL_S: Final = 15.0
GONE: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # the heartbeat of a replica that stopped
FORGOTTEN_AFTER: Final = dt.timedelta(hours=1)  # when a heartbeat document is deleted


def share(members: Sequence[str], me: str, partitions: int) -> list[int]:
    """The partitions ``me`` consumes among ``members`` (the live replicas of its kind): every
    partition has exactly one owner, and owners differ by at most one partition. A replica that
    does not see itself yet takes all of them (it is alone as far as it knows)."""
    ranked = sorted(set(members) | {me})
    rank = ranked.index(me)
    return [p for p in range(partitions) if p % len(ranked) == rank]


def partition_key(definition: ConsumerDefinition, body: bytes) -> str:
    """The key of the aggregate ``body`` is for; empty when it does not decode (the partition
    that gets it dead-letters it with the reason, as an unpartitioned consumer would)."""
    try:
        message = decode(body)
    except InvalidMessage:
        return ""
    rulebook = definition.rulebook_for(message.type)
    return rulebook.key(message) if rulebook is not None else ""


def replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class PartitionRouter:
    """Moves messages from a partitioned consumer's intake to its partitions."""

    def __init__(self, definition: ConsumerDefinition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self.routed = 0
        self.consuming = asyncio.Event()
        self.log = structlog.get_logger().bind(consumer=definition.name, role="router")

    async def run(self, stop: asyncio.Event) -> None:
        await supervise(self._session, stop, self.log)

    async def _session(self, stop: asyncio.Event) -> None:
        async with amqp_session(self.settings) as (channel, closed):
            intake = await declare_consumer(channel, self.definition, self.settings)
            await declare_partitions(channel, self.definition, self.settings)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            tag = await intake.consume(inbox.put)
            self.consuming.set()
            self.log.info("routing", queue=intake.name, partitions=self.settings.partitions)
            try:
                while not (stop.is_set() or closed.is_set()):
                    batch = await _next_batch(inbox, stop, closed, self.settings.batch_size)
                    if batch:
                        await self._route(channel, batch)
                if stop.is_set() and not closed.is_set():
                    await intake.cancel(tag)
                    while not inbox.empty():
                        await self._route(channel, _drain(inbox, self.settings.batch_size))
            finally:
                self.consuming.clear()

    async def _route(self, channel: AbstractChannel, batch: list[AbstractIncomingMessage]) -> None:
        raw = await channel.get_underlay_channel()
        exchange = partition_exchange_name(self.definition.name)
        results = await asyncio.gather(
            *(
                raw.basic_publish(  # type: ignore[call-arg]  # `wait` is the concrete channel's
                    incoming.body,
                    exchange=exchange,
                    routing_key=partition_key(self.definition, incoming.body),
                    properties=_forwarded(incoming),
                    mandatory=True,  # no partition bound: returned, not dropped
                    wait=False,
                )
                for incoming in batch
            ),
            return_exceptions=True,
        )
        # Ack what the broker confirmed, so that it is in a partition; the rest goes back to
        # the intake and comes again (a repeat is a duplicate the partition absorbs).
        for incoming, result in zip(batch, results, strict=True):
            if isinstance(result, Basic.Ack):
                await incoming.ack()
                self.routed += 1
            else:
                seen = peek(incoming.body)
                self.log.warning(
                    "could not route; back to the intake",
                    error=str(result),
                    event_id=seen.get("id", incoming.message_id),
                    type=seen.get("type", incoming.routing_key),
                    agency_id=seen.get("agency_id"),
                    company_id=seen.get("company_id"),
                )
                await incoming.nack(requeue=True)


def _forwarded(incoming: AbstractIncomingMessage) -> aiormq.spec.Basic.Properties:
    """The properties of ``incoming`` as the partition receives them. The door it came through
    (accounting events, commands, or a retry that came back) travels in ``x-source``, set here
    and never taken from upstream, since the partition cannot see the intake's exchange."""
    headers: dict[str, Any] = dict(incoming.headers or {})
    headers.pop(SOURCE_HEADER, None)
    if incoming.exchange in SOURCES:
        headers[SOURCE_HEADER] = incoming.exchange
    elif (came := (incoming.headers or {}).get(SOURCE_HEADER)) and str(came) in SOURCES:
        headers[SOURCE_HEADER] = str(came)  # set by our own retry copy, on the default exchange
    return aiormq.spec.Basic.Properties(
        content_type=incoming.content_type,
        headers=headers,
        delivery_mode=2,
        message_id=incoming.message_id,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        timestamp=incoming.timestamp,
        message_type=incoming.type,
    )


async def _next_batch(
    inbox: asyncio.Queue[AbstractIncomingMessage],
    stop: asyncio.Event,
    closed: asyncio.Event,
    size: int,
) -> list[AbstractIncomingMessage]:
    getter = asyncio.ensure_future(inbox.get())
    stopper = asyncio.ensure_future(stop.wait())
    closer = asyncio.ensure_future(closed.wait())
    await asyncio.wait({getter, stopper, closer}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    closer.cancel()
    if not getter.done():
        getter.cancel()
        return []
    return [getter.result(), *_drain(inbox, size - 1)]


def _drain(
    inbox: asyncio.Queue[AbstractIncomingMessage], size: int
) -> list[AbstractIncomingMessage]:
    batch: list[AbstractIncomingMessage] = []
    while len(batch) < size and not inbox.empty():
        batch.append(inbox.get_nowait())
    return batch


class PartitionedConsumer:
    """One replica of a partitioned consumer kind: the router (active on one replica) and the
    workers of the partitions this replica owns, which follow the live replicas."""

    def __init__(
        self,
        definition: ConsumerDefinition,
        settings: Settings,
        store: Store,
        wall_clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.store = store
        self.wall_clock = wall_clock
        self.me = replica_id()
        self.router = PartitionRouter(definition, settings)
        self.workers: dict[int, tuple[ConsumerRunner, asyncio.Event, asyncio.Task[None]]] = {}
        self.consuming = self.router.consuming
        self.log = structlog.get_logger().bind(consumer=definition.name, replica=self.me)

    @property
    def owned(self) -> list[int]:
        return sorted(self.workers)

    @property
    def ready(self) -> bool:
        """The router has declared and bound the intake, and every owned partition consumes."""
        return self.consuming.is_set() and all(
            runner.consuming.is_set() for runner, _, _ in self.workers.values()
        )

    async def run(self, stop: asyncio.Event) -> None:
        routing = asyncio.create_task(self.router.run(stop))
        members: list[str] = [self.me]
        beats = 0
        try:
            while not stop.is_set():
                with contextlib.suppress(Exception):  # store away: keep the partitions we have
                    members = await self._beat()
                await self._follow(share(members, self.me, self.settings.partitions))
                beats += 1
                # Replicas started together see each other only from their second beat: make
                # it come soon, so that they share the work from the start.
                await wait_or_stop(stop, FIRST_BEAT_S if beats == 1 else HEARTBEAT_S)
        finally:
            await self._let_go(list(self.workers))
            with contextlib.suppress(Exception):  # gone: the others need not wait for the TTL
                await self.store.record(REPLICAS, [self._heartbeat(GONE)])
            await routing

    def _heartbeat(self, at: dt.datetime) -> dict[str, Any]:
        return {"_id": self.me, "consumer": self.definition.name, "seen_at": at}

    async def _beat(self) -> list[str]:
        now = utc_now()  # the machine's time, whatever clock the rules are given
        await self.store.record(REPLICAS, [self._heartbeat(now)])
        await self.store.delete_before(REPLICAS, "seen_at", now - FORGOTTEN_AFTER)
        found = await self.store.find_plain(REPLICAS, {"consumer": self.definition.name})
        horizon = now - dt.timedelta(seconds=HEARTBEAT_TTL_S)
        return [d["_id"] for d in found if _aware(d["seen_at"]) >= horizon]

    async def _follow(self, wanted: list[int]) -> None:
        for partition in wanted:
            if partition not in self.workers:
                runner = ConsumerRunner(
                    self.definition, self.settings, self.store, self.wall_clock, partition
                )
                stop = asyncio.Event()
                self.workers[partition] = (runner, stop, asyncio.create_task(runner.run(stop)))
                self.log.info("took partition", partition=partition)
        await self._let_go([p for p in self.workers if p not in wanted])

    async def _let_go(self, partitions: list[int]) -> None:
        """Stops the workers of ``partitions``: each finishes and acks its batch, then cancels
        its consumer, and the broker makes the waiting replica the active one."""
        stopping = []
        for partition in partitions:
            found = self.workers.pop(partition, None)
            if found is not None:
                _, stop, task = found
                stop.set()
                stopping.append(task)
                self.log.info("let partition go", partition=partition)
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
