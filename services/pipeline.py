"""Applies a batch of message bodies to the aggregates of one consumer, knowing nothing of AMQP.

For each body it decides one outcome: applied (durably written), invalid or rejected (never
worth retrying: dead-letter it), or failed (a passing fault such as the database being down:
retry it later; or, when the store does not answer, wait for it). All messages of a batch that
touch the same aggregate are applied to one loaded state and written once. A clock tick only
starts a sweep (``services/sweep.py``), which the runner advances between batches.

Several batches may be under way at once: the runner hands over the next batch while the store
still writes those before, so that this process decodes, loads and applies the rules while the
store writes. An aggregate an earlier batch holds is taken up only once that batch has written
it. The batches' aggregates may be written at once, since they differ; their listing shards and
the sweep watermark are written one batch at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from consumers.archive import PackedYearsNeeded, as_stored, loaded
from consumers.outbound import outbound
from consumers.registry import ConsumerDefinition
from consumers.rulebook import Rejected, Rulebook
from consumers.tab import Tab
from contracts.clock import ClockTick
from contracts.envelope import Message
from contracts.fields import format_instant, normalize_instant
from contracts.registry import COMMANDS, INBOUND_EVENTS, INTERNAL, InvalidMessage, decode, type_name
from services.listings import LISTED_VERSION, ListingWriter
from services.listings import build as build_listings
from services.outbox import OutboxLedger, Unpublished
from services.signing import is_signed
from services.state_cache import StateCache
from services.store import Store, Stored, Write, is_unavailable
from services.store.port import PARTITION_FIELD
from services.sweep import Sweeper

Source = Literal["event", "command", "clock"]

# Which message types may come in through which door: a clock tick or a command published to
# the upstream exchange would otherwise let an outsider move time or act as a consultant.
ACCEPTED_FROM: Final[dict[Source, frozenset[str]]] = {
    "event": frozenset(type_name(t) for t in INBOUND_EVENTS),
    "command": frozenset(type_name(t) for t in COMMANDS),
    "clock": frozenset(type_name(t) for t in INTERNAL),
}

Kind = Literal["applied", "invalid", "rejected", "failed"]
# The code of a failure that says the store does not answer (or not in time), rather than that
# something is wrong with the message: the runner then pauses instead of retrying each message.
UNAVAILABLE: Final = "store_unavailable"

# Where the owner of an aggregate records what became of each command, for the API to answer
# a caller who stopped waiting (HTTP 202) and polls.
COMMAND_OUTCOMES: Final = "command_outcomes"
COMMAND_TYPES: Final = ACCEPTED_FROM["command"]
# Only the API sends commands and only the clock sends ticks: each signs what it sends.
SIGNED_TYPES: Final = ACCEPTED_FROM["command"] | ACCEPTED_FROM["clock"]


PEEK_LIMIT: Final = 1 << 20  # bytes of an invalid body worth parsing for its envelope


class MissingPackedYears(RuntimeError):
    """A tab names packed years whose documents are not in the store."""


def peek(body: bytes) -> dict[str, str]:
    """What can still be read of a body that did not decode: its id, type, agency and company,
    where present as short strings. For operators' logs; never trusted for anything else."""
    if len(body) > PEEK_LIMIT:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    fields = ("id", "type", "agency_id", "company_id")
    return {k: v for k in fields if isinstance(v := data.get(k), str) and 0 < len(v) <= 200}


@dataclass(frozen=True)
class Delivery:
    body: bytes
    source: Source | None
    routing_key: str = ""
    signature: object = None  # the signature header, which commands and ticks must carry


@dataclass
class Outcome:
    kind: Kind
    code: str = ""
    reason: str = ""
    message: Message | None = None
    detail: dict[str, Any] = field(default_factory=dict)


async def run_all(steps: Sequence[Coroutine[Any, Any, Any]]) -> None:
    """Runs ``steps`` at once and waits for all of them, then raises the first failure: none is
    left running unwatched when another fails."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _is_command(outcome: Outcome) -> bool:
    """A consultant's command that was applied or refused: its outcome is recorded."""
    message = outcome.message
    return (
        message is not None
        and message.type in COMMAND_TYPES
        and outcome.kind in ("applied", "rejected")
    )


def _outbound_ids(collection: str, key: str, version: int) -> Callable[[], str]:
    """Ids of the outbound messages of one write: stable, since they name the aggregate, the
    version of the write that holds them, and their place in it."""
    numbers = itertools.count()
    return lambda: f"{collection}/{key}/{version}/{next(numbers)}"


class ConflictsPersist(Exception):
    """Other writers kept winning the race for the same aggregates: try the batch later."""


@dataclass
class _Claim:
    """The aggregates a batch under way will write, and the earlier batches' claims it waits
    for before it takes one of them up (``Pipeline.handle``)."""

    number: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Its aggregates are written (or it failed): a later batch may take them up, while this
    # one still writes its listing.
    written: asyncio.Event = field(default_factory=asyncio.Event)
    earlier: dict[tuple[str, str], _Claim] = field(default_factory=dict)
    aggregates: list[tuple[str, str]] = field(default_factory=list)

    async def taken_up(self, collection: str, key: str) -> None:
        """Returns once no earlier batch still holds ``key`` of ``collection``."""
        claim = self.earlier.get((collection, key))
        if claim is not None:
            await claim.done.wait()


@dataclass
class _Changes:
    """What applying a batch's items to one kind of aggregate decided, before it is written."""

    recorded: dt.datetime  # when the outbound messages of these writes were made
    written: dict[str, Write] = field(default_factory=dict)  # by key; unchanged ones absent
    decided: dict[int, Outcome] = field(default_factory=dict)  # by delivery


@dataclass
class _Item:
    index: int | None  # the delivery it came from; None for a tick's due aggregates
    message: Message
    now: dt.datetime


class Pipeline:
    def __init__(
        self,
        definition: ConsumerDefinition,
        store: Store,
        wall_clock: Callable[[], dt.datetime],
        *,
        conflict_retries: int = 10,
        tick_chunk: int = 128,
        sweep_page: int = 512,
        cache_size: int = 20_000,
        secret: str = "",
        max_clock_skew: dt.timedelta = dt.timedelta(minutes=5),
        partition: int | None = None,
    ) -> None:
        self.definition = definition
        self.secret = secret
        self.max_clock_skew = max_clock_skew
        # A partition's writer marks what it writes, and sweeps and recovers only that.
        self.partition = partition
        if partition is not None:
            store = store.scoped(**{PARTITION_FIELD: partition})
        self.store = store
        self.wall_clock = wall_clock
        self.conflict_retries = conflict_retries
        # The aggregates this writer read or wrote last, so that a message for one of them
        # costs one write and no read. A copy gone stale (another replica wrote meanwhile) is
        # caught by the version check of the write, which then reloads it.
        self._cache = StateCache(
            {r.collection: r.state_type for r in definition.rulebooks}, cache_size
        )
        clocked = [r.collection for r in definition.rulebooks if r.follows_clock]
        self.sweeper = Sweeper(
            store,
            clocked,
            page=sweep_page,
            chunk=tick_chunk,
            marks="" if partition is None else f"@p{partition}",
        )
        self.outbox = OutboxLedger()
        self.listings = ListingWriter(store, conflict_retries=conflict_retries)
        # Of the batches under way, which holds each aggregate (the latest to claim it).
        self._claims: dict[tuple[str, str], _Claim] = {}
        self._claimed = itertools.count()
        # One batch's listing and watermark writes at a time: those of two batches would race
        # for the same listing shards (the watermark's lowering loses nothing to a race, see
        # ``MongoStore.lower``, and goes along).
        self._writing = asyncio.Lock()

    async def prepare(self) -> dict[str, int]:
        """Indexes, and the listings of aggregates stored before their owner kept one: how
        many of each kind it listed."""
        for rulebook in self.definition.rulebooks:
            indexes = rulebook.indexes
            if self.partition is not None and rulebook.follows_clock:
                indexes = (*indexes, ((PARTITION_FIELD, 1), ("due_at", 1)))
            await self.store.ensure_indexes(rulebook.collection, indexes)
        return await build_listings(
            self.store, self.definition.rulebooks, normalize_instant(self.wall_clock())
        )

    async def handle(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        messages: list[Message | None] = [None] * len(deliveries)
        work: dict[str, dict[str, list[_Item]]] = defaultdict(lambda: defaultdict(list))
        ticks: list[tuple[int, ClockTick]] = []
        wall = normalize_instant(self.wall_clock())
        for index, delivery in enumerate(deliveries):
            message, rulebook, refusal = self._admit(delivery, wall)
            messages[index] = message
            if refusal is not None:
                outcomes[index] = refusal
            elif isinstance(message, ClockTick):
                ticks.append((index, message))
            elif message is not None and rulebook is not None:
                # An event cannot speak for a time later than now: a skewed upstream clock must
                # not push a tab into the future.
                now = min(message.occurred_at, wall)
                work[rulebook.collection][rulebook.key(message)].append(_Item(index, message, now))
        claim = self._claim(work)
        try:
            await self._apply(work, outcomes, claim)
            for index, tick in ticks:
                sweeping = await self.sweeper.schedule(tick)
                outcomes[index] = Outcome("applied", message=tick, detail={"sweeping": sweeping})
            await self._record_commands(outcomes, wall)
        except Exception as error:  # any failure here (database down, a bug) is retried later
            reason = f"{type(error).__name__}: {error}"
            code = UNAVAILABLE if is_unavailable(error) else "transient"
            for index, outcome in enumerate(outcomes):
                # A command's outcome must be recorded before it is acked: applying it again
                # is harmless, a caller polling for an outcome never written is not.
                if outcome is None or _is_command(outcome):
                    outcomes[index] = Outcome("failed", code, reason, messages[index])
        finally:
            self._release(claim)
        return [o or Outcome("failed", "transient", "no outcome") for o in outcomes]

    def _claim(self, work: dict[str, dict[str, list[_Item]]]) -> _Claim:
        """Claims the batch's aggregates, before it awaits anything: a batch handed over later
        then waits for this one wherever their aggregates meet."""
        claim = _Claim(next(self._claimed))
        for collection, by_key in work.items():
            for key in by_key:
                held = self._claims.get((collection, key))
                if held is not None:
                    claim.earlier[(collection, key)] = held
                self._claims[(collection, key)] = claim
                claim.aggregates.append((collection, key))
        return claim

    def _release(self, claim: _Claim) -> None:
        claim.written.set()
        claim.done.set()
        for aggregate in claim.aggregates:
            if self._claims.get(aggregate) is claim:  # not claimed since by a later batch
                del self._claims[aggregate]

    def _admit(
        self, delivery: Delivery, wall: dt.datetime
    ) -> tuple[Message | None, Rulebook[Any] | None, Outcome | None]:
        try:
            message = decode(delivery.body)
        except InvalidMessage as error:
            return None, None, Outcome("invalid", error.code, error.reason)
        if delivery.source is not None and message.type not in ACCEPTED_FROM[delivery.source]:
            reason = f"{message.type} is not accepted from the {delivery.source} exchange"
            return None, None, Outcome("invalid", "wrong_source", reason, message)
        if message.type in SIGNED_TYPES and not is_signed(
            self.secret, delivery.body, delivery.signature
        ):
            reason = (
                f"{message.type} without a valid signature: only the API sends commands and"
                " only the clock sends ticks"
            )
            return None, None, Outcome("invalid", "unsigned", reason, message)
        if message.occurred_at > wall + self.max_clock_skew:
            reason = (
                f"occurred_at {format_instant(message.occurred_at)} is more than"
                f" {self.max_clock_skew.total_seconds():g} s after this consumer's clock"
                f" ({format_instant(wall)}): the sender's clock is wrong"
            )
            return None, None, Outcome("invalid", "future", reason, message)
        rulebook = self.definition.rulebook_for(message.type)
        if rulebook is None and not self.definition.rulebooks:
            # The catch-all of messages the broker could route nowhere.
            reason = f"no consumer handles {message.type} (routing key {delivery.routing_key!r})"
            return None, None, Outcome("invalid", "unrouted", reason, message)
        if rulebook is None:
            reason = (
                f"consumer {self.definition.name!r} does not handle {message.type}"
                f" (routing key {delivery.routing_key!r})"
            )
            return None, None, Outcome("invalid", "not_handled", reason, message)
        return message, rulebook, None

    async def _record_commands(self, outcomes: list[Outcome | None], at: dt.datetime) -> None:
        records = [
            {
                "_id": o.message.id,
                "type": o.message.type,
                "agency_id": getattr(o.message, "agency_id", None),
                "company_id": getattr(o.message, "company_id", None),
                "status": o.kind,
                "reason": o.reason,
                "at": at,
            }
            for o in outcomes
            if o is not None and o.message is not None and _is_command(o)
        ]
        await self.store.record(COMMAND_OUTCOMES, records)

    async def _references(
        self, rulebook: Rulebook[Any], items: list[_Item], claim: _Claim | None
    ) -> dict[tuple[str, str], Any]:
        """The other aggregates the batch's commands are checked against, as an earlier batch
        under way leaves them."""
        if rulebook.requires is None:
            return {}
        wanted: dict[str, set[str]] = defaultdict(set)
        for item in items:
            for collection, key in rulebook.requires(item.message):
                wanted[collection].add(key)
        found: dict[tuple[str, str], Any] = {}
        for collection, keys in wanted.items():
            if claim is not None:
                for key in keys:
                    held = self._claims.get((collection, key))
                    if held is not None and held.number < claim.number:
                        await held.done.wait()
                    await claim.taken_up(collection, key)
            state_type = self._rulebook(collection).state_type
            for key, stored in (await self.store.load(collection, state_type, keys)).items():
                found[(collection, key)] = stored.state
        return found

    def _rulebook(self, collection: str) -> Rulebook[Any]:
        return next(r for r in self.definition.rulebooks if r.collection == collection)

    async def _apply(
        self,
        work: dict[str, dict[str, list[_Item]]],
        outcomes: list[Outcome | None],
        claim: _Claim | None = None,
    ) -> None:
        settled: list[tuple[Rulebook[Any], dict[str, Stored], list[Any], list[Outcome | None]]]
        settled = []
        for collection, by_key in work.items():
            rulebook = self._rulebook(collection)
            touched: dict[str, Stored] = {}
            # Decided only once the listing is written too: a message whose listing a failure
            # lost comes again (services/listings.py).
            decided: list[Outcome | None] = [None] * len(outcomes)
            saved: list[Any] = []
            # The aggregates no earlier batch holds are written first, the others once it has
            # written them: a company whose messages two batches share must not hold back the
            # writes of all the others.
            earlier = claim.earlier if claim is not None else {}
            free = {k: v for k, v in by_key.items() if (collection, k) not in earlier}
            held = {k: v for k, v in by_key.items() if (collection, k) in earlier}
            if free:
                await self._settle(rulebook, free, decided, touched, saved, claim)
            if held:
                for key in held:
                    await earlier[(collection, key)].written.wait()
                await self._settle(rulebook, held, decided, touched, saved, claim)
            settled.append((rulebook, touched, saved, decided))
        if claim is not None:  # the next batch need not wait for our listing
            claim.written.set()
        async with self._writing:
            for rulebook, touched, saved, _ in settled:
                steps: list[Coroutine[Any, Any, Any]] = [
                    self.sweeper.written(rulebook.collection, saved)
                ]
                if rulebook.listed is not None:
                    steps.append(
                        self.listings.put(rulebook.collection, rulebook.listed, touched.values())
                    )
                await run_all(steps)
        for *_, decided in settled:
            for index, outcome in enumerate(decided):
                if outcome is not None:
                    outcomes[index] = outcome

    async def _settle(
        self,
        rulebook: Rulebook[Any],
        by_key: dict[str, list[_Item]],
        decided: list[Outcome | None],
        touched: dict[str, Stored],
        saved: list[Any],
        claim: _Claim | None,
    ) -> None:
        """Applies the items of ``by_key`` and writes the aggregates, again where another writer
        changed one meanwhile. The rules run before the batch's turn to write: meanwhile the
        store may still be writing the batch before."""
        changes = await self._changes(rulebook, by_key, touched, claim)
        pending = await self._write(rulebook, by_key, changes, decided, touched, saved)
        for _ in range(self.conflict_retries - 1):
            if not pending:
                break
            changes = await self._changes(rulebook, pending, touched, None)
            pending = await self._write(rulebook, pending, changes, decided, touched, saved)
        if pending:
            raise ConflictsPersist(
                f"{len(pending)} aggregates of {rulebook.collection} kept changing under us"
            )

    async def _changes(
        self,
        rulebook: Rulebook[Any],
        by_key: dict[str, list[_Item]],
        touched: dict[str, Stored],
        claim: _Claim | None,
    ) -> _Changes:
        """Loads the aggregates and applies the items to them; ``touched`` gets each one left
        unchanged (its listing may still lack a write whose listing a crash lost)."""
        references = await self._references(
            rulebook, [i for v in by_key.values() for i in v], claim
        )
        changes = _Changes(normalize_instant(self.wall_clock()))
        stored = await self._load(rulebook, list(by_key))
        for key, items in by_key.items():
            await self._decide(rulebook, key, items, stored.get(key), references, changes)
            if key not in changes.written and (current := stored.get(key)) is not None:
                touched[key] = current
        return changes

    async def _decide(
        self,
        rulebook: Rulebook[Any],
        key: str,
        items: list[_Item],
        current: Stored | None,
        references: dict[tuple[str, str], Any],
        changes: _Changes,
    ) -> None:
        """Applies ``items`` to the aggregate ``key`` as ``current`` holds it, into ``changes``."""
        before = current.state if current else None
        version = (current.version if current else 0) + 1
        next_id = _outbound_ids(rulebook.collection, key, version)
        state = before
        for item in items:
            try:
                if rulebook.validate is not None:
                    rulebook.validate(item.message, references)
                while True:
                    try:
                        applied = self._applied(rulebook, state, item, changes.recorded, next_id)
                        break
                    except PackedYearsNeeded as needed:
                        found = await self._packed_years(rulebook, key, state, needed.years)
                        if state is before:
                            before = found
                        state = found
                state = applied
                outcome = Outcome("applied", message=item.message)
            except Rejected as refusal:
                outcome = Outcome("rejected", "rejected", refusal.reason, item.message)
            if item.index is not None:
                changes.decided[item.index] = outcome
        if state is not None and state != before:
            if rulebook.listed is not None and (
                before is None or rulebook.listed(state) != rulebook.listed(before)
            ):
                state = msgspec.structs.replace(state, **{LISTED_VERSION: version})
            changes.written[key] = Write(key, current.version if current else 0, state)

    async def _write(
        self,
        rulebook: Rulebook[Any],
        by_key: dict[str, list[_Item]],
        changes: _Changes,
        outcomes: list[Outcome | None],
        touched: dict[str, Stored],
        saved: list[Any],
    ) -> dict[str, list[_Item]]:
        """Writes ``changes``; the items of the aggregates another writer changed meanwhile,
        to apply again. ``touched`` and ``saved`` get each aggregate written."""
        writes = list(changes.written.values())
        conflicts = await self.store.save(rulebook.collection, writes)
        for write in writes:
            if write.key not in conflicts:
                saved.append(write.state)
                version = write.expected_version + 1
                # Kept as a load would find it: the packed years just written are in the store
                # now, and a later write of this state must not send them again.
                written = Stored(version, as_stored(write.state))
                self._cache.put(rulebook.collection, write.key, written)
                self._hold_outbox(rulebook.collection, write.key, version, write.state)
                touched[write.key] = written
        for key in conflicts:
            self._cache.pop(rulebook.collection, key)
        for key, items in by_key.items():
            if key in conflicts:
                continue
            for item in items:
                if item.index is not None:
                    outcomes[item.index] = changes.decided[item.index]
        return {key: by_key[key] for key in conflicts}

    @staticmethod
    def _applied(
        rulebook: Rulebook[Any],
        state: Any,
        item: _Item,
        recorded: dt.datetime,
        next_id: Callable[[], str],
    ) -> Any:
        """``state`` after ``item``, with what the change tells the outside world in its
        outbox."""
        applied = rulebook.apply(state, item.message, item.now)
        if isinstance(applied, Tab):
            told = outbound(rulebook.collection, state, applied, item.message, recorded, next_id)
            if told:
                applied = msgspec.structs.replace(applied, outbox=[*applied.outbox, *told])
        return applied

    async def _packed_years(
        self, rulebook: Rulebook[Any], key: str, state: Any, years: frozenset[str]
    ) -> Any:
        """``state`` with the bytes of its packed ``years`` loaded (consumers/archive.py): a
        message about a packed year needs them, the others never do."""
        if any(state.archive[year].packed for year in years):  # a rule asked twice: a bug
            raise RuntimeError(f"packed years {sorted(years)} of {key} asked for again")
        digests = {year: state.archive[year].digest for year in years}
        found = await self.store.parts(rulebook.collection, key, digests)
        if len(found) < len(digests):
            # Written before the state that names them and never changed or deleted: only a
            # damaged database lacks them. The message fails, is retried, then dead-lettered.
            missing = sorted(set(digests) - set(found))
            raise MissingPackedYears(f"{rulebook.collection} {key}: packed years {missing} missing")
        return loaded(state, found)

    async def _load(self, rulebook: Rulebook[Any], keys: list[str]) -> dict[str, Stored]:
        collection = rulebook.collection
        found: dict[str, Stored] = {}
        missing = []
        for key in keys:
            cached = self._cache.get(collection, key)
            if cached is None:
                missing.append(key)
            elif isinstance(cached.state, Tab):
                # What the broker confirmed since it was cached leaves its outbox now.
                found[key] = Stored(cached.version, self._without_confirmed(cached.state))
            else:
                found[key] = cached
        if missing:
            loaded = await self.store.load(collection, rulebook.state_type, missing)
            for key, stored in loaded.items():
                self._cache.put(collection, key, stored)
                # Left unpublished by a writer that stopped (or crashed) after its write.
                self._hold_outbox(collection, key, stored.version, stored.state)
            found.update(loaded)
        return found

    # ------------------------------------------------------------------ the outbox
    def _hold_outbox(self, collection: str, key: str, version: int, state: Any) -> None:
        if isinstance(state, Tab):
            self.outbox.hold(collection, key, version, state.outbox)

    async def recover_outboxes(self) -> int:
        """Finds what a writer before us wrote and did not see published; how many aggregates."""
        found = 0
        for rulebook in self.definition.rulebooks:
            if not issubclass(rulebook.state_type, Tab):
                continue
            pending = await self.store.pending_outboxes(rulebook.collection, rulebook.state_type)
            for key, stored in pending.items():
                cached = self._cache.get(rulebook.collection, key)
                if cached is None or cached.version <= stored.version:
                    self._cache.put(rulebook.collection, key, stored)
                    self._hold_outbox(rulebook.collection, key, stored.version, stored.state)
                    found += 1
        return found

    def published(self, items: list[Unpublished]) -> None:
        """The messages of ``items`` are confirmed by the broker: they leave the remembered
        state when it is next loaded (rather than decoding and encoding it again now), and the
        stored one with the aggregate's next write (or ``tidy``)."""
        self.outbox.confirm(items)

    def _without_confirmed(self, state: Any) -> Any:
        remaining = self.outbox.unconfirmed(state.outbox)
        if remaining is state.outbox:
            return state
        return msgspec.structs.replace(state, outbox=remaining)

    async def tidy(self, limit: int = 64) -> int:
        """Writes up to ``limit`` aggregates whose stored outbox still holds confirmed messages;
        how many were written. For a consumer with nothing else to do."""
        by_collection: dict[str, list[tuple[str, Stored | None]]] = defaultdict(list)
        for collection, key in self.outbox.untidy(limit):
            by_collection[collection].append((key, self._cache.get(collection, key)))
        written = 0
        for collection, entries in by_collection.items():
            rulebook = self._rulebook(collection)
            missing = [key for key, cached in entries if cached is None]
            loaded = await self.store.load(collection, rulebook.state_type, missing)
            writes = []
            for key, cached in entries:
                if cached is not None:  # stripped when confirmed; the stored one is not yet
                    writes.append(Write(key, cached.version, self._without_confirmed(cached.state)))
                elif (stored := loaded.get(key)) is not None:
                    state = self._without_confirmed(stored.state)
                    if state is not stored.state:
                        writes.append(Write(key, stored.version, state))
            conflicts = await self.store.save(collection, writes)
            for write in writes:
                if write.key in conflicts:  # another writer was first; its write holds the truth
                    self._cache.pop(collection, write.key)
                    continue
                stored = Stored(write.expected_version + 1, write.state)
                self._cache.put(collection, write.key, stored)
                written += 1
        return written

    def forget(self) -> None:
        """Drops what this writer remembers (a new session: others may have written since)."""
        self._cache.clear()
        self.sweeper.forget()
        self.outbox.forget()
        self.listings.forget()

    @property
    def sweeping(self) -> bool:
        return self.sweeper.busy

    async def sweep_step(self) -> int:
        """Advances the sweep under way by one step; the number of aggregates it applied."""
        return await self.sweeper.step(self._apply_tick)

    async def _apply_tick(self, collection: str, keys: Sequence[str], tick: ClockTick) -> None:
        items = {key: [_Item(None, tick, tick.occurred_at)] for key in keys}
        await self._apply({collection: items}, [])
