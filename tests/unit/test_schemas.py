"""The JSON Schemas in docs/events/ are what the contracts say today."""

from __future__ import annotations

from pathlib import Path

from contracts import schemas


def test_committed_schemas_are_current() -> None:
    stale = schemas.stale(schemas.DEFAULT_DIR)
    assert stale == [], f"stale schemas {stale}: run python -m contracts.schemas"


def test_a_changed_schema_is_detected(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []
    target = tmp_path / "bookkeeping.period_submitted.json"
    target.write_text(target.read_text().replace("YYYY-MM", "YYYYMM"))
    (tmp_path / "gone.event.json").write_text("{}")
    (tmp_path / "vat.report_step_changed.json").unlink()
    assert schemas.stale(tmp_path) == [
        "bookkeeping.period_submitted.json",
        "gone.event.json",
        "vat.report_step_changed.json",
    ]
