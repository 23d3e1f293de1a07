from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import ReplaceOne, monitoring
from pymongo.errors import WriteError

from services.store import Write
from services.store.mongo import (
    FERRETDB_CHUNK,
    FERRETDB_COMMANDS,
    FERRETDB_UNBOUNDED_COMMANDS,
    MongoStore,
    connect,
)
from tests.harness import Servers
from tests.store_contract import StoreContract, Thing

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
OBJECT_ID = ObjectId("65f0a1b2c3d4e5f601234567")


class TestMongoStore(StoreContract):
    """The contract on the server the project starts. Its racing-writers case holds on FerretDB
    only because of our patch that writes a conditional replace as one statement
    (docs/architecture.md, "Our FerretDB"): FerretDB 1.24 as released reads, then writes by
    _id, so two racing writers can both match."""

    @pytest.fixture
    def store(self, mongo: Any, mongo_db: str) -> MongoStore:
        return MongoStore(mongo[mongo_db])


async def test_one_write_command_of_500_statements_completes_and_the_server_answers(
    mongo: Any, mongo_db: str
) -> None:
    """The server the project starts takes a bulk write larger than FerretDB's connection pool
    (unpatched FerretDB 1.24 deadlocks on it for good; ours closes each statement's query)."""
    target = mongo[mongo_db]["bulk"]
    await target.insert_many([{"_id": f"k{i:03d}", "n": 0} for i in range(500)])
    result = await asyncio.wait_for(
        target.bulk_write(
            [ReplaceOne({"_id": f"k{i:03d}"}, {"n": 1}) for i in range(500)], ordered=False
        ),
        120,
    )
    assert result.matched_count == 500
    assert await target.count_documents({"n": 1}) == 500
    assert (await mongo[mongo_db].command("ping"))["ok"] == 1


async def test_a_write_command_of_conditional_replaces_answers_for_each_statement(
    mongo: Any, mongo_db: str
) -> None:
    """The FerretDB the project builds writes a command of conditional replaces by `_id` in
    one transaction, then runs the statements that replaced nothing one by one as before: the
    answer must be MongoDB's, statement by statement."""
    target = mongo[mongo_db]["tabs"]
    await target.insert_many([{"_id": f"k{i}", "v": 1, "n": 0} for i in range(8)])
    result = await target.bulk_write(
        [
            *(ReplaceOne({"_id": f"k{i}", "v": 1}, {"v": 2, "n": i}) for i in range(5)),
            ReplaceOne({"_id": "k5", "v": 7}, {"v": 8, "n": 5}),  # stale: replaces nothing
            ReplaceOne({"_id": "k6", "v": 1}, {"v": 1, "n": 0}),  # as stored: matched only
            ReplaceOne({"_id": "k9", "v": 1}, {"v": 1, "n": 9}, upsert=True),  # absent
            ReplaceOne({"_id": "k7", "v": 1}, {"v": 2, "n": 7}),
        ],
        ordered=False,
    )
    # FerretDB 1.24 counts a replace by an equal document as a change, with or without ours
    changed = 7 if await MongoStore(mongo[mongo_db]).is_ferretdb() else 6
    assert (result.matched_count, result.modified_count) == (7, changed)
    assert list(result.upserted_ids.values()) == ["k9"]  # FerretDB numbers it 0, not 7
    found = {d["_id"]: (d["v"], d["n"]) async for d in target.find({})}
    assert found == {
        **{f"k{i}": (2, i) for i in range(5)},
        "k5": (1, 0),
        "k6": (1, 0),
        "k7": (2, 7),
        "k9": (1, 9),
    }


async def test_on_postgresql_a_write_command_of_conditional_replaces_commits_once(
    servers: Servers, mongo: Any, mongo_db: str
) -> None:
    """A commit waits for the disk and cost about a quarter of PostgreSQL's CPU a write: the
    FerretDB the project builds commits a command of conditional replaces by `_id` once, not
    once a statement (our patch, docs/architecture.md "Our FerretDB")."""
    if servers.postgres("SELECT 1") is None:
        pytest.skip("no PostgreSQL under the MongoDB server")
    target = mongo[mongo_db]["tabs"]
    await target.insert_many([{"_id": f"k{i:03d}", "v": 1} for i in range(100)])

    def transaction_id() -> int:  # each call takes one
        found = servers.postgres("SELECT pg_current_xact_id()")
        assert found is not None
        return int(found)

    before = transaction_id()
    result = await target.bulk_write(
        [ReplaceOne({"_id": f"k{i:03d}", "v": 1}, {"v": 2}) for i in range(100)], ordered=False
    )
    taken = transaction_id() - before - 1
    assert result.modified_count == 100
    assert taken <= 5, f"{taken} transactions for one command"


@pytest.mark.parametrize(
    ("query", "projection", "order"),
    [
        ({"due_day": "2026-01-02"}, {"due_at": 1}, None),  # the sweep's read
        ({"due_day": "2026-01-02", "partition": 1}, {"due_at": True, "n": 1}, None),
        ({"v": {"$gt": 10}}, {"_id": 0, "v": 1, "extra": 1}, None),
        ({}, {"v": 1}, [("due_at", -1), ("_id", 1)]),  # sorted by a field not projected
        ({"nested.a": 3}, {"v": 1}, None),  # filtered by a field not projected
        ({"_id": {"$in": ["k01", "k05", "k06"]}}, {"due_at": 1, "absent": 1}, None),
        ({"$or": [{"v": 1}, {"v": 2}]}, {"v": 1}, None),
    ],
)
async def test_a_find_of_a_few_fields_answers_as_the_whole_documents_say(
    mongo: Any,
    mongo_db: str,
    query: dict[str, Any],
    projection: dict[str, Any],
    order: list[tuple[str, int]] | None,
) -> None:
    """The FerretDB the project builds has its storage hand over only the fields a find reads
    (its projection, filter and sort): the answer must be the whole documents' (our patch,
    docs/architecture.md "Our FerretDB")."""
    target = mongo[mongo_db]["tabs"]
    documents = []
    for i in range(30):
        document: dict[str, Any] = {
            "_id": f"k{i:02d}",
            "v": i,
            "due_day": f"2026-01-{i % 3 + 1:02d}",
            "partition": i % 2,
            "text": b"\x00\x01" * 600,
            "nested": {"a": i, "b": [1, {"c": i}]},
            "due_at": dt.datetime(2026, 1, 1 + i % 3, 8, i, tzinfo=dt.UTC),
            "n": None,
        }
        if i % 5 == 0:
            del document["due_at"]
        if i % 7 == 0:
            document["extra"] = "x"
        documents.append(document)
    await target.insert_many(documents)

    whole = target.find(query).sort(order) if order else target.find(query)
    included = [k for k, v in projection.items() if v and k != "_id"]
    expected = [
        {k: v for k, v in d.items() if k in included or (k == "_id" and projection.get("_id", 1))}
        async for d in whole
    ]
    found = target.find(query, projection)
    got = [d async for d in (found.sort(order) if order else found)]
    if order is None:  # no order asked for: compare as sets
        expected.sort(key=repr)
        got.sort(key=repr)
    assert got == expected
    assert [list(d) for d in got] == [list(d) for d in expected]  # fields in stored order


async def test_on_postgresql_a_document_of_a_few_kilobytes_stays_in_its_row_as_it_is(
    servers: Servers, mongo: Any, mongo_db: str
) -> None:
    """PostgreSQL compresses a row above 2 KB on every write and, when that does not bring it
    under 2 KB, moves it to the TOAST table; a tab is 2 to 8 KB. The PostgreSQL the project
    starts keeps rows up to a page in their table as they are, in every table FerretDB makes
    (docs/architecture.md, "MongoDB and FerretDB", PostgreSQL)."""
    if servers.postgres("SELECT 1") is None:
        pytest.skip("no PostgreSQL under the MongoDB server")
    target = mongo[mongo_db]["tabs"]
    await target.insert_many(
        [
            {"_id": "compressible", "text": "x" * 5000},
            {"_id": "incompressible", "text": os.urandom(2500).hex()},
        ]
    )
    await target.replace_one({"_id": "compressible"}, {"text": "y" * 5000})
    tables = servers.postgres(
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_schema = '{mongo_db}' AND table_name LIKE 'tabs\\_%'"
    )
    assert tables is not None
    [table] = tables.split()
    name = f'"{mongo_db}"."{table}"'
    found = servers.postgres(
        f"SELECT c.reloptions, pg_relation_size(c.reltoastrelid), "
        f"(SELECT min(pg_column_size(_jsonb)) FROM {name}) "
        f"FROM pg_class c WHERE c.oid = '{name}'::regclass"
    )
    assert found is not None
    options, toasted, smallest = found.strip().split("|")
    assert "toast_tuple_target=8160" in options
    assert int(toasted) == 0  # nothing moved out of the table
    assert int(smallest) >= 5000  # nor compressed


def test_the_ferretdb_the_project_starts_collects_its_garbage_less_often() -> None:
    """Go's collector took about a seventh of FerretDB's CPU at its default target; the FerretDB
    that deploy/servers.sh starts runs at a larger one, with a soft limit on its memory."""
    environments = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes().split(b"\0")
            if Path(command[0].decode()).name.startswith("ferretdb") and (
                b"--listen-addr=127.0.0.1:27017" in command
            ):
                environments.append((process / "environ").read_bytes().split(b"\0"))
        except (OSError, IndexError):
            continue  # gone, or not ours to read
    if not environments:
        pytest.skip("no FerretDB of this machine's on 127.0.0.1:27017")
    [environment] = environments
    assert b"GOGC=400" in environment
    assert b"GOMEMLIMIT=1GiB" in environment


async def test_the_store_knows_which_server_it_speaks_to(mongo: Any, mongo_db: str) -> None:
    info = await mongo.admin.command("buildInfo")
    assert await MongoStore(mongo[mongo_db]).is_ferretdb() == ("ferretdbVersion" in info)


class _Finds(monitoring.CommandListener):
    """Counts the find commands a client sends, by collection."""

    def __init__(self) -> None:
        self.finds: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds.append(event.command["find"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class _Writes(monitoring.CommandListener):
    """Records the write commands a client sends: their statements, and how many were under
    way at most."""

    def __init__(self) -> None:
        self.statements: list[int] = []
        self.under_way = 0
        self.most_under_way = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update"):
            field = "documents" if event.command_name == "insert" else "updates"
            self.statements.append(len(event.command[field]))
            self.under_way += 1
            self.most_under_way = max(self.most_under_way, self.under_way)

    def _ended(self, command_name: str) -> None:
        if command_name in ("insert", "update"):
            self.under_way -= 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event.command_name)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event.command_name)


@pytest.mark.parametrize("built", ["here", "as released"])
async def test_a_save_spreads_its_writes_over_commands_the_server_can_run(
    servers: Servers, mongo_db: str, built: str
) -> None:
    """FerretDB runs a write command's statements one after another, and as released it holds
    a connection per statement until the command ends: a save there spreads its writes evenly
    over a few small commands sent at once. The FerretDB built here closes each statement's
    query and says so: a save's writes then go in two commands, half each, each one
    transaction there. MongoDB takes them in one command."""
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    things = [Thing(name=f"t{i}", day=at.date(), at=at) for i in range(100)]
    writes = [Write(f"a/t{i:03d}", 0, thing) for i, thing in enumerate(things)]
    recorded = _Writes()
    client = connect(servers.mongo_url, 5000, event_listeners=[recorded])
    try:
        store = MongoStore(client[mongo_db])
        ferretdb = await store.is_ferretdb()
        if ferretdb:
            info = await client.admin.command("buildInfo")
            assert info["ferretdbFeatures"]["writeStatementsUnbounded"] is True
        elif built == "as released":
            pytest.skip("MongoDB bounds no write command's statements")
        if built == "as released":  # as a FerretDB without the patch leaves it
            store._statements_unbounded = False
        assert await store.save("things", writes) == set()
        renamed = [Write(w.key, 1, Thing(name="again", day=at.date(), at=at)) for w in writes]
        assert await store.save("things", renamed) == set()
        found = await store.load("things", Thing, [w.key for w in writes])
    finally:
        await client.close()
    assert {key: stored.state.name for key, stored in found.items()} == {
        w.key: "again" for w in writes
    }
    if not ferretdb:
        assert recorded.statements == [100, 100]
    elif built == "here":  # two commands of 50, both at once, twice
        assert recorded.statements == [50] * 2 * 2
        assert recorded.most_under_way == FERRETDB_UNBOUNDED_COMMANDS
    else:  # commands of at most 8, four at once: 32 statements held at most
        assert FERRETDB_COMMANDS * FERRETDB_CHUNK <= 32
        assert sorted(recorded.statements) == sorted(([FERRETDB_CHUNK] * 12 + [4]) * 2)
        assert recorded.most_under_way == FERRETDB_COMMANDS


async def test_many_aggregates_are_read_in_one_find_through_the_id_index(
    servers: Servers, mongo: Any, mongo_db: str
) -> None:
    """The FerretDB the project builds hands an `_id` among a list to its storage, on
    PostgreSQL to the `_id` index, and says so (our patch, docs/architecture.md "Our FerretDB"):
    the store then reads a batch's aggregates in one `find`, as on MongoDB, instead of one
    lookup each."""
    target = mongo[mongo_db]["tabs"]
    await target.insert_many([{"_id": f"a/c{i:04d}", "v": 1, "n": i} for i in range(300)])
    wanted = [f"a/c{i:04d}" for i in range(0, 300, 7)] + ["a/absent"]
    plan = await mongo[mongo_db].command(
        {"explain": {"find": "tabs", "filter": {"_id": {"$in": wanted}}}}
    )
    planned = json.dumps(plan["queryPlanner"], default=str)
    if "Plan" in plan["queryPlanner"]:
        # FerretDB on PostgreSQL hands PostgreSQL the list on the `_id` index's expression (a
        # table this small and fresh PostgreSQL may still read whole; a large one by the index)
        assert plan["filterPushdown"] is True
        assert "._jsonb -> '_id'::text) = ANY" in planned, planned
    elif "winningPlan" in plan["queryPlanner"]:  # MongoDB
        assert "COLLSCAN" not in planned, planned
    finds = _Finds()
    client = connect(servers.mongo_url, 5000, event_listeners=[finds])
    try:
        store = MongoStore(client[mongo_db])
        if await store.is_ferretdb():
            info = await client.admin.command("buildInfo")
            assert info["ferretdbFeatures"]["idInPushdown"] is True
        found = await store._by_ids("tabs", wanted)
    finally:
        await client.close()
    assert sorted(d["_id"] for d in found) == wanted[:-1]
    assert finds.finds == ["tabs"]


async def test_indexes_are_made_where_they_serve_reads_and_only_there(
    mongo: Any, mongo_db: str
) -> None:
    """MongoDB gets the sweep's, the outbox's and the tab's own indexes. FerretDB gets none but
    `_id`'s, which alone its storage uses, and loses those an earlier version made: each costs
    PostgreSQL an entry on every replace and serves no read."""
    store = MongoStore(mongo[mongo_db])
    target = mongo[mongo_db]["tabs"]
    await target.insert_one({"_id": "a/c", "agency_id": "a", "company_id": "c"})
    await target.create_index([("due_at", 1), ("_id", 1)])  # as an earlier version made them
    await target.create_index([("agency_id", 1), ("company_id", 1)])
    await target.create_index([("by_hand", 1)])  # an operator's own is not ours to drop
    await store.ensure_indexes("tabs", [(("agency_id", 1), ("company_id", 1))])
    await store.ensure_indexes("tabs", [(("agency_id", 1), ("company_id", 1))])  # twice is fine

    found = await target.index_information()
    if await store.is_ferretdb():
        assert set(found) == {"_id_", "by_hand_1"}
    else:
        assert set(found) == {
            "_id_",
            "by_hand_1",
            "due_at_1__id_1",
            "outbox_pending_1",
            "agency_id_1_company_id_1",
        }
        assert found["outbox_pending_1"].get("sparse") is True
    assert await target.find_one({"agency_id": "a", "company_id": "c"}) is not None


async def test_a_conditional_replace_answers_as_mongodb_does(mongo: Any, mongo_db: str) -> None:
    """Our FerretDB writes a replace by `_id` and plain values as one guarded statement and
    hands every case the guard does not settle back to its old path: each answer here is
    MongoDB's, whichever path gave it."""
    target = mongo[mongo_db]["conditional"]
    await target.insert_many(
        [
            {"_id": "int", "v": 1, "x": "a"},
            {"_id": "array", "v": [1, 2], "x": "a"},
            {"_id": "double", "v": 1.0, "x": "a"},
            {"_id": "string", "v": "1", "x": "a"},
            {"_id": "long", "v": 2**62, "x": "a"},
            {"_id": "date", "v": EPOCH + dt.timedelta(milliseconds=5), "x": "a"},
            {"_id": "object id", "v": OBJECT_ID, "x": "a"},
        ]
    )

    async def replace(key: str, version: Any, new: dict[str, Any]) -> tuple[int, int]:
        result = await target.replace_one({"_id": key, "v": version}, new)
        return result.matched_count, result.modified_count

    assert await replace("int", 1, {"v": 2, "x": "b"}) == (1, 1)
    assert await replace("int", 1, {"v": 3, "x": "stale"}) == (0, 0)
    assert await replace("int", 2, {"_id": "int", "v": 2, "x": "b"}) == (1, 0)  # equal
    assert await replace("array", 1, {"v": 3, "x": "b"}) == (1, 1)  # an element matches
    assert await replace("double", 1, {"v": 3, "x": "b"}) == (1, 1)  # numbers by value
    assert await replace("string", 1, {"v": 3, "x": "b"}) == (0, 0)  # not by their text
    assert await replace("long", 2**62, {"v": 3, "x": "b"}) == (1, 1)
    # FerretDB's storage holds a date as its milliseconds and an ObjectId as its hex text
    assert await replace("date", 5, {"v": 3, "x": "b"}) == (0, 0)
    assert await replace("object id", str(OBJECT_ID), {"v": 3, "x": "b"}) == (0, 0)
    with pytest.raises(WriteError):
        await replace("int", 2, {"_id": "other", "v": 3})
    upserted = await target.replace_one({"_id": "new", "v": 1}, {"v": 1, "x": "n"}, upsert=True)
    assert upserted.upserted_id == "new"
    assert {d["_id"]: (d["v"], d["x"]) for d in await target.find().to_list()} == {
        "int": (2, "b"),
        "array": (3, "b"),
        "double": (3, "b"),
        "string": ("1", "a"),
        "long": (3, "b"),
        "date": (EPOCH + dt.timedelta(milliseconds=5), "a"),
        "object id": (OBJECT_ID, "a"),
        "new": (1, "n"),
    }
