"""Notes (SPEC §5.5): comments, and the consultants' own to-dos with a status that moves on.

A note is identified by the id the API gave it, so a repeated command adds it once. A to-do's
status is the latest set by ``occurred_at``, whatever the order the changes arrive in.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from consumers.rulebook import Rejected, Rulebook, company_key
from contracts.commands import AddNote, SetNoteStatus


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    at: dt.datetime
    status: str
    user_id: str


class Note(msgspec.Struct, kw_only=True):
    note_id: str
    kind: str
    text: str
    author_user_id: str
    created_at: dt.datetime
    changes: list[StatusChange] = msgspec.field(default_factory=list)
    # Worked out from the changes.
    status: str | None = None
    updated_at: dt.datetime | None = None


class CompanyNotes(msgspec.Struct, kw_only=True):
    agency_id: str
    company_id: str
    items: list[Note] = msgspec.field(default_factory=list)  # newest first


def apply(
    notes: CompanyNotes | None, message: AddNote | SetNoteStatus, now: dt.datetime
) -> CompanyNotes:
    if notes is None:
        notes = CompanyNotes(agency_id=message.agency_id, company_id=message.company_id)
    match message:
        case AddNote():
            return _add(notes, message)
        case SetNoteStatus():
            return _set_status(notes, message)


def _add(notes: CompanyNotes, command: AddNote) -> CompanyNotes:
    data = command.data
    if any(n.note_id == data.note_id for n in notes.items):
        return notes
    changes = []
    if data.status is not None:
        changes = [
            StatusChange(
                id=command.id,
                at=command.occurred_at,
                status=data.status,
                user_id=data.author_user_id,
            )
        ]
    note = _derived(
        Note(
            note_id=data.note_id,
            kind=data.kind,
            text=data.text,
            author_user_id=data.author_user_id,
            created_at=command.occurred_at,
            changes=changes,
        )
    )
    items = sorted([*notes.items, note], key=lambda n: (n.created_at, n.note_id), reverse=True)
    return msgspec.structs.replace(notes, items=items)


def _set_status(notes: CompanyNotes, command: SetNoteStatus) -> CompanyNotes:
    data = command.data
    note = next((n for n in notes.items if n.note_id == data.note_id), None)
    if note is None:
        raise Rejected(f"no note {data.note_id} on this company")
    if note.kind != "todo":
        raise Rejected("a comment has no status; only a to-do's status changes")
    if any(c.id == command.id for c in note.changes):
        return notes
    change = StatusChange(
        id=command.id, at=command.occurred_at, status=data.status, user_id=data.user_id
    )
    changes = sorted([*note.changes, change], key=lambda c: (c.at, c.id))
    updated = _derived(msgspec.structs.replace(note, changes=changes))
    items = [updated if n.note_id == note.note_id else n for n in notes.items]
    return msgspec.structs.replace(notes, items=items)


def _derived(note: Note) -> Note:
    last = note.changes[-1] if note.changes else None
    return msgspec.structs.replace(
        note,
        status=last.status if last else None,
        updated_at=last.at if last else note.created_at,
    )


RULEBOOK: Rulebook[CompanyNotes] = Rulebook(
    collection="notes",
    state_type=CompanyNotes,
    handles=frozenset({"notes.add", "notes.set_status"}),
    key=company_key,
    apply=apply,
    indexes=((("agency_id", 1), ("company_id", 1)),),
)
