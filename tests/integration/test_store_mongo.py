from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import ReplaceOne

from services.store.mongo import MongoStore
from tests.store_contract import StoreContract


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


async def test_the_store_knows_which_server_it_speaks_to(mongo: Any, mongo_db: str) -> None:
    info = await mongo.admin.command("buildInfo")
    assert await MongoStore(mongo[mongo_db]).is_ferretdb() == ("ferretdbVersion" in info)


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
