"""The benchmark's arithmetic (deploy/bench.py): where ingest's CPU went and the ceiling it
sets. The benchmark is the only place these figures come from, so its sums are tested here."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "deploy" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_ceiling_takes_bare_aio_pikas_process_and_the_servers_as_ours_found_them(
    bench: ModuleType,
) -> None:
    run = bench.Ingest("postgresql", "interleaved", 1000)
    run.seconds = {"ours": 2.0, bench.SILENT: 1.5, "bare aio-pika": 0.5, "naive": 4.0}
    run.cpu = {
        # ours: 0.9 ms of its own a message (not in the ceiling), the servers 1.2 ms
        "ours": {
            "process": 0.9,
            "FerretDB": 0.6,
            "PostgreSQL": 0.5,
            "RabbitMQ": 0.1,
            "machine": 2.4,
        },
        "bare aio-pika": {"process": 0.3, "RabbitMQ": 0.2, "machine": 0.6},
    }
    assert run.cpu_ms("ours", "FerretDB") == pytest.approx(0.6)
    assert run.busy_cores("ours") == pytest.approx(1.2)
    assert run.busy_cores("bare aio-pika") == pytest.approx(1.2)
    cores = os.cpu_count() or 1
    assert run.ceiling() == pytest.approx(cores * 1000 / (0.3 + 0.6 + 0.5 + 0.1))
    table = bench.markdown({}, [run], [], [], "deploy/bench.sh")
    row = next(
        line for line in table.splitlines() if line.startswith("| FerretDB") and "0.90" in line
    )
    assert row.split("|")[3:12] == [
        " 0.90 ",
        " 0.60 ",
        " 0.50 ",
        " 0.10 ",
        " 1.20 ",
        " 0.30 ",
        " 1.20 ",
        f" {cores * 1000 / 1.5:.0f} ",
        f" {cores * 1000 / 1.5 / 2000:.2f} ",
    ]


def test_a_process_that_is_gone_counts_no_cpu(bench: ModuleType) -> None:
    assert bench._cpu_of(Path("/proc/no-such-process")) == 0.0
    found = bench.cpu_seconds(os.getpid())
    assert found["process"] > 0 and found["machine"] >= found["process"]


def test_pairs_are_read_by_the_median_of_their_ratios_per_backlog_order(
    bench: ModuleType,
) -> None:
    rows = [
        ("by company", 2400.0, 3000.0),  # 0.80
        ("by company", 2700.0, 3000.0),  # 0.90
        ("by company", 1500.0, 3000.0),  # 0.50: one slow pair does not move the median
        ("interleaved", 600.0, 3000.0),  # 0.20
    ]
    table = bench.pairs_markdown(rows, 10_000, "deploy/bench.sh --bare-alone 3", bench.BARE_NAME)
    lines = table.splitlines()
    assert "and by bare aio-pika, in pairs" in lines[0]
    assert "| backlog order | ours (msg/s) | bare aio-pika (msg/s) | ratio |" in lines
    assert "| by company | 1500 | 3000 | 0.50 |" in lines
    assert "| by company, median of 3 | | | 0.80 |" in lines
    assert "| interleaved, median of 1 | | | 0.20 |" in lines
    silent = bench.pairs_markdown(rows, 10_000, "deploy/bench.sh", bench.SILENT)
    assert "with and without its outbound events" in silent
    assert "| backlog order | ours (msg/s) | without outbound events (msg/s) | ratio |" in silent
    naive = bench.pairs_markdown(rows, 10_000, "deploy/bench.sh", bench.NAIVE_NAME)
    assert "and by the naive consumer, in pairs" in naive
    assert "| backlog order | ours (msg/s) | naive (msg/s) | ratio |" in naive


def test_the_outbound_events_parts_are_the_medians_each_step_adds_against_the_budget(
    bench: ModuleType,
) -> None:
    part = bench.Part
    parts = [
        part("by company", bench.SILENT, 10_000.0, 60.0),
        part("by company", bench.SILENT, 12_000.0, 58.0),
        part("by company", bench.SILENT, 4_000.0, 90.0),  # one slow run moves no median
        part("by company", bench.DERIVED, 9_000.0, 66.0),
        part("by company", bench.UNSENT, 8_500.0, 71.5),
        part("by company", "ours", 8_000.0, 76.0),
        part("interleaved", bench.SILENT, 4_000.0, 140.0),
    ]
    table = bench.parts_markdown(parts, 10_000, "deploy/bench.sh --outbound-parts 3")
    lines = table.splitlines()
    assert "by `deploy/bench.sh --outbound-parts 3`: 10000 submissions" in lines[0]
    assert "| by company | without outbound events | 3 | 10000 | 1.00 | 60.0 |  |" in lines
    derived = "| by company | deriving them, then dropping them | 1 | 9000 | 0.90 | 66.0 | +6.0 |"
    assert derived in lines
    assert (
        "| by company | and keeping them in the outboxes and the ledger, encoded, not sent"
        " | 1 | 8500 | 0.85 | 71.5 | +5.5 |"
    ) in lines
    assert "| by company | and sending them: ours | 1 | 8000 | 0.80 | 76.0 | +4.5 |" in lines
    assert "| by company | the budget: 10 % slower | | | 0.90 | 66.7 | +6.7 in all |" in lines
    # An order without ours has no budget row.
    assert "| interleaved | without outbound events | 1 | 4000 | 1.00 | 140.0 |  |" in lines
    assert not any(line.startswith("| interleaved | the budget") for line in lines)


def test_a_sweep_reports_each_process_cpu_a_tab_and_how_busy_the_machine_was(
    bench: ModuleType,
) -> None:
    rows = [
        ("first tick, no watermark", 0, 1.0, {"process": 0.2, "machine": 0.5}),
        (
            "forty days on",
            10_000,
            5.0,
            {
                "process": 2.0,
                "FerretDB": 3.0,
                "PostgreSQL": 1.5,
                "RabbitMQ": 0.25,
                "machine": 7.5,
            },
        ),
    ]
    lines = bench.sweep_markdown(10_000, rows, "deploy/bench.sh --sweep-alone 10000").splitlines()
    assert "| forty days on | 10000 | 5.0 | 0.20 | 0.30 | 0.15 | 0.03 | 1.50 |" in lines
    assert "| first tick, no watermark | 0 | 1.0 |  |  |  |  | 0.50 |" in lines


async def test_a_wait_with_progress_gives_up_only_when_the_progress_stalls(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "TIMEOUT_S", 0.6)
    monkeypatch.setattr(bench, "PROGRESS_EVERY_S", 0.1)
    started = time.monotonic()

    async def done() -> bool:  # three timeouts' worth of work
        return time.monotonic() - started > 1.8

    async def growing() -> int:
        return int((time.monotonic() - started) * 100)

    async def stalled() -> int:
        return 7

    await bench.until(done, "a long drain", growing)
    assert time.monotonic() - started > 1.8
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="a stalled drain"):
        await bench.until(done, "a stalled drain", stalled)
    assert time.monotonic() - started < 1.2
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no progress asked"):
        await bench.until(done, "no progress asked")
