"""The API reads a tab's packed years from their own documents, on the server the project starts,
and keeps the copies it read: a packed year's document never changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consumers import bookkeeping
from services.api.reads import ReadModel
from services.store import Write
from services.store.mongo import MongoStore
from tests import factories as f
from tests.unit.tabs import replay

KEY = f"{f.AGENCY}/{f.COMPANY}"


async def test_a_tab_read_shows_its_packed_years_and_reads_each_once(
    mongo: Any, mongo_db: str
) -> None:
    months = [f"{y}-{m:02d}" for y in (2024, 2025) for m in range(1, 13)]
    tab = replay(
        bookkeeping.RULEBOOK,
        [
            f.details(
                "2024-01-02T08:00", fiscal_year_start="2024-01-01", fiscal_year_end="2024-12-31"
            ),
            *[f.submitted(m, f"{m}-27T09:00") for m in months],
        ],
        now="2026-03-20T12:00",
    )
    assert list(tab.archive) == ["2024", "2025"]
    await MongoStore(mongo[mongo_db]).save("bookkeeping", [Write(KEY, 0, tab)])

    reads = ReadModel(mongo[mongo_db])
    asked: list[set[str]] = []
    parts = reads.store.parts

    async def counted(collection: str, key: str, digests: Any) -> dict[str, bytes]:
        asked.append(set(digests))
        return await parts(collection, key, digests)

    reads.store.parts = counted  # type: ignore[method-assign]
    now = dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC)
    shown = await reads.tab("bookkeeping", f.AGENCY, f.COMPANY, now)
    assert [row.period for row in shown.periods] == [*months, "2026-01", "2026-02", "2026-03"]
    assert {row.status for row in shown.periods[:24]} == {"new"}
    assert asked == [{"2024", "2025"}]
    again = await reads.tab("bookkeeping", f.AGENCY, f.COMPANY, now)
    assert again == shown
    history = await reads.history(f.AGENCY, f.COMPANY, "bookkeeping", 100, None)
    assert {item.period for item in history.items if item.to == "new"} == set(months)
    assert asked == [{"2024", "2025"}]  # both read from the copies kept
