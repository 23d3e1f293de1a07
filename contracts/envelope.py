"""The envelope every message shares (SPEC §7), and its two variants.

Messages are a tagged union on ``type``: each concrete message is a subclass that names its tag
and its ``data`` struct.
"""

from __future__ import annotations

import msgspec

from contracts.fields import Identifier, Instant, normalize_instant


class Message(msgspec.Struct, tag_field="type", kw_only=True, forbid_unknown_fields=False):
    """Anything the consumers take in: upstream events, consultants' commands, clock ticks."""

    id: Identifier
    version: int
    occurred_at: Instant

    def __post_init__(self) -> None:
        self.occurred_at = normalize_instant(self.occurred_at)

    @property
    def type(self) -> str:
        return str(type(self).__struct_config__.tag)


class AgencyMessage(Message, kw_only=True):
    """About the agency as a whole; a ``company_id`` it carries is ignored."""

    agency_id: Identifier
    company_id: Identifier | None = None


class CompanyMessage(Message, kw_only=True):
    """About one client company of one agency."""

    agency_id: Identifier
    company_id: Identifier
