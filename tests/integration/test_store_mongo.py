from __future__ import annotations

from typing import Any

import pytest

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
