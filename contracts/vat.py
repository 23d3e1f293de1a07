"""The client's VAT report, step by step."""

from __future__ import annotations

import datetime as dt

import msgspec

from contracts.envelope import CompanyMessage
from contracts.fields import VatStep


class _VatPeriod(msgspec.Struct, kw_only=True):
    period_start: dt.date
    period_end: dt.date

    def __post_init__(self) -> None:
        if self.period_end < self.period_start:
            raise ValueError("period_end must not be before period_start")


class ReportStep(_VatPeriod, kw_only=True):
    step: VatStep
    completed: bool


class VatReportStepChanged(CompanyMessage, tag="vat.report_step_changed", kw_only=True):
    data: ReportStep


class ReportReported(_VatPeriod, kw_only=True):
    reported: bool


class VatReportReportedChanged(CompanyMessage, tag="vat.report_reported_changed", kw_only=True):
    data: ReportReported
