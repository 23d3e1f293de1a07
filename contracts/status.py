"""The statuses of SPEC §3, with the labels a dashboard shows."""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["waiting", "late", "new", "in_progress", "incomplete", "done", "sent"]

# What a consultant may set on a bookkeeping or payroll period, and on a to-do: all but `sent`,
# which only the VAT report produces.
ConsultantStatus = Literal["waiting", "late", "new", "in_progress", "incomplete", "done"]

# The statuses that put a bookkeeping period on the client's to-do list ("Saker att göra").
CLIENT_TODO: Final = frozenset({"waiting", "late"})

LABELS: Final[dict[str, dict[str, str]]] = {
    "waiting": {"sv": "Väntar", "en": "Waiting"},
    "late": {"sv": "Försenad", "en": "Late"},
    "new": {"sv": "Ny", "en": "New"},
    "in_progress": {"sv": "Pågår", "en": "In progress"},
    "incomplete": {"sv": "Ofullständig", "en": "Incomplete"},
    "done": {"sv": "Klar", "en": "Done"},
    "sent": {"sv": "Skickad", "en": "Sent"},
}
