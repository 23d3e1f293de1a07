from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.reads import BadCursor, decode_cursor, encode_cursor


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(["Bageriet i Byn AB", "c-2002"]), 2) == [
        "Bageriet i Byn AB",
        "c-2002",
    ]
    assert decode_cursor(encode_cursor([None, "c-1"]), 2, nullable=True) == [None, "c-1"]


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", encode_cursor(["a"]), "eyIkbmUiOiBudWxsfQ", encode_cursor([{"$gt": ""}, "c"])],
)
def test_a_foreign_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(cursor, 2)


@pytest.mark.parametrize(
    "values", [[None, None, None, None], ["2026-03-04T09:00:00.000Z", None, "2026-02", "new"]]
)
def test_a_history_cursor_holds_strings_only(values: list[str | None]) -> None:
    """[null,null,null,null] once reached a comparison with strings: a 500."""
    with pytest.raises(BadCursor):
        decode_cursor(encode_cursor(values), 4)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_any_json_in_a_cursor_is_refused_or_strings(values: object) -> None:
    try:
        decoded = decode_cursor(encode_cursor(values), 4)  # type: ignore[arg-type]
    except BadCursor:
        return
    assert len(decoded) == 4 and all(isinstance(v, str) for v in decoded)


@given(st.text())
def test_any_text_as_a_cursor_is_refused_or_decoded(cursor: str) -> None:
    """No other exception escapes, whatever the text: the API answers 400, never 500."""
    try:
        decoded = decode_cursor(cursor, 2, nullable=True)
    except BadCursor:
        return
    assert len(decoded) == 2 and all(isinstance(v, str | None) for v in decoded)
