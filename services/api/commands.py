"""Sends consultants' commands to the consumer that owns the aggregate, and waits for its answer.

Each command goes to ``backoffice.commands`` with ``reply_to`` naming this process's own reply
queue. The owner answers once the command's effect is written (or refused); several consumers
may take the same command (the engagement), so only the owner's answer counts. Without an answer
within the timeout the caller gets 202 and polls the command's outcome, which the owner records.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from contracts.envelope import Message
from contracts.registry import encode
from services.signing import SIGNATURE_HEADER, signature
from services.topology import COMMANDS_EXCHANGE, declare_exchanges

OWNERS: Final = {
    "bookkeeping.set_period_status": "bookkeeping",
    "payroll.set_period_status": "payroll",
    "company.set_engagement": "directory",
    "company.add_user": "directory",
    "notes.add": "directory",
    "notes.set_status": "directory",
}


class CommandBus:
    def __init__(self, amqp_url: str, secret: str) -> None:
        self.amqp_url = amqp_url
        self.secret = secret  # signs each command: its owner takes no unsigned one
        self.log = structlog.get_logger().bind(component="api")
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._replies: AbstractQueue | None = None
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._lock = asyncio.Lock()

    async def _ready(self) -> tuple[AbstractChannel, AbstractQueue]:
        """The channel and reply queue, connecting (again) when there is none."""
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect(self.amqp_url, timeout=5)
                self._channel = await self._connection.channel(publisher_confirms=True)
                await declare_exchanges(self._channel)
                self._replies = await self._channel.declare_queue(exclusive=True, auto_delete=True)
                await self._replies.consume(self._on_reply, no_ack=True)
            assert self._channel is not None and self._replies is not None
            return self._channel, self._replies

    async def _on_reply(self, reply: AbstractIncomingMessage) -> None:
        try:
            answer = json.loads(reply.body)
        except ValueError:
            return
        waiting = self._pending.get(reply.correlation_id or "")
        if waiting is None:
            return
        owner, future = waiting
        if answer.get("consumer") == owner and not future.done():
            future.set_result(answer)

    async def send(self, command: Message, timeout: float) -> dict[str, Any] | None:
        """The owner's answer (``status``: applied, rejected, invalid), or None on time-out."""
        channel, replies = await self._ready()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command.id] = (OWNERS[command.type], future)
        try:
            exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
            body = encode(command)
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers={SIGNATURE_HEADER: signature(self.secret, body)},
                    content_type="application/json",
                    message_id=command.id,
                    correlation_id=command.id,
                    reply_to=replies.name,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=command.type,
            )
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                self.log.warning("no answer in time", command_id=command.id, type=command.type)
                return None
        finally:
            self._pending.pop(command.id, None)

    async def queue_depth(self, queue: str) -> int | None:
        """Messages ready in ``queue``; None when it does not exist or the broker is away."""
        try:
            async with self._lock:
                if self._connection is None or self._connection.is_closed:
                    return None
                channel = await self._connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                return declared.declaration_result.message_count or 0
            finally:
                if not channel.is_closed:
                    await channel.close()
        except Exception:
            return None

    async def ping(self) -> None:
        await self._ready()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
