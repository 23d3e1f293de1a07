"""Real servers for integration tests: RabbitMQ and a MongoDB wire-protocol server.

Each test gets its own RabbitMQ virtual host and its own database, so tests share no queues and
no documents. The servers are started by ``deploy/servers.sh`` when they do not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from consumers.registry import CONSUMERS
from contracts.envelope import Message
from contracts.registry import encode
from services.__main__ import definition
from services.config import Settings
from services.runner import ConsumerRunner
from services.store.mongo import MongoStore, connect
from services.topology import ACCOUNTING_EXCHANGE, COMMANDS_EXCHANGE, dead_queue_name

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ROOT / "deploy" / "servers.sh"
AMQP_PORT, MONGO_PORT = 5672, 27017

pytestmark = pytest.mark.integration


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def servers(*args: str) -> None:
    subprocess.run([str(SERVERS), *args], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def running_servers() -> None:
    if not (port_open(AMQP_PORT) and port_open(MONGO_PORT)):
        servers("up")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def amqp_url(running_servers: None) -> Iterable[str]:
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/{vhost}"
    with contextlib.suppress(subprocess.CalledProcessError):
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def mongo_db(running_servers: None) -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def mongo(mongo_db: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = connect(f"mongodb://127.0.0.1:{MONGO_PORT}/", 5000)
    yield client
    with contextlib.suppress(Exception):
        await client.drop_database(mongo_db)
    await client.close()


@pytest.fixture
def settings(amqp_url: str, mongo_db: str) -> Settings:
    return Settings(
        amqp_url=amqp_url,
        mongo_url=f"mongodb://127.0.0.1:{MONGO_PORT}/",
        mongo_db=mongo_db,
        mongo_timeout_ms=1000,
        batch_linger_ms=5,
        retry_delays=(0.3, 0.6, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0),
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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = connect(settings.mongo_url, settings.mongo_timeout_ms)
        self.store = MongoStore(self.client[settings.mongo_db])
        self.stop = asyncio.Event()
        self.runners: dict[str, ConsumerRunner] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, *names: str) -> None:
        for name in names or (*CONSUMERS, "unrouted"):
            runner = ConsumerRunner(definition(name), self.settings, self.store)
            self.runners[name] = runner
            self.tasks.append(asyncio.create_task(runner.run(self.stop)))
        await eventually(
            lambda: all(r.consuming.is_set() for r in self.runners.values()),
            what="consumers to start",
        )

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 30)
        await self.client.close()

    async def document(self, collection: str, key: str) -> dict[str, Any] | None:
        return await self.client[self.settings.mongo_db][collection].find_one({"_id": key})


@pytest.fixture
async def system(settings: Settings, mongo: Any) -> AsyncIterator[System]:
    running = System(settings)
    yield running
    await running.close()


async def publish(
    amqp_url: str,
    messages: Iterable[Message | tuple[str, bytes]],
    exchange_name: str = ACCOUNTING_EXCHANGE,
) -> None:
    """Publishes as upstream does: routing key = type, persistent, JSON, confirmed."""
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
                    content_type="application/json",
                    message_id=message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=routing_key,
            )


async def publish_commands(amqp_url: str, messages: Iterable[Message]) -> None:
    await publish(amqp_url, messages, COMMANDS_EXCHANGE)


async def dead_letters(amqp_url: str, consumer: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    found = []
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(dead_queue_name(consumer), passive=True)
        while (incoming := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(incoming)
    return found


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
