"""The bounded maps that long-running processes keep their many keys in (services/recent.py)."""

from __future__ import annotations

import gc

from services.outbox import CONFIRMED_MEMORY, OutboxLedger
from services.recent import Recent
from tests.unit.test_outbox import confirmed as relay_confirmed


def test_the_oldest_go_first_and_a_key_used_again_goes_last() -> None:
    recent: Recent[bytes] = Recent(2)  # under sixteen: no slack, the size is exact
    recent.put("a", b"1")
    recent.put("b", b"2")
    assert recent.get("a") == b"1"  # "a" used last: "b" goes first
    recent.put("c", b"3")
    assert len(recent) == 2 and "b" not in recent
    assert recent.get("a") == b"1" and recent.get("c") == b"3"
    recent.put("a", b"4")  # put again: replaced, and last to go
    recent.put("d", b"5")
    assert recent.get("c") is None and recent.get("a") == b"4"
    recent.pop("a")
    assert recent.get("a") is None
    recent.clear()
    assert len(recent) == 0
    nothing: Recent[bytes] = Recent(0)
    nothing.put("a", b"1")
    assert nothing.get("a") is None


def test_many_put_at_once_are_kept_in_order_and_found_in_one_call() -> None:
    recent: Recent[None] = Recent(2)
    recent.put("a", None)
    recent.put_all(["b", "a", "c"], None)  # "a" again: last but one to go
    assert "b" not in recent and "a" in recent and "c" in recent
    assert recent.isdisjoint(["x", "b"]) and not recent.isdisjoint(["x", "c"])
    assert list(recent.keys()) == ["a", "c"]
    nothing: Recent[None] = Recent(0)
    nothing.put_all(["a"], None)
    assert "a" not in nothing


def test_a_large_one_grows_by_a_sixteenth_then_keeps_the_newest() -> None:
    recent: Recent[None] = Recent(1600)
    for n in range(1700):
        recent.put(f"k{n}", None)
        assert len(recent) <= 1700
    assert len(recent) == 1700  # 1,600 and its slack of 100
    recent.put("k1700", None)
    assert len(recent) == 1600  # cut back in one go to the newest 1,600
    assert "k100" not in recent and "k101" in recent and "k1700" in recent


def test_the_collector_never_visits_what_it_holds() -> None:
    """Why it is a plain dict: an OrderedDict or a set of these keys is visited, key by key, in
    every full pass of the collector, and the pass stops the whole process."""
    confirmed: Recent[None] = Recent(100)
    states: Recent[bytes] = Recent(100)
    for n in range(500):  # past the size: cut back several times
        confirmed.put(f"m-{n}", None)
        states.put(f"bookkeeping/a/c-{n}", bytes([n % 256]) * 64)
        states.get(f"bookkeeping/a/c-{n // 2}")
    gc.collect()
    assert not gc.is_tracked(confirmed._items) and not gc.is_tracked(states._items)
    ledger = OutboxLedger()
    relay_confirmed(ledger, "a/c-1", [f"m-{n}" for n in range(1000)])
    assert ledger.is_confirmed("m-999") and CONFIRMED_MEMORY >= 1000
    assert not gc.is_tracked(ledger._confirmed._items)
    # What is left to clear after a sweep (every tab, for minutes): after one full pass the
    # collector no longer walks it either; it is cleared oldest first.
    for n in range(500):
        relay_confirmed(ledger, f"a/c-{n}", [f"n-{n}"])
    gc.collect()
    assert not gc.is_tracked(ledger._untidy)
    assert ledger.untidy(3) == [("bookkeeping", f"a/c-{n}") for n in (1, 0, 2)]
    assert ledger.untidy(1) == [("bookkeeping", "a/c-3")] and ledger.has_untidy
