"""``python -m services show``: a stored document, read from the server the project starts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from consumers.bookkeeping import apply
from services.__main__ import main
from services.store.mongo import MongoStore
from services.store.port import Write
from tests.factories import details


async def test_show_prints_a_stored_tab_decoded_and_names_a_missing_one(
    servers: Any, mongo: Any, mongo_db: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    tab = apply(None, details(), details().occurred_at)
    await MongoStore(mongo[mongo_db]).save("bookkeeping", [Write("a-1/c-1", 0, tab)])
    monkeypatch.setenv("BACKOFFICE_MONGO_URL", servers.mongo_url)
    monkeypatch.setenv("BACKOFFICE_MONGO_DB", mongo_db)

    # The command runs an event loop of its own, so it runs in a thread beside the test's.
    assert await asyncio.to_thread(main, ["show", "bookkeeping", "a-1/c-1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["_id"] == "a-1/c-1" and shown["_v"] == 1
    assert shown["periods"] == msgspec.json.decode(msgspec.json.encode(tab.periods))
    assert shown["periods"]  # the rows, decoded from the bytes the store keeps

    assert await asyncio.to_thread(main, ["show", "bookkeeping", "a-1/nobody"]) == 1
    assert "no document 'a-1/nobody' in bookkeeping" in capsys.readouterr().err
