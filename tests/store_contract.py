"""One behaviour suite for every store implementation (in-memory and MongoDB).

A subclass provides the ``store`` fixture; the tests here then hold it to the port's promises.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any, ClassVar

import msgspec
import pytest

from contracts.outbound import Cause, OutboundMessage, StatusChanged
from services.store import Store, Write
from services.store.port import COMPRESSED_FROM, LZ4_FRAME_MAGIC, VERSION_FIELD, plain


class Thing(msgspec.Struct, kw_only=True):
    name: str
    day: dt.date
    at: dt.datetime
    due_at: dt.datetime | None = None
    items: dict[str, list[int]] = msgspec.field(default_factory=dict)


class Boxed(msgspec.Struct, kw_only=True):
    STORED_AS_TEXT: ClassVar[frozenset[str]] = frozenset({"outbox", "items"})

    name: str
    items: dict[str, list[dt.datetime]] = msgspec.field(default_factory=dict)
    outbox: list[OutboundMessage] = msgspec.field(default_factory=list)
    blobs: dict[str, bytes] = msgspec.field(default_factory=dict)  # as a tab's packed years


class Nested(msgspec.Struct, kw_only=True):
    """``Thing`` as a later version would have it: ``items`` kept as text."""

    STORED_AS_TEXT: ClassVar[frozenset[str]] = frozenset({"items"})

    name: str
    day: dt.date
    at: dt.datetime
    due_at: dt.datetime | None = None
    items: dict[str, list[int]] = msgspec.field(default_factory=dict)


class Part(msgspec.Struct, frozen=True, omit_defaults=True):
    digest: str
    packed: bytes = b""


class Parted(msgspec.Struct, kw_only=True):
    """A state whose parts' bytes the store keeps apart (as a tab's packed years)."""

    STORED_APART: ClassVar[str] = "parts"

    name: str
    parts: dict[str, Part] = msgspec.field(default_factory=dict)


T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)


async def all_due(store: Store, now: dt.datetime, **window: Any) -> list[tuple[dt.datetime, str]]:
    """Every pair the store finds due, in order (it hands them over in none)."""
    return sorted([pair async for batch in store.due("things", now, **window) for pair in batch])


def thing(name: str, due_at: dt.datetime | None = None) -> Thing:
    return Thing(name=name, day=dt.date(2026, 3, 1), at=T0, due_at=due_at, items={"a": [1, 2]})


class StoreContract:
    @pytest.fixture
    def store(self) -> Any:
        raise NotImplementedError

    async def test_a_saved_state_loads_back_equal(self, store: Store) -> None:
        assert await store.save("things", [Write("k1", 0, thing("one"))]) == set()
        loaded = await store.load("things", Thing, ["k1", "missing"])
        assert set(loaded) == {"k1"}
        assert loaded["k1"].version == 1
        assert loaded["k1"].state == thing("one")

    async def test_writing_with_the_version_read_wins_once(self, store: Store) -> None:
        await store.save("things", [Write("k1", 0, thing("one"))])
        first = await store.save("things", [Write("k1", 1, thing("two"))])
        second = await store.save("things", [Write("k1", 1, thing("three"))])
        assert (first, second) == (set(), {"k1"})
        loaded = await store.load("things", Thing, ["k1"])
        assert loaded["k1"].version == 2
        assert loaded["k1"].state.name == "two"

    async def test_two_creators_race_and_one_wins(self, store: Store) -> None:
        assert await store.save("things", [Write("k1", 0, thing("a"))]) == set()
        assert await store.save("things", [Write("k1", 0, thing("b"))]) == {"k1"}

    async def test_a_bulk_write_reports_exactly_the_conflicting_keys(self, store: Store) -> None:
        await store.save("things", [Write(k, 0, thing(k)) for k in ("a", "b", "c")])
        conflicts = await store.save(
            "things",
            [
                Write("a", 1, thing("a2")),
                Write("b", 7, thing("b2")),  # stale
                Write("c", 0, thing("c2")),  # exists already
                Write("d", 0, thing("d")),
            ],
        )
        assert conflicts == {"b", "c"}
        loaded = await store.load("things", Thing, ["a", "b", "c", "d"])
        assert {k: s.state.name for k, s in loaded.items()} == {
            "a": "a2",
            "b": "b",
            "c": "c",
            "d": "d",
        }

    async def test_due_lists_states_whose_time_has_come(self, store: Store) -> None:
        hour = dt.timedelta(hours=1)
        await store.save(
            "things",
            [
                Write("early", 0, thing("e", T0 - hour)),
                Write("now", 0, thing("n", T0)),
                Write("later", 0, thing("l", T0 + hour)),
                Write("never", 0, thing("x", None)),
            ],
        )
        assert await all_due(store, T0) == [(T0 - hour, "early"), (T0, "now")]
        assert await all_due(store, T0, after=T0 - hour) == [(T0, "now")]
        assert await all_due(store, T0 - hour) == [(T0 - hour, "early")]

    async def test_due_comes_in_batches_of_at_most_the_size_asked(self, store: Store) -> None:
        minute = dt.timedelta(minutes=1)
        dues = {f"k{i}": T0 - i * minute for i in range(7)}
        await store.save("things", [Write(k, 0, thing(k, due)) for k, due in dues.items()])
        batches = [batch async for batch in store.due("things", T0, batch=3)]
        assert all(1 <= len(batch) <= 3 for batch in batches) and len(batches) >= 3
        assert sorted(key for batch in batches for _, key in batch) == sorted(dues)

    async def test_due_since_a_watermark_finds_the_same_across_days(self, store: Store) -> None:
        midnight = dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC)  # 2 March begins in Stockholm
        day = dt.timedelta(days=1)
        dues = {"a": midnight, "b": midnight + day, "c": midnight, "d": midnight + 3 * day}
        await store.save("things", [Write(k, 0, thing(k, due)) for k, due in dues.items()])
        until = midnight + 2 * day
        everything = await all_due(store, until)
        assert [k for _, k in everything] == ["a", "c", "b"]
        assert await all_due(store, until, since=midnight) == everything
        # A sweep that a later tick extends reads on from the earlier tick, to the later.
        assert await all_due(store, until, after=midnight, since=midnight) == [(until - day, "b")]
        assert await all_due(store, until + day, after=until, since=midnight) == [
            (until + day, "d")
        ]

    async def test_a_bulk_of_500_replaces_completes_and_the_store_still_answers(
        self, store: Store
    ) -> None:
        keys = [f"k{i:03d}" for i in range(500)]
        assert await store.save("things", [Write(k, 0, thing(k)) for k in keys]) == set()
        assert await store.save("things", [Write(k, 1, thing(k + "!")) for k in keys]) == set()
        loaded = await store.load("things", Thing, keys)
        assert {s.version for s in loaded.values()} == {2}
        assert loaded["k499"].state.name == "k499!"
        await store.ping()

    async def test_lower_keeps_the_earlier_instant_of_an_existing_document(
        self, store: Store
    ) -> None:
        hour = dt.timedelta(hours=1)
        await store.lower("marks", "m", "next", T0)  # no such document: nothing is created
        assert await store.fetch("marks", ["m"]) == []
        await store.record("marks", [{"_id": "m", "next": T0}])
        await store.lower("marks", "m", "next", T0 + hour)
        await store.lower("marks", "m", "next", T0 - hour)
        (mark,) = await store.fetch("marks", ["m"])
        assert mark["next"] == T0 - hour

    async def test_racing_lowers_of_one_mark_keep_the_earliest(self, store: Store) -> None:
        """A sweep watermark has two writers for a moment when a replica hands a partition
        over: whichever lowers it, the earliest instant stays, or the sweep would never read the
        days before the mark."""
        import asyncio

        minute = dt.timedelta(minutes=1)
        for round_ in range(4):
            key = f"raced-{round_}"
            await store.record("marks", [{"_id": key, "next": T0 + minute}])
            await store.lower("marks", key, "next", T0)  # (on FerretDB it has a version now)
            instants = [T0 - (n + 1) * minute for n in range(16)]
            await asyncio.gather(*(store.lower("marks", key, "next", at) for at in instants))
            (mark,) = await store.fetch("marks", [key])
            assert mark["next"] == min(instants)

    async def test_settle_sets_a_mark_still_at_the_version_read_and_else_only_lowers(
        self, store: Store
    ) -> None:
        day = dt.timedelta(days=1)

        async def mark(key: str = "s") -> dict[str, Any]:
            (found,) = await store.fetch("marks", [key])
            return found

        assert await store.settle("marks", "s", "next", T0 + day, None)  # none yet: made
        assert (await mark())["next"] == T0 + day
        seen = (await mark())[VERSION_FIELD]
        assert await store.settle("marks", "s", "next", T0 + 2 * day, seen)  # later: raised
        seen = (await mark())[VERSION_FIELD]
        await store.lower("marks", "s", "next", T0)  # another writer lowers it meanwhile
        assert (await mark())[VERSION_FIELD] != seen
        assert not await store.settle("marks", "s", "next", T0 + 5 * day, seen)  # kept
        assert (await mark())["next"] == T0
        assert not await store.settle("marks", "s", "next", T0 - day, seen)  # only lowered
        assert (await mark())["next"] == T0 - day
        assert not await store.settle("marks", "s", "next", T0 + day, None)  # made meanwhile
        assert (await mark())["next"] == T0 - day
        # A mark from before marks had versions is set once; from then on it has one.
        await store.record("marks", [{"_id": "old", "next": T0}])
        assert await store.settle("marks", "old", "next", T0 + day, None)
        assert (await mark("old"))["next"] == T0 + day
        assert (await mark("old"))[VERSION_FIELD] is not None

    async def test_a_settle_racing_lowers_keeps_the_earliest_lowering(self, store: Store) -> None:
        """A sweep ends on the replica that took a partition over while the one letting go of
        it still lowers the watermark: the lowering stays, whichever lands first."""
        import asyncio

        minute = dt.timedelta(minutes=1)
        for round_ in range(4):
            key = f"settled-{round_}"
            assert await store.settle("marks", key, "next", T0, None)
            (found,) = await store.fetch("marks", [key])
            instants = [T0 - (8 - n) * minute for n in range(8)]  # the earliest first
            later = T0 + 60 * minute
            writes = [store.lower("marks", key, "next", at) for at in instants]
            # The settle goes out after the earliest lowering and a few more, later each round.
            settle = store.settle("marks", key, "next", later, found[VERSION_FIELD])
            writes.insert(1 + 2 * round_, settle)
            await asyncio.gather(*writes)
            (mark,) = await store.fetch("marks", [key])
            assert mark["next"] == min(instants)

    async def test_each_reads_every_aggregate_whoever_wrote_it_a_page_at_a_time(
        self, store: Store
    ) -> None:
        await store.save("things", [Write(f"k{n}", 0, thing(f"n{n}")) for n in range(7)])
        await store.scoped(partition=1).save("things", [Write("kp", 0, thing("p"))])
        await store.save("things", [Write("k0", 1, thing("n0 again"))])
        pages = [page async for page in store.scoped(partition=2).each("things", Thing, page=3)]
        assert [len(p) for p in pages] == [3, 3, 2]
        found = {s.state.name: s.version for p in pages for s in p}
        assert found == {"n0 again": 2, **{f"n{n}": 1 for n in range(1, 7)}, "p": 1}
        assert [p async for p in store.each("nothing", Thing)] == []

    async def test_indexes_can_be_ensured_twice(self, store: Store) -> None:
        index = (("name", 1), ("day", 1))
        await store.ensure_indexes("things", [index])
        await store.ensure_indexes("things", [index])
        await store.ping()

    async def test_records_are_upserted_by_id(self, store: Store) -> None:
        await store.record("records", [{"_id": "a", "n": 1}, {"_id": "b", "n": 1}])
        await store.record("records", [{"_id": "a", "n": 2}])
        await store.record("records", [])
        found = await store.fetch("records", ["a", "b", "c"])
        assert sorted((d["_id"], d["n"]) for d in found) == [("a", 2), ("b", 1)]

    async def test_racing_upserts_of_one_new_record_all_succeed(self, store: Store) -> None:
        """Replicas (partitions of a kind, say) record the same marker as they start: none of
        them fails, and one document is left."""
        import asyncio

        for round_ in range(5):
            key = f"new-{round_}"
            await asyncio.gather(
                *(store.record("markers", [{"_id": key, "by": n}]) for n in range(8))
            )
            (found,) = await store.fetch("markers", [key])
            assert found["by"] in range(8)

    async def test_old_records_can_be_deleted_by_a_time_field(self, store: Store) -> None:
        t = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        await store.record(
            "records",
            [
                {"_id": "old", "at": t - dt.timedelta(days=8)},
                {"_id": "edge", "at": t - dt.timedelta(days=7)},
                {"_id": "new", "at": t},
            ],
        )
        assert await store.delete_before("records", "at", t - dt.timedelta(days=7)) == 1
        found = await store.fetch("records", ["old", "edge", "new"])
        assert sorted(d["_id"] for d in found) == ["edge", "new"]

    async def test_a_ttl_can_be_asked_for_twice_with_another_length(self, store: Store) -> None:
        first = await store.ensure_ttl("records", "at", 7 * 86400)
        again = await store.ensure_ttl("records", "at", 86400)
        assert first == again  # the server expires them, or the caller deletes them itself
        await store.ping()

    async def test_counters_add_up(self, store: Store) -> None:
        await store.increment("counters", "c", {"applied": 2, "retried": 1})
        await store.increment("counters", "c", {"applied": 3})
        (counter,) = await store.fetch("counters", ["c"])
        assert (counter["applied"], counter["retried"]) == (5, 1)

    async def test_racing_increments_of_one_counter_all_count(self, store: Store) -> None:
        """Two writers may add to one counters document at once: a partition's runner that is
        letting go of it finishes its last write while the replica taking over makes its
        first. None of the counts is lost."""
        import asyncio

        await asyncio.gather(
            *(store.increment("counters", "raced", {"applied": 1, "retried": 2}) for _ in range(24))
        )
        (counter,) = await store.fetch("counters", ["raced"])
        assert (counter["applied"], counter["retried"]) == (24, 48)

    async def test_racing_writers_exactly_one_wins(self, store: Store) -> None:
        import asyncio

        await store.save("things", [Write("k1", 0, thing("start"))])
        rivals = [store.save("things", [Write("k1", 1, thing(f"w{i}"))]) for i in range(8)]
        results = await asyncio.gather(*rivals)
        assert sum(1 for conflicts in results if not conflicts) == 1
        loaded = await store.load("things", Thing, ["k1"])
        assert loaded["k1"].version == 2

    async def test_a_scoped_store_marks_what_it_writes_and_finds_only_that(
        self, store: Store
    ) -> None:
        """A partition's view: its writes carry the partition, and due and unpublished
        aggregates are looked for among its own only; loads and plain documents are shared."""
        p0, p1 = store.scoped(partition=0), store.scoped(partition=1)
        await p0.save("things", [Write("a", 0, thing("a", T0))])
        await p1.save("things", [Write("b", 0, thing("b", T0))])
        since = T0 - dt.timedelta(days=1)
        assert await all_due(p0, T0) == [(T0, "a")]
        assert await all_due(p1, T0, since=since) == [(T0, "b")]
        assert await all_due(store, T0) == [(T0, "a"), (T0, "b")]
        assert set(await p1.load("things", Thing, ["a", "b"])) == {"a", "b"}
        (document,) = await store.fetch("things", ["b"])
        assert document["partition"] == 1
        await p0.record("replicas", [{"_id": "r-1", "consumer": "x"}])
        assert [d["_id"] for d in await p1.find_plain("replicas", {"consumer": "x"})] == ["r-1"]
        assert await p1.find_plain("replicas", {"consumer": "y"}) == []

    async def test_fields_a_type_names_are_kept_as_text_and_load_back_as_they_were(
        self, store: Store
    ) -> None:
        """The fields no query looks into travel as one JSON text each (FerretDB converts every
        nested field of a write), compressed when long, and load back as the values they were;
        an outbox found after a crash among them."""
        told = [
            StatusChanged(
                id=f"things/o/1/{i}",
                occurred_at=T0,
                agency_id="a-1",
                company_id="c-1",
                domain="vat",
                period=f"2026-{i % 12 + 1:02d}",
                from_="upcoming",
                to="late",
                at=T0,
                cause=Cause(kind="time", id="tick-1"),
            )
            for i in range(20)
        ]
        state = Boxed(name="o", outbox=told, items={"a": [T0]})
        await store.save("things", [Write("o", 0, state), Write("e", 0, Boxed(name="e"))])
        (document,) = await store.fetch("things", ["o"])
        assert isinstance(document["outbox"], bytes)  # twenty messages: long, so compressed
        assert len(document["outbox"]) < len(msgspec.json.encode(told)) / 2
        assert isinstance(document["items"], str)  # short: a text one can read
        assert document["name"] == "o"  # what queries look at stays a plain field
        assert document["outbox_pending"] is True
        assert plain(document, Boxed)["items"] == {"a": [T0]}
        assert plain(document, Boxed)["outbox"][0]["at"] == T0
        assert (await store.load("things", Boxed, ["o"]))["o"].state == state
        pending = await store.pending_outboxes("things", Boxed)
        assert {key: stored.state for key, stored in pending.items()} == {"o": state}

    async def test_bytes_are_stored_as_binary_and_load_back_as_they_were(
        self, store: Store
    ) -> None:
        state = Boxed(name="b", blobs={"2024": bytes(range(256)), "2025": b""})
        await store.save("things", [Write("b", 0, state)])
        (document,) = await store.fetch("things", ["b"])
        assert document["blobs"]["2024"] == bytes(range(256))  # not base64 text
        assert (await store.load("things", Boxed, ["b"]))["b"].state == state

    async def test_parts_are_kept_apart_and_loaded_only_when_asked_for(self, store: Store) -> None:
        state = Parted(
            name="p",
            parts={"2024": Part("d24", bytes(range(256))), "2025": Part("d25", b"\x00" * 9)},
        )
        await store.save("things", [Write("p", 0, state)])
        (document,) = await store.fetch("things", ["p"])
        assert document["parts"] == {"2024": {"digest": "d24"}, "2025": {"digest": "d25"}}
        loaded = (await store.load("things", Parted, ["p"]))["p"].state
        assert loaded == Parted(name="p", parts={"2024": Part("d24"), "2025": Part("d25")})
        found = await store.parts("things", "p", {"2024": "d24", "2025": "d25"})
        assert found == {"2024": bytes(range(256)), "2025": b"\x00" * 9}
        # A part is named by its digest: another digest is another document.
        assert await store.parts("things", "p", {"2024": "other"}) == {}
        assert await store.parts("things", "q", {"2024": "d24"}) == {}
        # Saving a state that names a part already stored (loaded, or packed the same way
        # again) keeps it as it is.
        again = Parted(name="p2", parts={"2024": Part("d24", bytes(range(256)))})
        await store.save("things", [Write("p", 1, again), Write("p3", 0, again)])
        assert await store.parts("things", "p", {"2024": "d24"}) == {"2024": bytes(range(256))}
        assert await store.parts("things", "p3", {"2024": "d24"}) == {"2024": bytes(range(256))}

    async def test_a_long_text_written_before_texts_were_compressed_still_loads(
        self, store: Store
    ) -> None:
        items = {str(i): [T0] for i in range(200)}
        text = msgspec.json.encode(items).decode()
        assert len(text) >= COMPRESSED_FROM  # what the store now compresses
        await store.record("things", [{"_id": "t", "_v": 1, "name": "t", "items": text}])
        assert (await store.load("things", Boxed, ["t"]))["t"].state.items == items
        (document,) = await store.fetch("things", ["t"])
        assert plain(document, Boxed)["items"]["199"] == [T0]

    async def test_a_text_compressed_with_zlib_before_the_store_took_lz4_still_loads(
        self, store: Store
    ) -> None:
        items = {str(i): [T0] for i in range(200)}
        packed = zlib.compress(msgspec.json.encode(items), 1)
        await store.record("things", [{"_id": "z", "_v": 1, "name": "z", "items": packed}])
        assert (await store.load("things", Boxed, ["z"]))["z"].state.items == items
        (document,) = await store.fetch("things", ["z"])
        assert plain(document, Boxed)["items"]["199"] == [T0]
        # Written again, it is LZ4's.
        await store.save("things", [Write("z", 1, Boxed(name="z", items=items))])
        (document,) = await store.fetch("things", ["z"])
        assert document["items"].startswith(LZ4_FRAME_MAGIC)
        assert (await store.load("things", Boxed, ["z"]))["z"].state.items == items

    async def test_a_document_written_with_nested_fields_still_loads(self, store: Store) -> None:
        """Documents written before a field was kept as text hold it nested."""
        await store.save("things", [Write("n", 0, thing("n"))])  # Thing keeps all fields plain
        (document,) = await store.fetch("things", ["n"])
        assert document["items"] == {"a": [1, 2]}
        loaded = (await store.load("things", Nested, ["n"]))["n"].state
        assert loaded.items == {"a": [1, 2]}
