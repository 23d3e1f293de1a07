"""What the client does in its bookkeeping."""

from __future__ import annotations

import datetime as dt

import msgspec

from contracts.envelope import CompanyMessage
from contracts.fields import Identifier, Period


class DocumentUploaded(msgspec.Struct, kw_only=True):
    document_id: Identifier


class BookkeepingDocumentUploaded(
    CompanyMessage, tag="bookkeeping.document_uploaded", kw_only=True
):
    data: DocumentUploaded


class PeriodSubmitted(msgspec.Struct, kw_only=True):
    period: Period


class BookkeepingPeriodSubmitted(CompanyMessage, tag="bookkeeping.period_submitted", kw_only=True):
    """The client sent the period to its accountant ("Skicka till din ekonom")."""

    data: PeriodSubmitted


class EntryCreated(msgspec.Struct, kw_only=True):
    entry_id: Identifier
    entry_date: dt.date


class BookkeepingEntryCreated(CompanyMessage, tag="bookkeeping.entry_created", kw_only=True):
    data: EntryCreated
