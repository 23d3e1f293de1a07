"""The batch pipeline on the in-memory store: outcomes, batching, conflicts, failures, ticks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pytest

from consumers.bookkeeping import BookkeepingTab
from consumers.registry import CONSUMERS
from contracts.envelope import Message
from contracts.registry import encode
from services.pipeline import Delivery, Pipeline, Source
from services.signing import signature
from services.store import Write
from services.store.memory import MemoryStore
from tests import factories as f

WALL = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
KEY = f"{f.AGENCY}/{f.COMPANY}"


SECRET = "pipeline-test-secret-0123456789abcdef0123"


def delivery(message: Message, source: Source = "event", secret: str | None = SECRET) -> Delivery:
    """A delivery through ``source``; commands and ticks signed as the API and clock sign."""
    body = encode(message)
    signed = source in ("command", "clock") and secret is not None
    return Delivery(body, source, message.type, signature(secret, body) if signed else None)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def pipeline(store: Any, consumer: str = "bookkeeping") -> Pipeline:
    return Pipeline(CONSUMERS[consumer], store, lambda: WALL, secret=SECRET)


async def tab(store: MemoryStore) -> BookkeepingTab:
    loaded = await store.load("bookkeeping", BookkeepingTab, [KEY])
    state = loaded[KEY].state
    assert isinstance(state, BookkeepingTab)
    return state


async def test_a_batch_is_applied_and_written_once_per_aggregate(store: MemoryStore) -> None:
    saves: list[int] = []
    original = store.save

    async def counting_save(collection: str, writes: Sequence[Write]) -> set[str]:
        if collection == "bookkeeping":  # not the listing shards (test_listing.py)
            saves.append(len(writes))
        return await original(collection, writes)

    store.save = counting_save  # type: ignore[method-assign]
    batch = [
        f.details(),
        f.submitted("2026-01", "2026-02-01T09:00"),
        f.submitted("2026-02", "2026-03-02T09:00"),
        f.submitted("2026-02", "2026-02-28T09:00", company_id="c-other"),
    ]
    outcomes = await pipeline(store).handle([delivery(m) for m in batch])
    assert [o.kind for o in outcomes] == ["applied"] * 4
    assert saves == [2]  # one bulk write, two aggregates
    state = await tab(store)
    assert [(r.period, r.status) for r in state.periods] == [
        ("2026-01", "new"),
        ("2026-02", "new"),
        ("2026-03", "waiting"),
    ]


async def test_invalid_bodies_get_their_reason_and_the_rest_is_applied(
    store: MemoryStore,
) -> None:
    valid = f.details()
    bodies = [
        b"{not json",
        b"\xff\xfe",
        b"x" * (64 * 1024 + 1),
        encode(valid),
        json.dumps(f.body("bookkeeping.period_submitted", {}, "2026-03-01T00:00")).encode(),
    ]
    outcomes = await pipeline(store).handle([Delivery(b, "event") for b in bodies])
    assert [(o.kind, o.code) for o in outcomes] == [
        ("invalid", "not_json"),
        ("invalid", "not_utf8"),
        ("invalid", "too_large"),
        ("applied", ""),
        ("invalid", "invalid"),
    ]
    assert "period" in outcomes[4].reason
    assert (await tab(store)).company.details is not None


async def test_a_message_the_consumer_does_not_handle_is_refused(store: MemoryStore) -> None:
    directory = pipeline(store, "directory")
    (outcome,) = await directory.handle([delivery(f.uploaded("2026-03-01T10:00"))])
    assert (outcome.kind, outcome.code) == ("invalid", "not_handled")
    assert "directory" in outcome.reason


@pytest.mark.parametrize(
    ("message", "source"),
    [
        (f.tick("2030-01-01T00:00"), "event"),  # nobody upstream moves our clock
        (f.set_status("2026-02", "done", "2026-03-01T10:00"), "event"),
        (f.submitted("2026-02", "2026-03-01T10:00"), "clock"),
    ],
)
async def test_a_message_from_the_wrong_exchange_is_refused(
    store: MemoryStore, message: Message, source: Source
) -> None:
    (outcome,) = await pipeline(store).handle([delivery(message, source)])
    assert (outcome.kind, outcome.code) == ("invalid", "wrong_source")


async def test_a_rejected_command_changes_nothing(store: MemoryStore) -> None:
    await pipeline(store).handle([delivery(f.details())])
    before = await tab(store)
    command = f.set_status("2025-01", "done", "2026-03-01T10:00")
    (outcome,) = await pipeline(store).handle([delivery(command, "command")])
    assert (outcome.kind, outcome.code) == ("rejected", "rejected")
    assert "outside tracking" in outcome.reason
    assert await tab(store) == before


async def test_a_store_failure_fails_the_batch_for_a_later_retry(store: MemoryStore) -> None:
    store.fail_next = ConnectionError("database is down")
    outcomes = await pipeline(store).handle(
        [
            delivery(f.details()),
            delivery(f.tick("2026-03-10T00:00"), "clock"),
            Delivery(b"nope", "event"),
        ]
    )
    assert [(o.kind, o.code) for o in outcomes] == [
        ("failed", "transient"),
        ("failed", "transient"),
        ("invalid", "not_json"),
    ]
    assert "database is down" in outcomes[0].reason
    assert store.collections.get("bookkeeping", {}) == {}


async def test_a_lost_race_is_applied_again_on_the_winners_state(store: MemoryStore) -> None:
    p = pipeline(store)
    await p.handle([delivery(f.details())])
    rival = f.submitted("2026-01", "2026-02-01T09:00")
    original = store.save
    raced = False

    async def racing_save(collection: str, writes: Sequence[Write]) -> set[str]:
        nonlocal raced
        if not raced:  # another replica writes between our load and our save
            raced = True
            await pipeline(store).handle([delivery(rival)])
        return await original(collection, writes)

    store.save = racing_save  # type: ignore[method-assign]
    (outcome,) = await p.handle([delivery(f.submitted("2026-02", "2026-03-01T09:00"))])
    assert outcome.kind == "applied"
    state = await tab(store)
    assert {r.period: r.status for r in state.periods if r.status == "new"} == {
        "2026-01": "new",
        "2026-02": "new",
    }


async def test_a_remembered_aggregate_costs_no_read_and_a_stale_copy_is_reloaded(
    store: MemoryStore,
) -> None:
    p = pipeline(store)
    await p.handle([delivery(f.details())])
    loads: list[list[str]] = []
    original = store.load

    async def counting_load(collection: str, state_type: Any, keys: Any) -> Any:
        if collection == "bookkeeping":  # not the listing shards (test_listing.py)
            loads.append(list(keys))
        return await original(collection, state_type, keys)

    store.load = counting_load  # type: ignore[method-assign]
    await p.handle([delivery(f.submitted("2026-01", "2026-02-01T09:00"))])
    assert loads == []  # the write of the first batch is remembered
    # Another replica writes meanwhile: the remembered copy is stale.
    await pipeline(store).handle([delivery(f.submitted("2026-02", "2026-03-01T09:00"))])
    loads.clear()
    (outcome,) = await p.handle(
        [delivery(f.set_status("2026-01", "done", "2026-03-02T09:00"), "command")]
    )
    assert outcome.kind == "applied"
    assert loads == [[KEY]]  # the version check failed, so it read the aggregate again
    state = await tab(store)
    assert {r.period: r.status for r in state.periods} == {
        "2026-01": "done",
        "2026-02": "new",
        "2026-03": "waiting",
    }


async def test_an_event_a_little_ahead_of_the_wall_clock_is_applied_as_of_now(
    store: MemoryStore,
) -> None:
    (outcome,) = await pipeline(store).handle([delivery(f.details("2026-03-10T12:04:59"))])
    assert outcome.kind == "applied"
    assert (await tab(store)).now == WALL  # no tab's time moves past the receiver's clock


@pytest.mark.parametrize("source", ["event", "clock"])
async def test_a_message_dated_beyond_the_allowed_skew_is_dead_lettered_as_future(
    store: MemoryStore, source: Source
) -> None:
    message = (
        f.details("2026-03-10T12:05:01") if source == "event" else f.tick("2026-03-10T12:05:01")
    )
    (outcome,) = await pipeline(store).handle([delivery(message, source)])
    assert (outcome.kind, outcome.code) == ("invalid", "future")
    assert "2026-03-10T12:05:01" in outcome.reason
    assert await store.load("bookkeeping", BookkeepingTab, [KEY]) == {}
    # A later, correct update of the company details is then applied as usual.
    (outcome,) = await pipeline(store).handle([delivery(f.details("2026-03-09T08:00"))])
    assert outcome.kind == "applied"


async def test_the_allowed_skew_is_a_setting(store: MemoryStore) -> None:
    lenient = Pipeline(
        CONSUMERS["bookkeeping"],
        store,
        lambda: WALL,
        secret=SECRET,
        max_clock_skew=dt.timedelta(days=1),
    )
    (outcome,) = await lenient.handle([delivery(f.details("2026-03-11T11:00"))])
    assert outcome.kind == "applied"


@pytest.mark.parametrize(
    ("message", "source"),
    [
        (f.set_status("2026-01", "done", "2026-03-02T09:00"), "command"),
        (f.tick("2026-03-10T00:00"), "clock"),
        # Straight into the queue through the default exchange: no source at all.
        (f.set_status("2026-01", "done", "2026-03-02T09:00"), None),
        (f.tick("2026-03-10T00:00"), None),
    ],
)
@pytest.mark.parametrize("forged", ["none", "other secret", "other body"])
async def test_commands_and_ticks_without_the_services_signature_are_dead_lettered(
    store: MemoryStore, message: Message, source: Source | None, forged: str
) -> None:
    await pipeline(store).handle([delivery(f.details())])
    body = encode(message)
    claimed = {
        "none": None,
        "other secret": signature("x" * 40, body),
        "other body": signature(SECRET, encode(f.details())),
    }[forged]
    (outcome,) = await pipeline(store).handle([Delivery(body, source, message.type, claimed)])
    assert (outcome.kind, outcome.code) == ("invalid", "unsigned")
    assert (await tab(store)).facts == {}
    # Signed, the same message is taken.
    (outcome,) = await pipeline(store).handle(
        [Delivery(body, source, message.type, signature(SECRET, body))]
    )
    assert outcome.kind == "applied"


async def test_without_a_secret_no_command_is_taken(store: MemoryStore) -> None:
    await pipeline(store).handle([delivery(f.details())])
    unconfigured = Pipeline(CONSUMERS["bookkeeping"], store, lambda: WALL)
    command = f.set_status("2026-01", "done", "2026-03-02T09:00")
    body = encode(command)
    (outcome,) = await unconfigured.handle(
        [Delivery(body, "command", command.type, signature("", body))]
    )
    assert outcome.code == "unsigned"


async def test_a_duplicate_writes_nothing(store: MemoryStore) -> None:
    message = f.details()
    p = pipeline(store)
    await p.handle([delivery(message)])
    (outcome,) = await p.handle([delivery(message)])
    assert outcome.kind == "applied"
    assert store.collections["bookkeeping"][KEY]["_v"] == 1


async def test_the_owner_records_each_commands_outcome(store: MemoryStore) -> None:
    p = pipeline(store)
    await p.handle([delivery(f.details())])
    applied = f.set_status("2026-02", "done", "2026-03-01T10:00")
    refused = f.set_status("2024-02", "done", "2026-03-01T10:00")
    outcomes = await p.handle([delivery(applied, "command"), delivery(refused, "command")])
    assert [o.kind for o in outcomes] == ["applied", "rejected"]
    records = {r["_id"]: r for r in await store.fetch("command_outcomes", [applied.id, refused.id])}
    assert records[applied.id]["status"] == "applied"
    assert records[refused.id]["status"] == "rejected"
    assert "outside tracking" in records[refused.id]["reason"]
    assert records[refused.id]["company_id"] == f.COMPANY


async def test_a_command_whose_outcome_cannot_be_recorded_is_retried(store: MemoryStore) -> None:
    p = pipeline(store)
    await p.handle([delivery(f.details())])
    original = store.record

    async def failing(collection: str, documents: Sequence[dict[str, Any]]) -> None:
        raise ConnectionError("database is down")

    store.record = failing  # type: ignore[method-assign]
    command = f.set_status("2026-02", "done", "2026-03-01T10:00")
    (outcome,) = await p.handle([delivery(command, "command")])
    assert (outcome.kind, outcome.code) == ("failed", "transient")
    store.record = original  # type: ignore[method-assign]
    (outcome,) = await p.handle([delivery(command, "command")])
    assert outcome.kind == "applied"
    assert [r["status"] for r in await store.fetch("command_outcomes", [command.id])] == ["applied"]
