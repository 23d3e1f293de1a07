"""`python -m services tail`: what the service tells subscribers, live, one line per message.

An operator or an integrator watches `backoffice.events` through a queue of its own (exclusive,
gone when the command ends), so watching takes nothing from any other subscriber. Lines are the
messages' JSON when the output is piped, and a short readable line on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any, TextIO

import aio_pika

from contracts.outbound import EVENTS_EXCHANGE


def binding_keys(domain: str | None) -> list[str]:
    """The routing keys to bind: a domain's status changes (and, for bookkeeping, the client's
    requests for action), or everything."""
    if domain is None:
        return ["#"]
    keys = [f"status.{domain}.*"]
    if domain == "bookkeeping":
        keys.append("client.action_required")
    return keys


def line(body: dict[str, Any], routing_key: str, readable: bool) -> str:
    if not readable:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    who = f"{body.get('agency_id')}/{body.get('company_id')}"
    if body.get("type") == "status.changed":
        cause = body.get("cause") or {}
        why = f"{cause.get('kind')} {cause.get('id') or ''}".strip()
        what = f"{body.get('period')} {body.get('from')} -> {body.get('to')} ({why})"
        return f"{body.get('at')}  {routing_key:30s} {who}  {what}"
    what = f"{body.get('period')} {body.get('status')} by {body.get('user_id')}"
    return f"{body.get('occurred_at')}  {routing_key:30s} {who}  {what}, due {body.get('deadline')}"


async def tail(
    amqp_url: str,
    domain: str | None,
    company: str | None,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    readable = out.isatty()

    async def show(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            body = json.loads(incoming.body)
        except ValueError:
            return
        if company is not None and body.get("company_id") != company:
            return
        out.write(line(body, incoming.routing_key or "", readable) + "\n")
        out.flush()

    async with await aio_pika.connect(amqp_url, timeout=10) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in binding_keys(domain):
            await queue.bind(exchange, key)
        await queue.consume(show, no_ack=True)
        print(f"# tailing {EVENTS_EXCHANGE} {binding_keys(domain)}", file=sys.stderr, flush=True)
        await stop.wait()
