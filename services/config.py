"""Settings, all from environment variables with defaults that work on one machine.

Every variable is listed in the README; ``Settings.from_env`` is the only reader of the
environment, so a test builds a ``Settings`` directly.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from consumers.closing import DEFAULT_CLOSING_URL
from services.eventloop import CHOICES


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names, as aio-pika reads it: "/" when the path is empty."""
    path = urllib.parse.urlsplit(amqp_url).path.lstrip("/")
    return urllib.parse.unquote(path) or "/"


def _floats(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not values or any(v <= 0 for v in values):
        raise ValueError("expected a comma-separated list of positive numbers of seconds")
    return values


def _url_template(text: str) -> str:
    try:
        text.format(company_id="c", fiscal_year_end="2026-12-31")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"a URL with the placeholders {{company_id}} and {{fiscal_year_end}}: {error!r}"
        ) from None
    return text


def _event_loop(text: str) -> str:
    if text not in CHOICES:
        raise ValueError(f"expected one of {', '.join(CHOICES)}")
    if text == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("uvloop is not installed; choose auto or asyncio")
    return text


MAX_PARTITIONS = 64


def _partitions(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PARTITIONS:
        raise ValueError(f"expected a number of partitions from 1 to {MAX_PARTITIONS}")
    return value


@dataclass(frozen=True)
class Settings:
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "backoffice"
    mongo_timeout_ms: int = 5000
    # How many unacknowledged messages a consumer holds, and how many it applies in one write.
    # Besides its aggregates, a batch writes up to eight listing shards, a listing head, the
    # sweep watermark and the counters, however few messages it holds: 256 spreads those over
    # twice the messages of 128, which paid in paired runs (docs/benchmarks.md (18)). As many
    # batches are under way as the prefetch holds: three (docs/benchmarks.md (22)).
    prefetch: int = 768
    batch_size: int = 256
    batch_linger_ms: int = 20
    # Aggregates a consumer keeps in memory after reading or writing them (0: none), encoded:
    # about 4 KB a tab. Enough for every tab of a 10,000-company agency, so a sweep reads none.
    cache_size: int = 20_000
    # Delays before each retry of a message that failed for a passing reason (the database is
    # down, say); after the last one it goes to the dead-letter queue.
    retry_delays: tuple[float, ...] = field(default=(1.0, 5.0, 30.0, 120.0, 600.0, 1800.0))
    # The broker dead-letters a message delivered this often without an ack (a consumer that
    # crashes on it every time): the last guard against a message retried forever.
    delivery_limit: int = 20
    tick_seconds: float = 60.0
    # Partitions per consumer kind (services/partitions.py): 1 keeps one queue with a single
    # active consumer; P > 1 hashes each aggregate to one of P queues, which the replicas share.
    partitions: int = 1
    # Signs commands and clock ticks (services/signing.py): the API, the clock and every
    # consumer share it; required to start any of them.
    service_secret: str = ""
    # A message dated further than this after the receiver's clock is dead-lettered (`future`):
    # one event from a wrong clock must not move a tab's time forward for good.
    max_clock_skew_s: float = 300.0
    # On SIGTERM, how long a batch may still wait for the store before it goes back to the queue.
    shutdown_grace_s: float = 10.0
    # The link to a fiscal year's closing in the client's accounting system (closing rows).
    closing_url: str = DEFAULT_CLOSING_URL
    # The HTTP API: where it listens, the HS256 secret of callers' tokens (required to start
    # it), and how long a command waits for its owner's answer before the caller gets 202.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    jwt_secret: str = ""
    # When set, a token's `aud` and `iss` claims must be these.
    jwt_audience: str = ""
    jwt_issuer: str = ""
    command_timeout_s: float = 3.0
    # How old a company's entry (its users) and an agency's overview may be when the API answers
    # from memory (services/api/fresh.py); 0 reads the store for every request.
    read_max_age_ms: int = 500
    # How long the outcome of a command, and a command whose caller got 202, are kept.
    command_records_ttl_s: float = 7 * 86400.0
    # The event loop (services/eventloop.py): auto takes uvloop where it is installed.
    event_loop: str = "auto"
    log_format: str = "auto"  # auto: console on a terminal, JSON otherwise; or json, console
    log_level: str = "info"

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays) + 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f"BACKOFFICE_{f.name.upper()}"
            if name not in env:
                continue
            raw = env[name]
            try:
                if f.name == "retry_delays":
                    values[f.name] = _floats(raw)
                elif f.name == "closing_url":
                    values[f.name] = _url_template(raw)
                elif f.name == "event_loop":
                    values[f.name] = _event_loop(raw)
                elif f.name == "partitions":
                    values[f.name] = _partitions(raw)
                elif f.type in ("int", int):
                    values[f.name] = int(raw)
                elif f.type in ("float", float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as error:
                raise ValueError(f"{name}={raw!r}: {error}") from None
        return cls(**values)  # type: ignore[arg-type]
