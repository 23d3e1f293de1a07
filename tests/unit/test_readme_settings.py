"""The README's configuration table names every setting the services read from the environment."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from services.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `BACKOFFICE_")]
    named = {row.split("`")[1] for row in rows}
    expected = {f"BACKOFFICE_{f.name.upper()}" for f in fields(Settings)}
    assert expected - named == set(), "settings missing from the README's table"
    assert named - expected == set(), "the README's table names settings that do not exist"
