"""SPEC §5.5: comments and to-dos, newest first."""

from __future__ import annotations

import pytest

from consumers import notes
from consumers.notes import CompanyNotes
from consumers.rulebook import Rejected
from contracts.envelope import Message
from tests import factories as f
from tests.unit.tabs import replay


def add(
    note_id: str,
    kind: str,
    at: str,
    status: str | None = None,
    text: str = "Ring kunden",
    **kw: object,
) -> Message:
    data = {"note_id": note_id, "kind": kind, "text": text, "author_user_id": "u-7"}
    if status:
        data["status"] = status
    return f.message("notes.add", data, at, **kw)


def set_status(note_id: str, status: str, at: str) -> Message:
    return f.message(
        "notes.set_status", {"note_id": note_id, "status": status, "user_id": "u-9"}, at
    )


def state(*messages: Message) -> CompanyNotes:
    result = replay(notes.RULEBOOK, messages)
    assert isinstance(result, CompanyNotes)
    return result


def test_comments_and_todos_newest_first() -> None:
    result = state(
        add("n-1", "comment", "2026-03-01T10:00"),
        add("n-2", "todo", "2026-03-02T10:00", status="waiting"),
    )
    assert [(n.note_id, n.kind, n.status) for n in result.items] == [
        ("n-2", "todo", "waiting"),
        ("n-1", "comment", None),
    ]
    assert result.items[1].updated_at == f.at("2026-03-01T10:00")


def test_a_todo_moves_on_and_the_latest_change_wins() -> None:
    later = set_status("n-2", "done", "2026-03-04T10:00")
    earlier = set_status("n-2", "in_progress", "2026-03-03T10:00")
    result = state(add("n-2", "todo", "2026-03-02T10:00", status="waiting"), later, earlier)
    (todo,) = result.items
    assert (todo.status, todo.updated_at) == ("done", f.at("2026-03-04T10:00"))


def test_a_note_added_twice_is_one_note() -> None:
    command = add("n-1", "comment", "2026-03-01T10:00")
    assert len(state(command, command, add("n-1", "comment", "2026-03-01T11:00")).items) == 1


def test_only_a_known_todo_has_a_status() -> None:
    result = state(add("n-1", "comment", "2026-03-01T10:00"))
    with pytest.raises(Rejected, match="comment"):
        notes.apply(result, set_status("n-1", "done", "2026-03-02T10:00"), f.at("2026-03-02T10:00"))  # type: ignore[arg-type]
    with pytest.raises(Rejected, match="no note"):
        notes.apply(result, set_status("n-9", "done", "2026-03-02T10:00"), f.at("2026-03-02T10:00"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "status", "text", "words"),
    [
        ("todo", None, "x", "needs a status"),
        ("comment", "done", "x", "no status"),
        ("todo", "sent", "x", "status"),
        ("comment", None, "  ", "blank"),
        ("note", None, "x", "kind"),
    ],
)
def test_invalid_notes_are_refused_at_decode(
    kind: str, status: str | None, text: str, words: str
) -> None:
    from contracts.registry import InvalidMessage

    with pytest.raises(InvalidMessage, match=words):
        add("n-1", kind, "2026-03-01T10:00", status=status, text=text)
