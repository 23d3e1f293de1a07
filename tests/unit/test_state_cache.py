"""The writer's cache of states (services/state_cache.py): what comes back is what went in, it
stays within its size, and it keeps no object the collector has to walk."""

from __future__ import annotations

import datetime as dt
import gc
import json
from typing import Any

import msgspec

from consumers import bookkeeping
from consumers.archive import loaded
from consumers.registry import CONSUMERS, ConsumerDefinition
from contracts.registry import decode
from services.demo import Demo
from services.pipeline import Delivery, Pipeline, Source
from services.signing import signature
from services.state_cache import StateCache
from services.store import Stored
from services.store.memory import MemoryStore
from tests import factories as f
from tests.unit.test_archive import company, months, submissions
from tests.unit.test_ordering_properties import replay
from tests.unit.test_pipeline import SECRET

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def types_of(definition: ConsumerDefinition) -> dict[str, type[Any]]:
    return {r.collection: r.state_type for r in definition.rulebooks}


def demo_deliveries(companies: int) -> list[Delivery]:
    demo = Demo(7, NOW)
    demo.build(companies)
    found = []
    for source, messages in (("event", demo.events), ("command", demo.commands)):
        for message in messages:
            body = decode_and_encode(message)
            signed = signature(SECRET, body) if source == "command" else None
            kind: Source = "event" if source == "event" else "command"
            found.append(Delivery(body, kind, message["type"], signed))
    return found


def decode_and_encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    decode(body)  # only what the contract accepts
    return body


async def demo_states(name: str, cache_size: int, batch: int = 64) -> dict[str, dict[str, Any]]:
    """Every state a consumer stores after the demo of a few companies, by collection."""
    definition = CONSUMERS[name]
    store = MemoryStore()
    pipeline = Pipeline(definition, store, lambda: NOW, secret=SECRET, cache_size=cache_size)
    deliveries = demo_deliveries(12)
    for start in range(0, len(deliveries), batch):
        await pipeline.handle(deliveries[start : start + batch])
    found: dict[str, dict[str, Any]] = {}
    for collection, state_type in types_of(definition).items():
        found[collection] = {}
        async for page in store.each(collection, state_type):
            for stored in page:
                found[collection][stored.state.agency_id + "/" + _company(stored.state)] = stored
    return found


def _company(state: Any) -> str:
    return str(getattr(state, "company_id", None) or getattr(state, "user_id", ""))


def aged_tab() -> Any:
    """A bookkeeping tab with three packed years, their bytes loaded."""
    state = replay(
        bookkeeping.RULEBOOK, [company(), *submissions(months()), f.tick("2026-03-20T12:00")]
    )
    assert state.archive  # packed years, with their bytes in the state
    return state


async def test_every_state_of_every_consumer_comes_back_equal() -> None:
    checked = 0
    for name, definition in CONSUMERS.items():
        cache = StateCache(types_of(definition), size=10_000)
        for collection, states in (await demo_states(name, cache_size=0)).items():
            for key, stored in states.items():
                cache.put(collection, key, stored)
                back = cache.get(collection, key)
                assert back == stored
                assert back is not None and back.state is not stored.state  # a copy
                checked += 1
    assert checked > 12 * 4  # every tab of the demo's companies, and the directory's entries
    cache = StateCache({"bookkeeping": bookkeeping.BookkeepingTab}, size=1)
    aged = aged_tab()
    cache.put("bookkeeping", "a/c", Stored(3, aged))
    assert cache.get("bookkeeping", "a/c") == Stored(3, aged)
    with_bytes = loaded(aged, {y: p.packed for y, p in aged.archive.items()})
    cache.put("bookkeeping", "a/c", Stored(4, with_bytes))
    assert cache.get("bookkeeping", "a/c") == Stored(4, with_bytes)


async def test_the_pipeline_stores_the_same_states_with_and_without_its_cache() -> None:
    for name in CONSUMERS:
        assert await demo_states(name, cache_size=5000, batch=7) == await demo_states(
            name, cache_size=0, batch=7
        )


def test_it_keeps_the_most_recently_used_within_its_size() -> None:
    cache = StateCache({"bookkeeping": bookkeeping.BookkeepingTab}, size=2)
    tab = aged_tab()
    for key in ("a", "b"):
        cache.put("bookkeeping", key, Stored(1, tab))
    assert cache.get("bookkeeping", "a") is not None  # "a" used last: "b" goes first
    cache.put("bookkeeping", "c", Stored(1, tab))
    assert len(cache) == 2
    assert cache.get("bookkeeping", "b") is None
    assert cache.get("bookkeeping", "a") is not None and cache.get("bookkeeping", "c")
    cache.pop("bookkeeping", "a")
    assert cache.get("bookkeeping", "a") is None
    cache.clear()
    assert len(cache) == 0
    nothing = StateCache({"bookkeeping": bookkeeping.BookkeepingTab}, size=0)
    nothing.put("bookkeeping", "a", Stored(1, tab))
    assert nothing.get("bookkeeping", "a") is None


def test_cached_states_leave_nothing_for_the_collector_to_walk() -> None:
    """Why the cache encodes: a full collection walks every tracked object, and stops the
    process meanwhile. A tab of a year as objects is dozens of them; encoded, none stays."""
    tab = replay(
        bookkeeping.RULEBOOK,
        [
            f.details("2026-01-02T08:00"),
            *submissions(months(2026, 2026)[:10]),
            f.tick("2026-11-20T12:00"),
        ],
    )
    assert len(tab.history) >= 10

    def tracked_after(keep: Any, count: int) -> int:
        gc.collect()
        before = len(gc.get_objects())
        for number in range(count):
            keep(f"a/c-{number}", Stored(1, tab))
        gc.collect()
        return len(gc.get_objects()) - before

    as_objects: dict[str, Stored] = {}
    per_tab_as_objects = (
        tracked_after(
            lambda key, stored: as_objects.__setitem__(key, Stored(1, copy(stored.state))), 200
        )
        / 200
    )
    cache = StateCache({"bookkeeping": bookkeeping.BookkeepingTab}, size=1000)
    grown = tracked_after(lambda key, stored: cache.put("bookkeeping", key, stored), 500)
    assert per_tab_as_objects > 20  # what keeping the objects costs, per tab
    assert grown < 20  # for 500 tabs: nothing per tab


def copy(state: Any) -> Any:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=type(state))
