"""Partitioned consumers on the real broker and database: four replicas share four partitions
of one consumer kind, the state equals in-order delivery, and a replica that stops hands its
partitions to the others."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

import aio_pika
import pytest

from consumers.registry import CONSUMERS
from contracts.envelope import Message
from services.partitions import (
    HEARTBEAT_S,
    HEARTBEAT_TTL_S,
    PartitionedConsumer,
    partition_key,
    share,
)
from services.pipeline import Pipeline
from services.repartition import StillRunning, repartition
from services.store.memory import MemoryStore
from services.store.mongo import MongoStore, connect
from services.topology import partition_queue_name
from tests import factories as f
from tests.harness import eventually, publish
from tests.unit.test_pipeline import delivery

WALL = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
VOLATILE = {"_v", "partition", "outbox", "outbox_pending", "listed_version"}  # how it was written


def backlog(companies: int) -> list[Message]:
    """Every company's details, then each month's submission, company after company."""
    names = [f"c-{i:03d}" for i in range(companies)]
    found: list[Message] = [f.details(company_id=n) for n in names]
    for month in range(1, 11):
        for n in names:
            at = f"2026-{month + 1:02d}-0{1 + month % 8}T09:00"
            found.append(f.submitted(f"2026-{month:02d}", at, company_id=n))
    return found


async def in_order(messages: list[Message]) -> dict[str, dict[str, Any]]:
    """The bookkeeping documents that delivering ``messages`` one by one, in order, gives."""
    store = MemoryStore()
    pipeline = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    for message in messages:
        (outcome,) = await pipeline.handle([delivery(message)])
        assert outcome.kind == "applied", outcome
    return {k: _stable(d) for k, d in store.collections["bookkeeping"].items()}


async def ready_in(amqp_url: str, queues: list[str]) -> int:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        found = [await channel.declare_queue(q, passive=True) for q in queues]
        return sum(q.declaration_result.message_count or 0 for q in found)


def _stable(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in VOLATILE}


def test_every_partition_has_one_owner_and_owners_differ_by_at_most_one() -> None:
    for members in (["a"], ["a", "b"], ["c", "a", "b"], [f"r{i}" for i in range(5)]):
        for partitions in (1, 2, 4, 7):
            owned = {m: share(members, m, partitions) for m in members}
            counts = Counter(p for ps in owned.values() for p in ps)
            assert sorted(counts) == list(range(partitions))
            assert set(counts.values()) == {1}
            sizes = [len(ps) for ps in owned.values()]
            assert max(sizes) - min(sizes) <= 1
    assert share(["b", "c"], "a", 4) == [0, 3]  # a replica counts itself in before it is seen
    assert share([], "a", 3) == [0, 1, 2]


def test_the_router_keys_a_message_by_its_aggregate() -> None:
    definition = CONSUMERS["bookkeeping"]
    message = f.submitted("2026-02", "2026-03-01T09:00", company_id="c-7")
    assert partition_key(definition, delivery(message).body) == f"{f.AGENCY}/c-7"
    assert partition_key(definition, b"not json") == ""


async def test_four_replicas_share_four_partitions_and_end_as_in_order_delivery(
    settings: Any, mongo: Any
) -> None:
    split = dataclasses.replace(settings, partitions=4)
    messages = backlog(40)
    expected = await in_order(messages)
    client = connect(split.mongo_url, split.mongo_timeout_ms)
    replicas = [
        PartitionedConsumer(
            CONSUMERS["bookkeeping"], split, MongoStore(client[split.mongo_db]), lambda: WALL
        )
        for _ in range(4)
    ]
    stops = [asyncio.Event() for _ in replicas]
    tasks = [asyncio.create_task(r.run(s)) for r, s in zip(replicas, stops, strict=True)]
    try:
        await eventually(
            lambda: (
                sorted(p for r in replicas for p in r.owned) == [0, 1, 2, 3]
                and all(len(r.owned) == 1 and r.ready for r in replicas)
            ),
            timeout=30,
            what="each replica to own one partition",
        )
        await publish(split.amqp_url, messages)
        collection = client[split.mongo_db]["bookkeeping"]

        async def applied() -> bool:
            documents = await collection.find().to_list()
            return {d["_id"]: _stable(d) for d in documents} == expected

        await eventually(applied, timeout=90, what="the state of in-order delivery")
        documents = await collection.find().to_list()
        assert {d["partition"] for d in documents} == {0, 1, 2, 3}  # the work was shared
        stats = client[split.mongo_db]["consumer_stats"]

        async def counted() -> bool:  # each partition counts in a document of its own
            found = await stats.find().to_list()
            return sum(d.get("applied", 0) for d in found) == len(messages) and {
                d["_id"] for d in found
            } == {f"bookkeeping@p{p}" for p in range(4)}

        await eventually(counted, what="the partitions' counts to add up")
        names = [partition_queue_name("bookkeeping", p) for p in range(4)]
        assert await ready_in(split.amqp_url, names) == 0

        # A replica stops: the others take its partition, and what comes next is applied.
        gone = next(r for r in replicas if r.owned)
        stops[replicas.index(gone)].set()
        await asyncio.wait_for(tasks[replicas.index(gone)], 30)
        left = [r for r in replicas if r is not gone]
        await eventually(
            lambda: (
                sorted(p for r in left for p in r.owned) == [0, 1, 2, 3]
                and all(r.ready for r in left)
            ),
            timeout=30,
            what="the others to take the stopped replica's partition",
        )
        later = [
            f.submitted("2026-11", "2026-11-20T09:00", company_id=f"c-{i:03d}") for i in range(40)
        ]
        expected = await in_order(messages + later)
        await publish(split.amqp_url, later)
        await eventually(applied, timeout=60, what="the later submissions")
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        await client.close()


async def test_repartitioning_moves_waiting_work_back_and_marks_where_each_key_now_goes(
    settings: Any, mongo: Any
) -> None:
    definition = CONSUMERS["bookkeeping"]
    client = connect(settings.mongo_url, settings.mongo_timeout_ms)
    database = client[settings.mongo_db]
    collection = database["bookkeeping"]
    names = [f"c-{i:03d}" for i in range(20)]

    async def state_is(messages: list[Message]) -> None:
        expected = await in_order(messages)

        async def equal() -> bool:
            found = {d["_id"]: _stable(d) for d in await collection.find().to_list()}
            return found == expected

        await eventually(equal, timeout=60, what="the state of in-order delivery")

    async def running(partitions: int) -> tuple[PartitionedConsumer, asyncio.Event, Any]:
        split = dataclasses.replace(settings, partitions=partitions)
        replica = PartitionedConsumer(definition, split, MongoStore(database), lambda: WALL)
        stop = asyncio.Event()
        task = asyncio.create_task(replica.run(stop))
        await eventually(
            lambda: replica.ready and len(replica.owned) == partitions, what="the replica"
        )
        return replica, stop, task

    try:
        _, stop, task = await running(2)
        sent = [f.details(company_id=n) for n in names]
        await publish(settings.amqp_url, sent)
        await state_is(sent)
        with pytest.raises(StillRunning, match="stop every replica of bookkeeping first"):
            await repartition(settings, database, definition, 3)
        stop.set()
        await asyncio.wait_for(task, 30)

        # Routed under P=2 but not yet applied when the kind stopped.
        waiting = [f.submitted("2026-01", "2026-02-02T09:00", company_id=n) for n in names]
        await publish(settings.amqp_url, waiting, exchange_name="backoffice.bookkeeping.partitions")

        done = await repartition(settings, database, definition, 3)
        assert done.moved_back == len(names) and done.removed == []
        marks = {d["_id"]: d["partition"] for d in await collection.find().to_list()}
        assert set(marks.values()) == {0, 1, 2}

        _, stop, task = await running(3)
        sent += waiting
        await state_is(sent)
        later = [f.submitted("2026-02", "2026-03-02T09:00", company_id=n) for n in names]
        await publish(settings.amqp_url, later)
        await state_is(sent + later)
        # Each aggregate was written again by the partition its key goes to: the one marked.
        assert {d["_id"]: d["partition"] for d in await collection.find().to_list()} == marks
        stop.set()
        await asyncio.wait_for(task, 30)

        done = await repartition(settings, database, definition, 1)
        assert sorted(done.removed) == [partition_queue_name("bookkeeping", p) for p in range(3)]
        assert not await collection.count_documents({"partition": {"$exists": True}})
    finally:
        await client.close()


async def test_a_partitioned_kind_declares_exactly_its_exchange_queues_and_bindings(
    settings: Any, mongo: Any, servers: Any
) -> None:
    """No argument beyond the queue type and the single active consumer; the tunables come
    from the policy; ticks reach the partitions, not the intake."""
    split = dataclasses.replace(settings, partitions=2)
    client = connect(split.mongo_url, split.mongo_timeout_ms)
    replica = PartitionedConsumer(
        CONSUMERS["bookkeeping"], split, MongoStore(client[split.mongo_db]), lambda: WALL
    )
    stop = asyncio.Event()
    task = asyncio.create_task(replica.run(stop))
    vhost = split.amqp_url.rsplit("/", 1)[1]
    try:
        await eventually(lambda: replica.ready and replica.owned == [0, 1], what="the replica")

        def rows(*args: str) -> list[list[str]]:
            output = servers.rabbitmqctl(*args, "-p", vhost)
            return [line.split("\t") for line in output.splitlines()[1:] if line]

        exchanges = {r[0]: r[1:] for r in rows("list_exchanges", "name", "type", "arguments")}
        assert exchanges["backoffice.bookkeeping.partitions"] == ["x-consistent-hash", "[]"]
        queues = {r[0]: r[1:] for r in rows("list_queues", "name", "arguments", "policy")}
        for p in (0, 1):
            arguments, policy = queues[f"backoffice.bookkeeping.p{p}"]
            assert "x-queue-type" in arguments and "x-single-active-consumer" in arguments
            assert arguments.count('"x-') == 2  # those two and nothing else
            assert policy == "backoffice.bookkeeping.partitions"
        bindings = {
            (r[0], r[1], r[2])
            for r in rows("list_bindings", "source_name", "destination_name", "routing_key")
        }
        assert ("backoffice.clock", "backoffice.bookkeeping.p0", "") in bindings
        assert ("backoffice.bookkeeping.partitions", "backoffice.bookkeeping.p1", "1") in bindings
        assert ("backoffice.clock", "backoffice.bookkeeping", "") not in bindings
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.close()


async def test_the_partitions_of_a_replica_that_stopped_beating_are_taken_after_the_ttl(
    settings: Any, mongo: Any
) -> None:
    """A replica that died says nothing: its heartbeat, seen now, stops. The live one owns
    only its share until the heartbeat is older than the TTL, then all of them."""
    split = dataclasses.replace(settings, partitions=2)
    client = connect(split.mongo_url, split.mongo_timeout_ms)
    store = MongoStore(client[split.mongo_db])
    wall = dt.datetime.now(dt.UTC)
    dead = {"_id": "zz-dead", "consumer": "bookkeeping", "seen_at": wall}
    await store.record("replicas", [dead])
    replica = PartitionedConsumer(CONSUMERS["bookkeeping"], split, store)
    stop = asyncio.Event()
    task = asyncio.create_task(replica.run(stop))
    try:
        await eventually(lambda: len(replica.owned) == 1, what="its share beside the other")
        await eventually(
            lambda: replica.owned == [0, 1],
            timeout=HEARTBEAT_TTL_S + 3 * HEARTBEAT_S,
            what="the dead replica's partition",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.close()
