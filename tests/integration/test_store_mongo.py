from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import ReplaceOne

from services.store.mongo import MongoStore
from tests.store_contract import StoreContract


class TestMongoStore(StoreContract):
    @pytest.fixture
    def store(self, mongo: Any, mongo_db: str) -> MongoStore:
        return MongoStore(mongo[mongo_db])

    async def test_racing_writers_exactly_one_wins(self, store: MongoStore) -> None:
        info = await store.database.client.admin.command("buildInfo")
        try:
            await super().test_racing_writers_exactly_one_wins(store)
        except AssertionError:
            if "ferretdbVersion" not in info:
                raise
            # FerretDB 1.24 runs a filtered replace as a read, then a write by _id: two racing
            # writers can both match. This is why each consumer queue has a single active
            # consumer (docs/architecture.md, "One writer per aggregate").
            pytest.xfail("FerretDB's filtered replace is not atomic")


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
