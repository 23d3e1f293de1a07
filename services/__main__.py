"""Process entry points.

python -m services run [--only NAME,...]     every consumer, the catch-all, the clock, the API
python -m services api                       the HTTP API alone
python -m services consumer NAME             one consumer (what a container runs)
python -m services clock                     the clock alone
python -m services dead-letters NAME         what is in a dead-letter queue, and why
python -m services replay NAME [--limit N]   move dead letters back to be applied again
python -m services health                    exit 0 when the broker and database answer
python -m services demo [--companies N]      publish a demo agency and print a token to try it
python -m services tail [--domain D] [--company C]   outbound events, live, one line each
python -m services show COLLECTION ID        a stored document, its texts decoded, as JSON
python -m services broker-definitions        the broker's policies (and users' permissions), as
                                             a definitions file for `rabbitmqctl import_definitions`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import structlog
import uvicorn

from consumers.registry import CONSUMERS, ConsumerDefinition, consumers
from services import demo, eventloop, heap, logs, operations, show, tail
from services.api.app import create_app
from services.clock import Clock
from services.config import MAX_PARTITIONS, Settings, vhost_of
from services.partitions import PartitionedConsumer
from services.repartition import Repartitioned, StillRunning, repartition
from services.runner import ConsumerRunner
from services.signing import check_secret
from services.store.mongo import MongoStore, connect
from services.topology import ROLES, UNROUTED, definitions, partitioned, policies

UNROUTED_DEFINITION = ConsumerDefinition(UNROUTED, ())
ALL_NAMES = [*CONSUMERS, UNROUTED]
T = TypeVar("T")  # what a command's coroutine returns


def definition(name: str, settings: Settings | None = None) -> ConsumerDefinition:
    if name == UNROUTED:
        return UNROUTED_DEFINITION
    return consumers(settings.closing_url)[name] if settings else CONSUMERS[name]


async def run_until_signalled(
    settings: Settings, build: Callable[[asyncio.Event], list[Awaitable[None]]]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log = structlog.get_logger()
    log.info(
        "starting",
        amqp=_redact(settings.amqp_url),
        mongo=_redact(settings.mongo_url),
        database=settings.mongo_db,
        event_loop=eventloop.name(loop),
    )
    await asyncio.gather(*build(stop))
    log.info("stopped")


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our process: our own handlers take SIGINT/SIGTERM, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(settings: Settings, stop: asyncio.Event) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve())
    structlog.get_logger().info(
        "api listening",
        url=f"http://{settings.api_host}:{settings.api_port}",
        openapi=f"http://{settings.api_host}:{settings.api_port}/openapi.json",
    )
    await asyncio.wait(
        {serving, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    server.should_exit = True
    await serving


async def run_processes(
    settings: Settings, names: list[str], with_clock: bool, with_api: bool = False
) -> None:
    client = connect(settings.mongo_url, settings.mongo_timeout_ms)
    store = MongoStore(client[settings.mongo_db])

    def build(stop: asyncio.Event) -> list[Awaitable[None]]:
        tasks: list[Awaitable[None]] = [
            (
                PartitionedConsumer(definition(n, settings), settings, store)
                if partitioned(n, settings)
                else ConsumerRunner(definition(n, settings), settings, store)
            ).run(stop)
            for n in names
        ]
        if with_clock:
            tasks.append(Clock(settings).run(stop))
        if with_api:
            tasks.append(serve_api(settings, stop))
        return tasks

    heap.settle()
    try:
        await run_until_signalled(settings, build)
    finally:
        await client.close()


async def run_repartition(settings: Settings, name: str, partitions: int) -> Repartitioned:
    client = connect(settings.mongo_url, settings.mongo_timeout_ms)
    try:
        return await repartition(
            settings, client[settings.mongo_db], definition(name, settings), partitions
        )
    finally:
        await client.close()


async def show_dead_letters(settings: Settings, name: str, limit: int) -> None:
    total, letters = await operations.peek(settings, name, limit)
    print(f"{total} dead letters in backoffice.{name}.dead")
    for code, count in operations.summary(letters).most_common():
        print(f"  {count:6d}  {code}")
    for letter in letters:
        print(f"- {letter.message_id}: [{letter.reason_code}] {letter.reason}")


async def health(settings: Settings) -> bool:
    import aio_pika

    ok = True
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=5)
        await connection.close()
        print("broker: ok")
    except Exception as error:
        print(f"broker: {type(error).__name__}: {error}")
        ok = False
    client = connect(settings.mongo_url, min(settings.mongo_timeout_ms, 5000))
    try:
        await MongoStore(client[settings.mongo_db]).ping()
        print("database: ok")
    except Exception as error:
        print(f"database: {type(error).__name__}: {error}")
        ok = False
    finally:
        await client.close()
    return ok


def broker_definitions(
    settings: Settings, vhost: str | None, grants: list[str], passwords: Sequence[str] = ()
) -> str:
    """The definitions document for ``vhost`` (default: the one of BACKOFFICE_AMQP_URL):
    every policy of the service, each ``USER=ROLE`` grant as that role's permissions, and a
    user for each ``USER=PASSWORD``."""
    if vhost is None:
        vhost = vhost_of(settings.amqp_url)
    permissions = {}
    for grant in grants:
        user, _, role = grant.partition("=")
        if not user or role not in ROLES:
            raise ValueError(f"--grant {grant!r}: expected USER=ROLE, ROLE one of {sorted(ROLES)}")
        permissions[user] = ROLES[role]
    users = dict(p.partition("=")[::2] for p in passwords)
    if any(not user or not password for user, password in users.items()):
        raise ValueError("--password: expected USER=PASSWORD")
    document = definitions(policies(ALL_NAMES, settings), vhost, permissions, users)
    return json.dumps(document, indent=2, sort_keys=True)


def require_secrets(parser: argparse.ArgumentParser, settings: Settings, *, jwt: bool) -> None:
    """Stops at start, with the reason, when a secret the process needs is missing or short."""
    try:
        check_secret("BACKOFFICE_SERVICE_SECRET", settings.service_secret)
        if jwt:
            check_secret("BACKOFFICE_JWT_SECRET", settings.jwt_secret)
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="every consumer, the catch-all and the clock")
    run.add_argument("--only", help="comma-separated consumer names")
    run.add_argument("--no-clock", action="store_true")
    run.add_argument("--no-api", action="store_true")
    commands.add_parser("api", help="the HTTP API alone")
    one = commands.add_parser("consumer", help="one consumer")
    one.add_argument("name", choices=ALL_NAMES)
    commands.add_parser("clock", help="the clock alone")
    dead = commands.add_parser("dead-letters", help="list a dead-letter queue")
    dead.add_argument("name", choices=ALL_NAMES)
    dead.add_argument("--limit", type=int, default=20)
    replay = commands.add_parser("replay", help="move dead letters back to their queue")
    replay.add_argument("name", choices=ALL_NAMES)
    replay.add_argument("--limit", type=int, default=1_000_000)
    commands.add_parser("health", help="check that the broker and database answer")
    demo_parser = commands.add_parser("demo", help="publish a demo agency; print a token")
    demo_parser.add_argument("--companies", type=int, default=36)
    demo_parser.add_argument("--seed", type=int, default=2026)
    tail_parser = commands.add_parser("tail", help="print outbound events live, one per line")
    tail_parser.add_argument("--domain", choices=["bookkeeping", "payroll", "vat", "closing"])
    tail_parser.add_argument("--company", help="only this company_id")
    show_parser = commands.add_parser(
        "show", help="a stored document, its texts decoded, as JSON (for an operator)"
    )
    show_parser.add_argument("collection", help="for example bookkeeping or companies")
    show_parser.add_argument("id", help="the document's _id, for example a-1/c-1")
    broker = commands.add_parser(
        "broker-definitions", help="the broker's policies, for rabbitmqctl import_definitions"
    )
    broker.add_argument("--vhost", help="default: the vhost of BACKOFFICE_AMQP_URL")
    broker.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="USER=ROLE",
        help="give a user the permissions of a role: service or upstream",
    )
    broker.add_argument(
        "--password",
        action="append",
        default=[],
        metavar="USER=PASSWORD",
        help="create the user with this password (a broker that loads the file at boot)",
    )
    moving = commands.add_parser(
        "repartition",
        help="change a stopped consumer's number of partitions (BACKOFFICE_PARTITIONS)",
    )
    moving.add_argument("name", choices=list(CONSUMERS))
    moving.add_argument("partitions", type=int, help=f"1 to {MAX_PARTITIONS}")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ValueError as error:
        print(f"configuration: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)

    def on_loop(work: Coroutine[Any, Any, T]) -> T:
        return eventloop.run(work, settings.event_loop)

    match args.command:
        case "run":
            names = args.only.split(",") if args.only else ALL_NAMES
            unknown = set(names) - set(ALL_NAMES)
            if unknown:
                parser.error(f"unknown consumers: {', '.join(sorted(unknown))}")
            require_secrets(parser, settings, jwt=not args.no_api)
            on_loop(
                run_processes(
                    settings, names, with_clock=not args.no_clock, with_api=not args.no_api
                )
            )
        case "api":
            require_secrets(parser, settings, jwt=True)
            on_loop(run_processes(settings, [], with_clock=False, with_api=True))
        case "consumer":
            require_secrets(parser, settings, jwt=False)
            on_loop(run_processes(settings, [args.name], with_clock=False))
        case "clock":
            require_secrets(parser, settings, jwt=False)
            on_loop(run_processes(settings, [], with_clock=True))
        case "dead-letters":
            on_loop(show_dead_letters(settings, args.name, args.limit))
        case "replay":
            moved = on_loop(operations.replay(settings, args.name, args.limit))
            print(f"replayed {moved} messages into backoffice.{args.name}")
        case "demo":
            require_secrets(parser, settings, jwt=True)  # it signs commands and a token
            print(on_loop(demo.run(settings, args.companies, args.seed)))
        case "health":
            return 0 if on_loop(health(settings)) else 1
        case "tail":
            with contextlib.suppress(KeyboardInterrupt):
                on_loop(tail.tail(settings.amqp_url, args.domain, args.company))
        case "show":
            document = on_loop(show.stored(settings, args.collection, args.id))
            if document is None:
                print(f"no document {args.id!r} in {args.collection}", file=sys.stderr)
                return 1
            print(show.as_json(document))
        case "repartition":
            if not 1 <= args.partitions <= MAX_PARTITIONS:
                parser.error(f"partitions: from 1 to {MAX_PARTITIONS}")
            try:
                done = on_loop(run_repartition(settings, args.name, args.partitions))
            except StillRunning as error:
                print(error, file=sys.stderr)
                return 1
            print(
                f"backoffice.{args.name}: {args.partitions} partition(s); moved"
                f" {done.moved_back} waiting messages back to the intake, removed"
                f" {len(done.removed)} queue(s), marked {done.marked} aggregate(s). Start the"
                f" replicas with BACKOFFICE_PARTITIONS={args.partitions}."
            )
        case "broker-definitions":
            try:
                print(broker_definitions(settings, args.vhost, args.grant, args.password))
            except ValueError as error:
                parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
