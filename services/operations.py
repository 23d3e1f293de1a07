"""What an operator does with dead letters: look at them, and replay them once fixed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import aio_pika

from services.config import Settings
from services.runner import ATTEMPT_HEADER
from services.topology import dead_queue_name, queue_name


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    reason_code: str
    reason: str
    headers: dict[str, Any]
    body: bytes


def _reason(headers: dict[str, Any]) -> tuple[str, str]:
    if "x-reason-code" in headers:
        return str(headers["x-reason-code"]), str(headers.get("x-reason", ""))
    # Dead-lettered by the broker itself: the delivery limit was reached.
    deaths = headers.get("x-death") or [{}]
    reason = str(deaths[0].get("reason", "unknown")) if isinstance(deaths, list) else "unknown"
    return reason, f"dead-lettered by the broker ({reason})"


async def peek(settings: Settings, consumer: str, limit: int) -> tuple[int, list[DeadLetter]]:
    """The queue's length and up to ``limit`` dead letters, left in place."""
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(dead_queue_name(consumer), passive=True)
        total = queue.declaration_result.message_count or 0
        held: list[aio_pika.abc.AbstractIncomingMessage] = []
        letters: list[DeadLetter] = []
        for _ in range(min(limit, total)):
            incoming = await queue.get(no_ack=False, fail=False)
            if incoming is None:
                break
            held.append(incoming)
            headers = dict(incoming.headers or {})
            code, reason = _reason(headers)
            letters.append(DeadLetter(incoming.message_id, code, reason, headers, incoming.body))
        for incoming in held:
            await incoming.nack(requeue=True)
        return total, letters


async def replay(settings: Settings, consumer: str, limit: int) -> int:
    """Moves up to ``limit`` dead letters back to the consumer's queue as first attempts."""
    moved = 0
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(dead_queue_name(consumer), passive=True)
        while moved < limit:
            incoming = await queue.get(no_ack=False, fail=False)
            if incoming is None:
                break
            headers = {
                k: v
                for k, v in (incoming.headers or {}).items()
                if k not in (ATTEMPT_HEADER, "x-death", "x-last-error")
            }
            headers["x-replayed-reason"] = headers.pop("x-reason", "")
            headers.pop("x-reason-code", None)
            await channel.default_exchange.publish(
                aio_pika.Message(
                    incoming.body,
                    headers=headers,
                    content_type=incoming.content_type,
                    message_id=incoming.message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue_name(consumer),
            )
            await incoming.ack()
            moved += 1
    return moved


def summary(letters: list[DeadLetter]) -> Counter[str]:
    return Counter(letter.reason_code for letter in letters)
