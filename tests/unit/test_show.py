"""A stored document as an operator reads it, and which texts the store compresses."""

from __future__ import annotations

import zlib
from typing import Any

import lz4.frame
import msgspec

from consumers.bookkeeping import BookkeepingTab, apply
from services.show import as_json, readable
from services.store.port import COMPRESSED_FROM, LZ4_FRAME_MAGIC, opened, to_document
from tests.factories import at, details, tick
from tests.store_contract import Boxed


def a_tab() -> BookkeepingTab:
    tab = apply(None, details(), details().occurred_at)
    tab = apply(tab, tick("2026-05-01T06:00"), at("2026-05-01T06:00"))
    assert isinstance(tab, BookkeepingTab)
    return tab


def builtins(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def test_a_tab_s_long_texts_are_stored_compressed_and_its_short_ones_as_text() -> None:
    tab = a_tab()
    document = to_document("a-1/c-1", 3, tab)
    for name in BookkeepingTab.STORED_AS_TEXT & set(BookkeepingTab.__struct_fields__):
        long = len(msgspec.json.encode(getattr(tab, name))) >= COMPRESSED_FROM
        assert isinstance(document[name], bytes if long else str), name
    assert isinstance(document["periods"], bytes)  # a few months of rows are enough
    assert isinstance(document["company"], bytes)


def test_texts_are_compressed_from_the_threshold_on() -> None:
    def stored(length: int) -> Any:
        # {"":[]} is 7 bytes; the key's length sets the text's.
        items: dict[str, list[Any]] = {"k" * (length - 7): []}
        assert len(msgspec.json.encode(items)) == length
        return to_document("t", 1, Boxed(name="t", items=items))["items"]

    assert isinstance(stored(COMPRESSED_FROM - 1), str)
    assert isinstance(stored(COMPRESSED_FROM), bytes)


def test_long_texts_are_lz4_frames_and_zlib_streams_still_open() -> None:
    text = msgspec.json.encode({str(i): "2026-05-01" for i in range(100)})
    stored = to_document("t", 1, Boxed(name="t", items={"x": list(range(300))}))["items"]
    assert stored.startswith(LZ4_FRAME_MAGIC)
    assert lz4.frame.decompress(stored) == msgspec.json.encode({"x": list(range(300))})
    assert opened(lz4.frame.compress(text)) == text
    for level in (1, 6, 9):  # whatever zlib wrote before opens, and is never taken for LZ4's
        assert opened(zlib.compress(text, level)) == text


def test_a_stored_tab_reads_as_its_state_with_every_text_decoded() -> None:
    tab = a_tab()
    shown = builtins(readable("bookkeeping", to_document("a-1/c-1", 3, tab)))
    # Every field the tab holds, as JSON carries it: no binary left, nothing lost.
    for name, value in builtins(tab).items():
        assert shown[name] == value, name
    assert shown["_id"] == "a-1/c-1" and shown["_v"] == 3
    assert "$binary" not in as_json(readable("bookkeeping", to_document("k", 1, tab)))


def test_other_compressed_json_is_opened_and_other_bytes_shown_as_base64() -> None:
    packed = {"_id": "a-1/c-1/2024/d", "packed": zlib.compress(b'{"periods": [1, 2]}')}
    assert readable("bookkeeping_packed", packed)["packed"] == {"periods": [1, 2]}
    shard = {"_id": "a-1/0", "rows": zlib.compress(b'[{"name": "Acme"}]')}
    assert readable("listings", shard)["rows"] == [{"name": "Acme"}]
    shard = {"_id": "a-1/0", "rows": lz4.frame.compress(b'[{"name": "Acme"}]')}
    assert readable("listings", shard)["rows"] == [{"name": "Acme"}]
    broken = {"_id": "x", "raw": LZ4_FRAME_MAGIC + b"\x00"}
    assert readable("listings", broken)["raw"] == {"$binary": "BCJNGAA="}
    assert readable("listings", {"_id": "x", "raw": b"\x00\x01"})["raw"] == {"$binary": "AAE="}
