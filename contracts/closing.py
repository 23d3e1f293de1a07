"""The client's year-end closing."""

from __future__ import annotations

import datetime as dt

import msgspec

from contracts.envelope import CompanyMessage
from contracts.fields import NonNegative, Positive


class Progress(msgspec.Struct, kw_only=True):
    fiscal_year_start: dt.date
    fiscal_year_end: dt.date
    steps_completed: NonNegative
    steps_total: Positive

    def __post_init__(self) -> None:
        if self.fiscal_year_end <= self.fiscal_year_start:
            raise ValueError("fiscal_year_end must be after fiscal_year_start")
        if self.steps_completed > self.steps_total:
            raise ValueError("steps_completed must not exceed steps_total")


class ClosingProgressChanged(CompanyMessage, tag="closing.progress_changed", kw_only=True):
    data: Progress


class K10Help(msgspec.Struct, kw_only=True):
    fiscal_year_end: dt.date
    requested: bool


class ClosingK10HelpChanged(CompanyMessage, tag="closing.k10_help_changed", kw_only=True):
    data: K10Help
