from __future__ import annotations

import pytest

from services.api.reads import BadCursor, decode_cursor, encode_cursor


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(["Bageriet i Byn AB", "c-2002"]), 2) == [
        "Bageriet i Byn AB",
        "c-2002",
    ]
    assert decode_cursor(encode_cursor([None, "c-1"]), 2) == [None, "c-1"]


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", encode_cursor(["a"]), "eyIkbmUiOiBudWxsfQ", encode_cursor([{"$gt": ""}, "c"])],
)
def test_a_foreign_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(cursor, 2)
