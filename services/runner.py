"""Runs one consumer on RabbitMQ: batches, acks after the write, retries, dead letters.

For each batch of deliveries the pipeline decides an outcome; the runner then
- dead-letters invalid messages (with the reason in the headers),
- answers a command's sender, when it asks for an answer (``reply_to``): applied, or rejected
  with the reason (a refused command is the consultant's 4xx, not an operator's problem),
- sends failed ones to the retry queue of their attempt, or dead-letters them after the last,
- and only when every such publish is confirmed by the broker, acks the whole batch at once.
A crash anywhere before the ack means redelivery, which the rulebooks absorb as a duplicate.

When the store does not answer (or not in time), the runner does not retry message by message,
which would only pile more work on a server that may still be busy with the abandoned requests:
it holds the batch, and so consumes no more than its prefetch, asks the store with a ping until
it answers, and then applies the same batch again. It says so once when the store goes, and once
when it is back. A clock tick starts a sweep that the runner advances between batches.

As many batches are under way as the prefetch holds (three by default): the next one is handed
to the pipeline while the store still writes those before (services/pipeline.py says how they
share aggregates), and it is settled and acked only after them: an ack covers every delivery
before it on the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel

from consumers.registry import ConsumerDefinition
from contracts.fields import format_instant
from contracts.outbound import EVENTS_EXCHANGE, encode_outbound
from services.committed import Outgoing, commit_all, open_transactional
from services.config import Settings
from services.expiry import Expiry
from services.pipeline import (
    COMMAND_OUTCOMES,
    COMMAND_TYPES,
    UNAVAILABLE,
    Delivery,
    Outcome,
    Pipeline,
    Source,
    peek,
)
from services.receiver import Incoming, ReceiverError, open_receiver
from services.signing import SIGNATURE_HEADER, is_signed
from services.store import Store, is_unavailable
from services.supervise import amqp_session, supervise, wait_or_stop
from services.topology import (
    ACCOUNTING_EXCHANGE,
    CLOCK_EXCHANGE,
    COMMANDS_EXCHANGE,
    dead_queue_name,
    declare_consumer,
    declare_partitions,
    retry_queue_name,
)

SOURCES: dict[str, Source] = {
    ACCOUNTING_EXCHANGE: "event",
    COMMANDS_EXCHANGE: "command",
    CLOCK_EXCHANGE: "clock",
}

T = TypeVar("T")

ATTEMPT_HEADER = "x-attempt"
STORE_PROBE_TIMEOUT_S = 2.0  # how long a ping may take while the store is thought down
STORE_PROBE_MAX_DELAY_S = 15.0
CONSUMER_STATS = "consumer_stats"  # one document per consumer (or partition): its counts
SOURCE_HEADER = "x-source"
# How long a consumer must have had nothing to do before it rewrites documents to clear their
# published outbound messages: never while a backlog is being applied.
IDLE_BEFORE_TIDY_S = 2.0
# Then it clears one aggregate at a time, with a pause between (a message still comes first):
# after a sweep every tab of every kind waits to be cleared. Large steps stopped the process and
# the store long enough to be felt by the API's readers; so did steps of 8 (each written as up
# to 4 commands at once) taken by every consumer of a process in step with the others, as they
# all began when one backlog drained. Each pause is drawn at random around TIDY_PAUSE_S, so the
# consumers' single writes drift apart and a reader waits behind a few of them at most.
TIDY_STEP = 1
TIDY_PAUSE_S = 0.05


def tidy_pause(draw: Callable[[float, float], float] = random.uniform) -> float:
    """The pause before the next step of tidying: from half to one and a half of
    ``TIDY_PAUSE_S``."""
    return draw(TIDY_PAUSE_S / 2, TIDY_PAUSE_S * 3 / 2)


# How long the broker may take to answer a relay's commit; then the channel is dropped and what
# it carried is published again (subscribers drop a repeat by its id).
COMMIT_TIMEOUT_S = 60.0


def stats_consumer(document_id: str) -> str:
    """The consumer a counters document counts for (``NAME`` or ``NAME@p<i>``)."""
    return document_id.split("@", 1)[0]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Counters:
    """What an operator wants to see per consumer; exported as metrics."""

    applied: int = 0
    rejected: int = 0
    retried: int = 0
    dead_lettered: int = 0
    swept: int = 0  # aggregates a clock sweep applied the tick to
    published: int = 0  # outbound messages the broker confirmed
    by_reason: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, int]:
        counts = {
            "applied": self.applied,
            "rejected": self.rejected,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "swept": self.swept,
            "published": self.published,
        }
        counts.update({f"dead_lettered_{code}": n for code, n in self.by_reason.items()})
        return counts


class ConsumerRunner:
    def __init__(
        self,
        definition: ConsumerDefinition,
        settings: Settings,
        store: Store,
        wall_clock: Callable[[], dt.datetime] = utc_now,
        partition: int | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.partition = partition  # of a partitioned consumer (services/partitions.py)
        self.pipeline = Pipeline(
            definition,
            store,
            wall_clock,
            cache_size=settings.cache_size,
            secret=settings.service_secret,
            max_clock_skew=dt.timedelta(seconds=settings.max_clock_skew_s),
            partition=partition,
        )
        self.counters = Counters()
        # The outcomes of commands this consumer owns, recorded for polling callers: kept
        # BACKOFFICE_COMMAND_RECORDS_TTL_S, then deleted.
        self.expiry = (
            Expiry(
                store,
                COMMAND_OUTCOMES,
                "at",
                dt.timedelta(seconds=settings.command_records_ttl_s),
                wall_clock,
            )
            if definition.handles & COMMAND_TYPES
            else None
        )
        self.wall_clock = wall_clock
        self.consuming = asyncio.Event()  # set while a session consumes; for readiness
        self.store_down = False  # set while a batch waits for the store to answer again
        self.log = structlog.get_logger().bind(consumer=definition.name)
        if partition is not None:
            self.log = self.log.bind(partition=partition)
        self._prepared = False
        self._behind = False  # the last batch was full: the next one waits a little to fill
        self._tidying = False  # idle, and clearing published outbound messages step by step
        self._published: dict[str, int] = {}  # counts already added to the shared counters
        self._relaying: asyncio.Task[None] | None = None
        self._relay_lock = asyncio.Lock()
        self._relay_channel: aiormq.Channel | None = None  # in transaction mode
        # The batches handed over and not yet settled, oldest first.
        self._under_way: deque[asyncio.Task[bool]] = deque()
        self._store_watch: asyncio.Task[bool] | None = None  # pings while the store is down
        self._counting = asyncio.Lock()  # one counters' write (and expiry) at a time
        self._counting_task: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await supervise(self._session, stop, self.log)

    async def _session(self, stop: asyncio.Event) -> None:
        async with amqp_session(self.settings) as (channel, closed):
            queue = await declare_consumer(channel, self.definition, self.settings)
            if self.partition is not None:
                partitions = await declare_partitions(channel, self.definition, self.settings)
                queue = partitions[self.partition]
            await self._prepare()
            await self._recover(channel)  # what a writer before us left unpublished
            recovered_on_first_batch = False
            inbox: asyncio.Queue[Incoming] = asyncio.Queue()
            # Deliveries come on a connection of their own (services/receiver.py), which ends
            # the session too when it closes.
            receiver = await open_receiver(
                self.settings.amqp_url, queue.name, self.settings.prefetch, inbox.put_nowait, closed
            )
            self.consuming.set()
            self.log.info("consuming", queue=queue.name)
            try:
                while not (stop.is_set() or closed.is_set()):
                    while self._under_way and self._under_way[0].done():
                        await self._under_way.popleft()  # raises what failed it
                    under_way = self._under_way[-1] if self._under_way else None
                    if self.pipeline.sweeping:  # batches first, a sweep step between them
                        batch = self._drain(inbox)
                    elif self._outbox_work:
                        idle = tidy_pause() if self._tidying else IDLE_BEFORE_TIDY_S
                        batch = await self._next_batch(inbox, stop, closed, idle, under_way)
                        if not batch and under_way is not None and under_way.done():
                            continue  # it may have started a sweep: look again
                        if not batch and not stop.is_set():
                            # Nothing else to do for a while: publish what failed before, and
                            # clear what was published from the stored documents.
                            await self._finish_under_way()
                            self._kick_relay(channel)
                            await self._relayed()
                            await self._tidy()
                            self._tidying = True
                            continue
                    else:
                        batch = await self._next_batch(inbox, stop, closed, None, under_way)
                    if batch:
                        self._tidying = False
                    if batch and not recovered_on_first_batch:
                        # A replica that stood by gets its first batch once it is the active
                        # one: the one before it may have left messages unpublished.
                        recovered_on_first_batch = True
                        await self._recover(channel)
                    if batch:
                        await self._hand_over(channel, batch, stop)
                    if self.pipeline.sweeping and not stop.is_set():
                        await self._finish_under_way()
                        await self._sweep_step(stop)
                        self._kick_relay(channel)
                if stop.is_set() and not closed.is_set():
                    # Take no more, then finish and ack what we already hold; what the store
                    # cannot take in time goes back to the queue.
                    with contextlib.suppress(ReceiverError, TimeoutError):  # closing anyway
                        await receiver.cancel()
                    await self._finish_under_way()
                    while batch := self._drain(inbox):
                        if not await self._process(channel, batch, stop):
                            await self._requeue(self._drain_all(inbox))
                    self._kick_relay(channel)
                    await self._relayed()
                    self.log.info("stopped consuming")
            finally:
                self.consuming.clear()
                while self._under_way:  # they fail soon, on a channel gone with its session
                    under_way = self._under_way.popleft()
                    await asyncio.wait({under_way})
                    if not under_way.cancelled() and under_way.exception() is not None:
                        self.log.warning(
                            "a batch under way failed with its session; it comes again",
                            error=str(under_way.exception()),
                        )
                if receiver.error is not None:  # the broker or the socket ended it, not us
                    self.log.warning("deliveries stopped", error=str(receiver.error))
                await receiver.close()  # the broker takes back what was not acked
                await self._relayed()
                await self._counted()
                self._relay_channel = None  # closes with the session's connection
                self.pipeline.forget()

    async def _recover(self, channel: AbstractChannel) -> None:
        try:
            found = await self.pipeline.recover_outboxes()
        except Exception as error:  # loading such an aggregate later finds them too
            self.log.warning("could not look for unpublished outbound messages", error=str(error))
            return
        if found:
            self.log.info("publishing outbound messages left unpublished", aggregates=found)
            await self._relay(channel)

    def _kick_relay(self, channel: AbstractChannel) -> None:
        """Publishes the outboxes in the background, while the next batch is applied: a
        batch's writes need not wait for the broker's commit of the one before."""
        if self._relaying is None or self._relaying.done():
            self._relaying = asyncio.create_task(self._relay_all(channel))

    async def _relay_all(self, channel: AbstractChannel) -> None:
        try:
            while self.pipeline.outbox.has_unpublished and not channel.is_closed:
                if not await self._relay(channel):
                    break  # what failed waits for the next batch's relay
        except Exception as error:  # kept in the documents: the next session publishes them
            self.log.warning("could not publish outbound messages", error=str(error))

    @property
    def _outbox_work(self) -> bool:
        """Outbound messages to publish (again) or to clear from the documents, or a relay
        under way, which may yet fail and leave its messages to publish again: then the loop
        must not wait for the next message without end."""
        outbox = self.pipeline.outbox
        relaying = self._relaying is not None and not self._relaying.done()
        return outbox.has_untidy or outbox.has_unpublished or relaying

    async def _hand_over(
        self, channel: AbstractChannel, batch: Sequence[Incoming], stop: asyncio.Event
    ) -> None:
        """Hands ``batch`` to the pipeline, after the batches under way; returns once there is
        room for the next one. As many are under way as the prefetch holds: more could not
        fill before the oldest is acked."""
        earlier = self._under_way[-1] if self._under_way else None
        self._under_way.append(asyncio.create_task(self._process(channel, batch, stop, earlier)))
        if len(self._under_way) >= max(1, self.settings.prefetch // self.settings.batch_size):
            await self._under_way.popleft()  # raises what failed it

    async def _finish_under_way(self) -> None:
        """Waits for the batches handed over to be settled (raising what failed the first)."""
        while self._under_way:
            await self._under_way.popleft()

    async def _relayed(self) -> None:
        """Waits for the relay under way, if any."""
        if self._relaying is not None:
            await asyncio.wait({self._relaying})

    async def _relay(self, channel: AbstractChannel) -> bool:
        """Publishes what the writes put in outboxes, in one transaction, and reports to the
        pipeline what the broker took; if it did not take all of it, it all waits for the next
        relay or session. False then."""
        async with self._relay_lock:  # one transaction at a time on the relay's channel
            items = self.pipeline.outbox.take()
            if not items:
                return True
            sends = [
                Outgoing(
                    EVENTS_EXCHANGE,
                    message.routing_key,
                    encode_outbound(message),
                    message.id,
                    message.type,
                )
                for item in items
                for message in item.messages
            ]
            try:
                # Straight on the AMQP channel, a batch in one write and one commit
                # (services/committed.py): a backlog of submissions publishes one status change
                # per message applied.
                await commit_all(await self._transactional(channel), sends, COMMIT_TIMEOUT_S)
            except Exception as error:  # none of them is known to be taken
                self.pipeline.outbox.put_back(items)
                self.log.warning(
                    "outbound messages not published; kept for the next try",
                    count=len(sends),
                    error=str(error) or type(error).__name__,
                )
                return False
            self.pipeline.published(items)
            self.counters.published += len(sends)
            return True

    async def _transactional(self, channel: AbstractChannel) -> aiormq.Channel:
        """The relay's channel, opened again after an error closed it."""
        if self._relay_channel is None or self._relay_channel.is_closed:
            raw = await channel.get_underlay_channel()
            self._relay_channel = await open_transactional(raw)  # type: ignore[arg-type]
        return self._relay_channel

    async def _tidy(self) -> None:
        try:
            await self.pipeline.tidy(TIDY_STEP)
        except Exception as error:  # harmless: a restart publishes them again, same ids
            self.log.warning("could not clear published outbound messages", error=str(error))

    async def _prepare(self) -> None:
        if self._prepared:
            return
        try:
            listed = await self.pipeline.prepare()
            if listed:
                self.log.info("listed the aggregates stored before the listings", listed=listed)
            if self.expiry is not None:
                await self.expiry.prepare()
            self._prepared = True
        except Exception as error:  # indexes and listings help readers; consuming goes first
            self.log.warning("could not prepare the store yet", error=str(error))

    async def _next_batch(
        self,
        inbox: asyncio.Queue[Incoming],
        stop: asyncio.Event,
        closed: asyncio.Event,
        idle_s: float | None = None,
        under_way: asyncio.Task[bool] | None = None,
    ) -> list[Incoming]:
        """The next batch; empty when stopping, when nothing came within ``idle_s``, or when
        the batch ``under_way`` ended first (a tick in it may have started a sweep)."""
        getter = asyncio.ensure_future(inbox.get())
        stopper = asyncio.ensure_future(stop.wait())
        closer = asyncio.ensure_future(closed.wait())
        waits: set[asyncio.Future[Any]] = {getter, stopper, closer}
        if under_way is not None:
            waits.add(under_way)
        await asyncio.wait(waits, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        closer.cancel()
        if not getter.done():
            getter.cancel()
            return []
        batch = [getter.result()]
        # Wait for more only while behind (the batch before was full): then a short wait fills
        # the batch and saves writes. A consumer that keeps up hands a lone message (a
        # consultant's command, say) over at once; under load its batches fill by themselves,
        # with what arrives while the one before is written.
        linger_s = self.settings.batch_linger_ms / 1000 if self._behind else 0.0
        deadline = asyncio.get_running_loop().time() + linger_s
        while len(batch) < self.settings.batch_size:
            if not inbox.empty():
                batch.append(inbox.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or stop.is_set():
                break
            try:
                batch.append(await asyncio.wait_for(inbox.get(), remaining))
            except TimeoutError:
                break
        self._behind = len(batch) >= self.settings.batch_size
        return batch

    def _drain(self, inbox: asyncio.Queue[Incoming]) -> list[Incoming]:
        batch: list[Incoming] = []
        while not inbox.empty() and len(batch) < self.settings.batch_size:
            batch.append(inbox.get_nowait())
        return batch

    @staticmethod
    def _drain_all(
        inbox: asyncio.Queue[Incoming],
    ) -> list[Incoming]:
        held = []
        while not inbox.empty():
            held.append(inbox.get_nowait())
        return held

    async def _requeue(self, held: Sequence[Incoming]) -> None:
        for incoming in held:
            await incoming.nack(requeue=True)
        if held:
            self.log.warning("returned unapplied messages to the queue", count=len(held))

    async def _process(
        self,
        channel: AbstractChannel,
        batch: Sequence[Incoming],
        stop: asyncio.Event,
        earlier: asyncio.Task[bool] | None = None,
    ) -> bool:
        """Applies and settles ``batch`` after the ``earlier`` batch, which may still be under
        way; False if stopping left it unapplied (requeued)."""
        deliveries = [
            Delivery(
                m.body,
                self._source(m),
                m.routing_key or "",
                (m.headers or {}).get(SIGNATURE_HEADER),
            )
            for m in batch
        ]
        while True:
            outcomes = await self._or_stop(self.pipeline.handle(deliveries), stop)
            unavailable = next((o for o in outcomes or () if o.code == UNAVAILABLE), None)
            if outcomes is not None and unavailable is None:
                break
            if outcomes is None or not await self._await_store(stop, unavailable):
                await self._requeue(batch)
                return False
        if not await self._record_dead_commands(batch, outcomes, stop):
            await self._requeue(batch)
            return False
        if earlier is not None:
            await asyncio.wait({earlier})
            if earlier.cancelled() or earlier.exception() is not None:
                # Its deliveries may be unacknowledged still, and our ack would take them too.
                await self._requeue(batch)
                return False
        for incoming, outcome in zip(batch, outcomes, strict=True):
            await self._settle(channel, incoming, outcome)
        await batch[-1].ack(multiple=True)
        self._kick_relay(channel)
        self._kick_counters()
        await self._expire()
        return True

    def _dead_lettered(self, incoming: Incoming, outcome: Outcome) -> bool:
        if outcome.kind == "invalid":
            return True
        return outcome.kind == "failed" and _attempt(incoming) >= self.settings.max_attempts

    async def _record_dead_commands(
        self,
        batch: Sequence[Incoming],
        outcomes: Sequence[Outcome],
        stop: asyncio.Event,
    ) -> bool:
        """Records an outcome for each command of the API that is about to be dead-lettered,
        so a caller polling for it hears that it failed instead of `pending` until it gives up.
        Only a command the API signed counts: a forged one could name a real command's id.
        False if a stop came before the store took them."""
        at = self.wall_clock()
        records = []
        for incoming, outcome in zip(batch, outcomes, strict=True):
            if not self._dead_lettered(incoming, outcome):
                continue  # the common case: no signature to check
            if not is_signed(
                self.settings.service_secret,
                incoming.body,
                (incoming.headers or {}).get(SIGNATURE_HEADER),
            ):
                continue
            seen = peek(incoming.body)
            if seen.get("type") not in COMMAND_TYPES or "id" not in seen:
                continue
            code = "retries_exhausted" if outcome.kind == "failed" else outcome.code
            records.append(
                {
                    "_id": seen["id"],
                    "type": seen["type"],
                    "agency_id": seen.get("agency_id"),
                    "company_id": seen.get("company_id"),
                    "status": "failed",
                    "code": code,
                    "reason": f"dead-lettered in {dead_queue_name(self.definition.name)}"
                    f" ({code}): {outcome.reason}",
                    "at": at,
                }
            )

        async def write() -> bool:
            await self.pipeline.store.record(COMMAND_OUTCOMES, records)
            return True

        while records:
            try:
                return await self._or_stop(write(), stop) is not None
            except Exception as error:
                failure = Outcome("failed", reason=f"{type(error).__name__}: {error}")
                if not await self._await_store(stop, failure):
                    return False
        return True

    async def _expire(self) -> None:
        if self.expiry is None:
            return
        try:
            async with self._counting:
                deleted = await self.expiry.purge_if_due()
        except Exception as error:  # the next batch tries again
            self.log.warning("could not delete expired command outcomes", error=str(error))
            return
        if deleted:
            self.log.info("deleted expired command outcomes", count=deleted)

    async def _or_stop(self, step: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
        """What ``step`` returns; None if a stop came and it did not finish within the grace."""
        work = asyncio.ensure_future(step)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not work.done():
            await asyncio.wait({work}, timeout=self.settings.shutdown_grace_s)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return None
        return work.result()

    async def _await_store(self, stop: asyncio.Event, failure: Outcome | None) -> bool:
        """Waits until the store answers a ping; False if a stop came first. The batches under
        way wait on one watch: one ping at a time, and one line each way in the log."""
        if self._store_watch is None or self._store_watch.done():
            self._store_watch = asyncio.create_task(self._watch_store(stop, failure))
        return await asyncio.shield(self._store_watch)

    async def _watch_store(self, stop: asyncio.Event, failure: Outcome | None) -> bool:
        if not self.store_down:
            self.store_down = True
            self.log.error(
                "store unavailable; holding messages until it answers",
                error=failure.reason if failure else "",
            )
        delay = 0.5
        while not stop.is_set():
            await wait_or_stop(stop, delay)
            try:
                await asyncio.wait_for(self.pipeline.store.ping(), STORE_PROBE_TIMEOUT_S)
            except Exception:
                delay = min(delay * 2, STORE_PROBE_MAX_DELAY_S)
                continue
            self.store_down = False
            self.log.info("store available again; resuming")
            return True
        return False

    async def _sweep_step(self, stop: asyncio.Event) -> None:
        try:
            applied = await self._or_stop(self.pipeline.sweep_step(), stop)
        except Exception as error:
            failure = Outcome("failed", reason=f"{type(error).__name__}: {error}")
            if is_unavailable(error):
                await self._await_store(stop, failure)
            else:  # the next tick starts it again
                self.log.warning("sweep failed; the next tick retries it", error=failure.reason)
                self.pipeline.sweeper.forget()
            return
        if applied:
            self.counters.swept += applied
            self.log.debug("swept", aggregates=applied)
            self._kick_counters()

    @property
    def _stats_id(self) -> str:
        """The counters' document: one per consumer, or per partition of a partitioned one,
        so that the partitions' writers do not race for one document. A partition's writer can
        still overlap with the next for a moment when a replica hands it over; the store adds
        counts so that neither is lost then (on FerretDB, where ``$inc`` is a read then a write,
        by a guarded replace). Readers add them up by ``stats_consumer``."""
        name = self.definition.name
        return name if self.partition is None else f"{name}@p{self.partition}"

    def _kick_counters(self) -> None:
        """Adds the counts to the shared counters in the background: a batch's ack, and so
        the next batch, does not wait for that write (it held them up for 8 % of a backlog's
        time, docs/benchmarks.md (20)). The task goes on while counts change."""
        if self._counting_task is None or self._counting_task.done():
            self._counting_task = asyncio.create_task(self._publish_counters())

    async def _counted(self) -> None:
        """Waits for the counters' write under way, if any."""
        if self._counting_task is not None:
            await asyncio.wait({self._counting_task})

    async def _publish_counters(self) -> None:
        """Adds the counts since the last time to the consumer's shared counters (/metrics),
        until none is left; one write at a time, so that no two writes add the same counts."""
        while not self.store_down:  # counters must never hold up messages: added up next time
            async with self._counting:
                now = self.counters.snapshot()
                delta = {k: v - self._published.get(k, 0) for k, v in now.items()}
                delta = {k: v for k, v in delta.items() if v}
                if not delta:
                    return
                try:
                    await asyncio.wait_for(
                        self.pipeline.store.increment(CONSUMER_STATS, self._stats_id, delta),
                        STORE_PROBE_TIMEOUT_S,
                    )
                    self._published = now
                except Exception as error:
                    self.log.warning("could not update counters", error=str(error))
                    return

    @staticmethod
    def _source(incoming: Incoming) -> Source | None:
        if incoming.exchange in SOURCES:
            return SOURCES[incoming.exchange]
        # Back from a retry queue: the source it first came through travels in a header.
        header = (incoming.headers or {}).get(SOURCE_HEADER)
        return SOURCES.get(str(header)) if header else None

    async def _settle(self, channel: AbstractChannel, incoming: Incoming, outcome: Outcome) -> None:
        attempt = _attempt(incoming)
        log = self._message_log(incoming, outcome, attempt)
        if outcome.kind == "applied":
            self.counters.applied += 1
            log.info("applied", **outcome.detail)
        elif outcome.kind == "rejected":
            self.counters.rejected += 1
            log.warning("rejected", reason=outcome.reason)
        elif outcome.kind == "failed" and attempt < self.settings.max_attempts:
            delay = self.settings.retry_delays[attempt - 1]
            await self._publish_copy(
                channel,
                incoming,
                retry_queue_name(self.definition.name, delay),
                {ATTEMPT_HEADER: attempt + 1, "x-last-error": outcome.reason},
                expires_in_s=delay,
            )
            self.counters.retried += 1
            log.warning("retry scheduled", error=outcome.reason, retry_in_s=delay)
        else:
            code = "retries_exhausted" if outcome.kind == "failed" else outcome.code
            reason = (
                f"gave up after {attempt} attempts: {outcome.reason}"
                if outcome.kind == "failed"
                else outcome.reason
            )
            await self._publish_copy(
                channel,
                incoming,
                dead_queue_name(self.definition.name),
                {
                    "x-reason": reason,
                    "x-reason-code": code,
                    "x-consumer": self.definition.name,
                    ATTEMPT_HEADER: attempt,
                    "x-dead-lettered-at": format_instant(utc_now()),
                },
            )
            self.counters.dead_lettered += 1
            self.counters.by_reason[code] = self.counters.by_reason.get(code, 0) + 1
            log.error("dead-lettered", reason_code=code, reason=reason)
        if incoming.reply_to and outcome.kind != "failed":
            await self._reply(channel, incoming, outcome)

    async def _reply(self, channel: AbstractChannel, incoming: Incoming, outcome: Outcome) -> None:
        answer = {
            "id": outcome.message.id if outcome.message else incoming.message_id,
            "consumer": self.definition.name,
            "status": outcome.kind,
            "code": outcome.code,
            "reason": outcome.reason,
        }
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(answer).encode(),
                content_type="application/json",
                correlation_id=incoming.correlation_id or incoming.message_id,
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            ),
            routing_key=incoming.reply_to or "",
        )

    async def _publish_copy(
        self,
        channel: AbstractChannel,
        incoming: Incoming,
        queue: str,
        extra_headers: dict[str, Any],
        expires_in_s: float | None = None,
    ) -> None:
        """Publishes a copy of ``incoming`` to ``queue``. A retry copy expires after its delay,
        and the retry queue's policy then sends it back to the main queue."""
        headers: dict[str, Any] = dict(incoming.headers or {})
        headers.setdefault("x-original-exchange", incoming.exchange or "")
        headers.setdefault("x-original-routing-key", incoming.routing_key or "")
        source = self._source(incoming)
        if source is not None:
            headers[SOURCE_HEADER] = next(k for k, v in SOURCES.items() if v == source)
        headers.update(extra_headers)
        copy = aio_pika.Message(
            incoming.body,
            headers=headers,
            content_type=incoming.content_type,
            message_id=incoming.message_id,
            timestamp=incoming.timestamp,
            # A command retried later still answers its sender, if it still waits.
            reply_to=incoming.reply_to,
            correlation_id=incoming.correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            expiration=expires_in_s,
        )
        await channel.default_exchange.publish(copy, routing_key=queue)

    def _message_log(
        self, incoming: Incoming, outcome: Outcome, attempt: int
    ) -> structlog.typing.FilteringBoundLogger:
        """The log of one message, with what can be read of it even when it did not decode
        (an operator then sees which company an invalid event was about)."""
        message = outcome.message
        seen = {} if message else peek(incoming.body)
        return self.log.bind(  # type: ignore[no-any-return]
            event_id=message.id if message else seen.get("id", incoming.message_id),
            type=message.type if message else seen.get("type", incoming.routing_key),
            agency_id=getattr(message, "agency_id", None) or seen.get("agency_id"),
            company_id=getattr(message, "company_id", None) or seen.get("company_id"),
            attempt=attempt,
        )


def _attempt(incoming: Incoming) -> int:
    value = (incoming.headers or {}).get(ATTEMPT_HEADER, 1)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1
