"""Real servers for integration and end-to-end tests: RabbitMQ and a MongoDB wire server.

Each test gets its own RabbitMQ virtual host and its own database, so tests share no queues and
no documents. The servers are started by ``deploy/servers.sh`` when they do not answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from consumers.registry import CONSUMERS, STATE_TYPES
from contracts.envelope import Message
from contracts.registry import encode
from services.__main__ import ALL_NAMES, definition
from services.config import Settings
from services.runner import ConsumerRunner, utc_now
from services.signing import SIGNATURE_HEADER, signature
from services.store.mongo import MongoStore, connect
from services.store.port import plain
from services.topology import (
    ACCOUNTING_EXCHANGE,
    COMMANDS_EXCHANGE,
    dead_queue_name,
    definitions,
    policies,
)

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "deploy" / "servers.sh"
SERVICE_SECRET = "service-secret-for-tests-only-0123456789abcdef"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalServers:
    """The servers ``deploy/servers.sh`` runs on this machine."""

    amqp_host = "127.0.0.1:5672"
    mongo_url = "mongodb://127.0.0.1:27017/"

    def __init__(self) -> None:
        if not (port_open(5672) and port_open(27017)):
            self._script("up")

    def _script(self, *args: str) -> None:
        subprocess.run([str(SERVERS), *args], check=True, stdout=subprocess.DEVNULL)

    def rabbitmqctl(self, *args: str) -> str:
        return subprocess.run(
            ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True
        ).stdout

    def import_definitions(self, document: dict[str, Any]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
            json.dump(document, file)
            file.flush()
            os.chmod(file.name, 0o644)  # rabbitmqctl may run as the rabbitmq user
            self.rabbitmqctl("import_definitions", file.name)

    def postgres(self, query: str) -> str | None:
        """PostgreSQL's answer to ``query`` (tuples only, ``|`` between values) on FerretDB's
        database, or None where no PostgreSQL is under the MongoDB server."""
        done = subprocess.run(
            [str(SERVERS), "sql", query], capture_output=True, text=True, check=False
        )
        if done.returncode == 3:
            return None
        done.check_returncode()
        return done.stdout

    def stop_database(self) -> None:
        self._script("stop", "mongo")

    def start_database(self) -> None:
        self._script("start", "mongo")

    def close(self) -> None:
        pass


class DockerServers:
    """The official images, through testcontainers, where a Docker engine answers.

    Chosen with BACKOFFICE_TEST_SERVERS=docker; a database outage is a paused container.
    """

    def __init__(self) -> None:
        from testcontainers.mongodb import MongoDbContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        self.rabbitmq = RabbitMqContainer("rabbitmq:3.13").start()
        self.mongo = MongoDbContainer("mongo:7").start()
        host = self.rabbitmq.get_container_host_ip()
        self.amqp_host = f"{host}:{self.rabbitmq.get_exposed_port(5672)}"
        self.mongo_url = self.mongo.get_connection_url()

    def rabbitmqctl(self, *args: str) -> str:
        code, output = self.rabbitmq.exec(["rabbitmqctl", "-q", *args])
        if code != 0:
            raise subprocess.CalledProcessError(code, ["rabbitmqctl", *args], output)
        return str(output.decode() if isinstance(output, bytes) else output)

    def import_definitions(self, document: dict[str, Any]) -> None:
        encoded = base64.b64encode(json.dumps(document).encode()).decode()
        code, output = self.rabbitmq.exec(
            ["sh", "-c", f"echo {encoded} | base64 -d > /tmp/definitions.json"]
        )
        if code != 0:
            raise subprocess.CalledProcessError(code, ["sh"], output)
        self.rabbitmqctl("import_definitions", "/tmp/definitions.json")

    def postgres(self, query: str) -> str | None:
        return None  # the official MongoDB image keeps its own storage

    def stop_database(self) -> None:
        self.mongo.get_wrapped_container().pause()

    def start_database(self) -> None:
        self.mongo.get_wrapped_container().unpause()

    def close(self) -> None:
        self.rabbitmq.stop()
        self.mongo.stop()


Servers = LocalServers | DockerServers


@pytest.fixture(scope="session")
def servers() -> Iterable[Servers]:
    chosen: Servers = (
        DockerServers() if os.environ.get("BACKOFFICE_TEST_SERVERS") == "docker" else LocalServers()
    )
    yield chosen
    chosen.close()


@pytest.fixture
def amqp_url(servers: Servers) -> Iterable[str]:
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    # A vhost as deploy/servers.sh prepares one: the service's policies, guest may do anything.
    document = definitions(policies(ALL_NAMES, Settings()), vhost)
    document["permissions"] = [
        {"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    ]
    servers.import_definitions(document)
    yield f"amqp://guest:guest@{servers.amqp_host}/{vhost}"
    with contextlib.suppress(subprocess.CalledProcessError):
        servers.rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def mongo_db() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def mongo(servers: Servers, mongo_db: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = connect(servers.mongo_url, 5000)
    yield client
    with contextlib.suppress(Exception):
        await client.drop_database(mongo_db)
    await client.close()


@pytest.fixture
def settings(servers: Servers, amqp_url: str, mongo_db: str) -> Settings:
    return Settings(
        amqp_url=amqp_url,
        mongo_url=servers.mongo_url,
        mongo_db=mongo_db,
        mongo_timeout_ms=1000,
        batch_linger_ms=5,
        retry_delays=(0.3, 0.6, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0),
        service_secret=SERVICE_SECRET,
        log_format="console",
    )


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess use ``settings``."""
    env = dict(os.environ)
    env.update(
        BACKOFFICE_AMQP_URL=settings.amqp_url,
        BACKOFFICE_MONGO_URL=settings.mongo_url,
        BACKOFFICE_MONGO_DB=settings.mongo_db,
        BACKOFFICE_MONGO_TIMEOUT_MS=str(settings.mongo_timeout_ms),
        BACKOFFICE_RETRY_DELAYS=",".join(str(d) for d in settings.retry_delays),
        BACKOFFICE_SERVICE_SECRET=settings.service_secret,
        BACKOFFICE_MAX_CLOCK_SKEW_S=str(settings.max_clock_skew_s),
        BACKOFFICE_LOG_FORMAT="json",
    )
    return env


def spawn(settings: Settings, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m services ARGS`` as its own process, logging into ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "services", *args],
            cwd=ROOT,
            env={**env_for(settings), **env},
            stdout=sink,
            stderr=sink,
        )


class System:
    """Consumers running in this process against the test's vhost and database."""

    def __init__(self, settings: Settings, wall_clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.settings = settings
        self.wall_clock = wall_clock  # the consumers' clock
        self.client = connect(settings.mongo_url, settings.mongo_timeout_ms)
        self.store = MongoStore(self.client[settings.mongo_db])
        self.runners: dict[str, ConsumerRunner] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, *names: str) -> None:
        for name in names or (*CONSUMERS, "unrouted"):
            runner = ConsumerRunner(definition(name), self.settings, self.store, self.wall_clock)
            self.runners[name] = runner
            self._stops[name] = asyncio.Event()
            self._tasks[name] = asyncio.create_task(runner.run(self._stops[name]))
        await eventually(
            lambda: all(r.consuming.is_set() for r in self.runners.values()),
            what="consumers to start",
        )

    async def stop(self, name: str) -> None:
        """Stops one consumer the way SIGTERM does; its queue keeps what comes."""
        self._stops[name].set()
        await asyncio.wait_for(self._tasks.pop(name), 30)
        del self.runners[name]

    async def close(self) -> None:
        for stop in self._stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks.values()), 30)
        await self.client.close()

    async def document(self, collection: str, key: str) -> dict[str, Any] | None:
        """An aggregate's stored document as plain values (its JSON texts decoded)."""
        found = await self.client[self.settings.mongo_db][collection].find_one({"_id": key})
        return None if found is None else plain(found, STATE_TYPES.get(collection, dict))


@pytest.fixture
async def system(settings: Settings, mongo: Any) -> AsyncIterator[System]:
    running = System(settings)
    yield running
    await running.close()


TIME_TRAVEL_S = 2 * 366 * 86400


@pytest.fixture
async def time_travelling_system(settings: Settings, mongo: Any) -> AsyncIterator[System]:
    """Consumers that take messages dated up to two years ahead of their clock: for data and
    ticks set in a future year (the guard against wrong clocks would refuse them)."""
    running = System(dataclasses.replace(settings, max_clock_skew_s=TIME_TRAVEL_S))
    yield running
    await running.close()


async def publish(
    amqp_url: str,
    messages: Iterable[Message | tuple[str, bytes]],
    exchange_name: str = ACCOUNTING_EXCHANGE,
    secret: str | None = None,
) -> None:
    """Publishes as upstream does: routing key = type, persistent, JSON, confirmed; with a
    ``secret``, signed as the API signs its commands."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        for item in messages:
            if isinstance(item, tuple):
                routing_key, body = item
                message_id = None
            else:
                routing_key, body, message_id = item.type, encode(item), item.id
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers={SIGNATURE_HEADER: signature(secret, body)} if secret else None,
                    content_type="application/json",
                    message_id=message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=routing_key,
            )


def signed(command: Message, **properties: Any) -> aio_pika.Message:
    """A command as the API publishes it: signed with the service secret."""
    body = encode(command)
    return aio_pika.Message(
        body, headers={SIGNATURE_HEADER: signature(SERVICE_SECRET, body)}, **properties
    )


async def publish_commands(
    amqp_url: str, messages: Iterable[Message], secret: str = SERVICE_SECRET
) -> None:
    """Commands as the API sends them, signed."""
    await publish(amqp_url, messages, COMMANDS_EXCHANGE, secret)


async def dead_letters(amqp_url: str, consumer: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    found = []
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(dead_queue_name(consumer), passive=True)
        while (incoming := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(incoming)
    return found


def unsettled(servers: Servers, amqp_url: str) -> dict[str, int]:
    """Messages per queue of the URL's virtual host, ready or delivered and not yet acked."""
    vhost = amqp_url.rsplit("/", 1)[1]
    output = servers.rabbitmqctl("list_queues", "-p", vhost, "name", "messages")
    rows = (line.split() for line in output.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


async def queue_depth(amqp_url: str, queue_name: str) -> int:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 30, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- the running system (e2e)
JWT_SECRET = "e2e-secret-for-tests-only-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningSystem:
    """``python -m services run`` (every consumer and the API) as its own process."""

    def __init__(
        self, settings: Settings, process: subprocess.Popen[bytes], base_url: str, log: Path
    ) -> None:
        self.settings = settings
        self.process = process
        self.base_url = base_url
        self.log = log

    def token(
        self,
        user_id: str = "u-1",
        agency_id: str = "a-1001",
        permissions: list[str] | None = None,
        expires_in: int = 3600,
        secret: str = JWT_SECRET,
    ) -> str:
        import time

        from services.api.auth import issue_token

        return issue_token(
            secret,
            user_id,
            agency_id,
            ["manage_users"] if permissions is None else permissions,
            int(time.time()) + expires_in,
        )


@pytest.fixture
async def running_system(
    settings: Settings, mongo: Any, tmp_path: Path
) -> AsyncIterator[RunningSystem]:
    async with run_system(settings, tmp_path, BACKOFFICE_COMMAND_TIMEOUT_S="5") as system:
        yield system


@pytest.fixture
async def answering_later_system(
    settings: Settings, mongo: Any, tmp_path: Path
) -> AsyncIterator[RunningSystem]:
    """A system whose API waits next to no time for a command's outcome, so that every command
    is answered 202 and its caller has to follow it."""
    async with run_system(settings, tmp_path, BACKOFFICE_COMMAND_TIMEOUT_S="0.001") as system:
        yield system


@contextlib.asynccontextmanager
async def run_system(
    settings: Settings, tmp_path: Path, **env: str
) -> AsyncIterator[RunningSystem]:
    import httpx

    port = free_port()
    log = tmp_path / "system.log"
    process = spawn(
        settings,
        log,
        "run",
        "--no-clock",
        BACKOFFICE_API_PORT=str(port),
        BACKOFFICE_JWT_SECRET=JWT_SECRET,
        **env,
    )
    base_url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the system exited: {log.read_text()[-3000:]}")
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
                return (await client.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    def consuming() -> bool:
        """Every consumer has declared and bound its queue: events published now arrive."""
        started = {
            json.loads(line).get("consumer")
            for line in log.read_text().splitlines()
            if '"consuming"' in line
        }
        return started >= {*CONSUMERS, "unrouted"}

    try:
        await eventually(ready, timeout=60, what="the system to be ready")
        await eventually(consuming, timeout=60, what="every consumer to consume")
        yield RunningSystem(settings, process, base_url, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
