"""A stored document as an operator reads it (``python -m services show COLLECTION ID``).

The store keeps the parts of an aggregate that no query looks into as JSON texts, and the longer
ones compressed (``services/store/port.py``), so in ``mongosh`` most of a tab is binary. This
prints the document with every such part decoded, without going through the API's access rules.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import msgspec

from consumers.registry import STATE_TYPES
from services.config import Settings
from services.store.mongo import connect
from services.store.port import opened, plain


def readable(collection: str, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the texts its collection's state type names decoded, and any other
    compressed JSON (a listing shard's rows, a packed year's bytes) opened; other bytes stay as
    base64."""
    state_type = STATE_TYPES.get(collection)
    decoded = plain(document, state_type) if state_type is not None else document
    return {name: _opened(value) for name, value in decoded.items()}


def _opened(value: Any) -> Any:
    if not isinstance(value, bytes):
        return value
    try:
        return msgspec.json.decode(opened(value))
    except (zlib.error, RuntimeError, msgspec.DecodeError):  # RuntimeError: LZ4's
        return {"$binary": base64.b64encode(value).decode()}


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(msgspec.to_builtins(document, enc_hook=str), indent=2, sort_keys=True)


async def stored(settings: Settings, collection: str, key: str) -> dict[str, Any] | None:
    client = connect(settings.mongo_url, settings.mongo_timeout_ms)
    try:
        document = await client[settings.mongo_db][collection].find_one({"_id": key})
    finally:
        await client.close()
    return None if document is None else readable(collection, document)
