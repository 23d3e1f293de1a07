"""``python -m services show``: a stored document, read from the server the project starts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import msgspec

from consumers.bookkeeping import apply
from services.store.mongo import MongoStore
from services.store.port import Write
from tests.factories import details


async def show(servers: Any, mongo_db: str, *args: str) -> tuple[int, str, str]:
    """The command as an operator runs it: its own process (it configures the logs of the
    process it runs in)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "show",
        *args,
        env={
            **os.environ,
            "BACKOFFICE_MONGO_URL": servers.mongo_url,
            "BACKOFFICE_MONGO_DB": mongo_db,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_show_prints_a_stored_tab_decoded_and_names_a_missing_one(
    servers: Any, mongo: Any, mongo_db: str
) -> None:
    tab = apply(None, details(), details().occurred_at)
    await MongoStore(mongo[mongo_db]).save("bookkeeping", [Write("a-1/c-1", 0, tab)])

    code, out, _ = await show(servers, mongo_db, "bookkeeping", "a-1/c-1")
    assert code == 0
    shown = json.loads(out)
    assert shown["_id"] == "a-1/c-1" and shown["_v"] == 1
    assert shown["periods"] == msgspec.json.decode(msgspec.json.encode(tab.periods))
    assert shown["periods"]  # the rows, decoded from the bytes the store keeps

    code, out, err = await show(servers, mongo_db, "bookkeeping", "a-1/nobody")
    assert code == 1 and out == ""
    assert "no document 'a-1/nobody' in bookkeeping" in err
