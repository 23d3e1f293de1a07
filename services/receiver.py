"""A consumer's deliveries, read off an AMQP connection of its own.

Through aio-pika, a delivery costs its consumer about 0.12 ms of CPU before the consumer sees
it: aiormq reads each of its three frames (method, content header, body) with three awaits,
pamqp builds an object for each, they pass through a queue and two tasks, and aio-pika then
copies them into its message object. That was about half of what a consumer spent on each
message of a backlog (docs/benchmarks.md (20)). Here one protocol object cuts whatever the
socket holds into deliveries in one loop, about 0.01 ms a message.

Only the consuming queue's deliveries come this way. aio-pika still declares the topology and
publishes; every frame here other than a delivery's own three (the handshake, the answers to
our requests, heartbeats, the broker closing or cancelling) goes through pamqp's marshalling.
The connection ends, and ``closed`` is set, when the broker closes it or its channel, cancels
the consumer (its queue was deleted) or falls silent for two heartbeats, or the socket goes:
the consumer's session then starts anew, as it does when its aio-pika connection ends. The
broker takes back what was not acked when this connection closes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import struct
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, Final, cast

from pamqp import commands, frame, header, heartbeat
from pamqp import decode as amqp_decode
from pamqp import exceptions as amqp_exceptions

from services.config import vhost_of

CHANNEL: Final = 1
FRAME_MAX: Final = 131_072  # what RabbitMQ offers; a larger body comes in several frames
HANDSHAKE_TIMEOUT_S: Final = 10.0
CLOSE_TIMEOUT_S: Final = 2.0

_FRAME_HEADER: Final = struct.Struct(">BHI")  # type, channel, payload size
_U16: Final = struct.Struct(">H")
_U64: Final = struct.Struct(">Q")
_FRAME_END: Final = 0xCE
_METHOD, _CONTENT_HEADER, _BODY, _HEARTBEAT = 1, 2, 3, 8
_DELIVER: Final = b"\x00\x3c\x00\x3c"  # basic (60).deliver (60)


class ReceiverError(ConnectionError):
    """The receiver could not start or ended: the broker's reason, or the socket's."""


class Incoming:
    """One delivery: what a consumer reads of it, and how it settles it.

    The attributes carry aio-pika's names, so a consumer reads a delivery as it read aio-pika's
    messages. Settling writes the frame at once; on a connection that is gone it raises, and
    the broker has taken the delivery back already."""

    __slots__ = (
        "_receiver",
        "app_id",
        "body",
        "content_encoding",
        "content_type",
        "correlation_id",
        "delivery_mode",
        "delivery_tag",
        "exchange",
        "expiration",
        "headers",
        "message_id",
        "priority",
        "redelivered",
        "reply_to",
        "routing_key",
        "timestamp",
        "type",
        "user_id",
    )

    def __init__(
        self,
        receiver: Receiver,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
    ) -> None:
        self._receiver = receiver
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = b""
        self.content_type: str | None = None
        self.content_encoding: str | None = None
        self.headers: dict[str, Any] | None = None
        self.delivery_mode: int | None = None
        self.priority: int | None = None
        self.correlation_id: str | None = None
        self.reply_to: str | None = None
        self.expiration: float | None = None  # seconds, as aio-pika reads it
        self.message_id: str | None = None
        self.timestamp: dt.datetime | None = None
        self.type: str | None = None
        self.user_id: str | None = None
        self.app_id: str | None = None

    async def ack(self, multiple: bool = False) -> None:
        """Acknowledges this delivery, and with ``multiple`` every one before it too."""
        self._receiver.send(commands.Basic.Ack(delivery_tag=self.delivery_tag, multiple=multiple))

    async def nack(self, requeue: bool = True, multiple: bool = False) -> None:
        self._receiver.send(
            commands.Basic.Nack(delivery_tag=self.delivery_tag, multiple=multiple, requeue=requeue)
        )

    def __repr__(self) -> str:
        return f"Incoming(tag={self.delivery_tag}, routing_key={self.routing_key!r})"


def _shortstr(data: bytes | bytearray, pos: int) -> tuple[str, int]:
    size = data[pos]
    end = pos + 1 + size
    return bytes(data[pos + 1 : end]).decode(), end


def _read_properties(incoming: Incoming, data: bytes) -> None:
    """Fills ``incoming``'s properties from a content header's property list (AMQP 0-9-1's
    basic class: fourteen, each present by its flag, in this order; the last, the deprecated
    cluster id, is left unread)."""
    flags = _U16.unpack_from(data, 0)[0]
    if flags & 1:
        raise ReceiverError("a content header with more than one property flags word")
    pos = 2
    if flags & 0x8000:
        incoming.content_type, pos = _shortstr(data, pos)
    if flags & 0x4000:
        incoming.content_encoding, pos = _shortstr(data, pos)
    if flags & 0x2000:
        used, incoming.headers = amqp_decode.field_table(data[pos:])
        pos += used
    if flags & 0x1000:
        incoming.delivery_mode = data[pos]
        pos += 1
    if flags & 0x0800:
        incoming.priority = data[pos]
        pos += 1
    if flags & 0x0400:
        incoming.correlation_id, pos = _shortstr(data, pos)
    if flags & 0x0200:
        incoming.reply_to, pos = _shortstr(data, pos)
    if flags & 0x0100:
        milliseconds, pos = _shortstr(data, pos)
        incoming.expiration = float(milliseconds) / 1000
    if flags & 0x0080:
        incoming.message_id, pos = _shortstr(data, pos)
    if flags & 0x0040:
        seconds = _U64.unpack_from(data, pos)[0]
        incoming.timestamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        pos += 8
    if flags & 0x0020:
        incoming.type, pos = _shortstr(data, pos)
    if flags & 0x0010:
        incoming.user_id, pos = _shortstr(data, pos)
    if flags & 0x0008:
        incoming.app_id, pos = _shortstr(data, pos)


class Receiver(asyncio.Protocol):
    """One connection with one channel that consumes one queue; see the module's docstring.

    ``on_delivery`` gets each delivery whole, in the order the broker sent them, from the
    event loop's reading of the socket: it must not block (an ``asyncio.Queue.put_nowait``)."""

    def __init__(self, on_delivery: Callable[[Incoming], None], closed: asyncio.Event) -> None:
        self._on_delivery = on_delivery
        self.closed = closed
        self.error: ReceiverError | None = None
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._replies: asyncio.Queue[Any] = asyncio.Queue()  # frames other than deliveries
        self._delivery: Incoming | None = None  # the one whose content is arriving
        self._body_size = 0
        self._parts: list[bytes] = []
        self._received = 0  # the payload of the body so far
        self._heard_at = 0.0
        self._heartbeat_s = 0
        self._heartbeats: asyncio.Task[None] | None = None
        self.consumer_tag = ""
        self._cancelled = False

    # ------------------------------------------------------------------ the socket
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._heard_at = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"the connection was lost: {exc}" if exc else "the connection was closed"
        self._end(ReceiverError(reason))

    def data_received(self, data: bytes) -> None:
        self._heard_at = time.monotonic()
        buffer = self._buffer
        buffer += data
        size = len(buffer)
        pos = 0
        try:
            while size - pos >= 8:
                kind, channel, length = _FRAME_HEADER.unpack_from(buffer, pos)
                start = pos + 7
                end = start + length
                if end >= size:
                    break  # the rest of the frame is still on its way
                if buffer[end] != _FRAME_END:
                    raise ReceiverError(f"a frame of type {kind} without its end marker")
                if kind == _BODY and self._delivery is not None:
                    self._body(bytes(buffer[start:end]))
                elif kind == _METHOD and buffer[start : start + 4] == _DELIVER:
                    self._deliver(buffer, start + 4)
                elif kind == _CONTENT_HEADER and self._delivery is not None:
                    self._content_header(bytes(buffer[start:end]))
                elif kind != _HEARTBEAT:
                    self._other(bytes(buffer[pos : end + 1]), channel)
                pos = end + 1
        except (ReceiverError, amqp_exceptions.PAMQPException, ValueError, IndexError) as error:
            reason = error if isinstance(error, ReceiverError) else ReceiverError(str(error))
            self._end(reason)
            if self._transport is not None:
                self._transport.abort()
            return
        finally:
            if pos:
                del buffer[:pos]

    def _deliver(self, buffer: bytearray, pos: int) -> None:
        if self._delivery is not None:
            raise ReceiverError("a delivery began before the one before it was whole")
        pos += 1 + buffer[pos]  # the consumer tag: there is only ours
        tag = _U64.unpack_from(buffer, pos)[0]
        redelivered = bool(buffer[pos + 8] & 1)
        exchange, pos = _shortstr(buffer, pos + 9)
        routing_key, _ = _shortstr(buffer, pos)
        self._delivery = Incoming(self, tag, redelivered, exchange, routing_key)

    def _content_header(self, payload: bytes) -> None:
        assert self._delivery is not None
        self._body_size = _U64.unpack_from(payload, 4)[0]
        _read_properties(self._delivery, payload[12:])
        self._parts = []
        self._received = 0
        if self._body_size == 0:
            self._whole()

    def _body(self, payload: bytes) -> None:
        self._parts.append(payload)
        self._received += len(payload)
        if self._received >= self._body_size:
            self._whole()

    def _whole(self) -> None:
        delivery, self._delivery = self._delivery, None
        assert delivery is not None
        parts, self._parts = self._parts, []
        delivery.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._on_delivery(delivery)

    def _other(self, raw: bytes, channel: int) -> None:
        """A frame that is not part of a delivery: the broker closing or cancelling ends the
        receiver (after the answer it expects); the rest answers a request of ours."""
        _, _, received = frame.unmarshal(raw)
        if isinstance(received, commands.Connection.Close):
            self.send(commands.Connection.CloseOk(), 0)
            self._end(_refused("the broker closed the connection", received))
        elif isinstance(received, commands.Channel.Close):
            self.send(commands.Channel.CloseOk(), channel)
            self._end(_refused("the broker closed the channel", received))
        elif isinstance(received, commands.Basic.Cancel) and not self._cancelled:
            self._end(ReceiverError("the broker cancelled the consumer: its queue is gone"))
        elif isinstance(received, commands.Channel.Flow):
            self.send(commands.Channel.FlowOk(active=received.active), channel)
        else:
            self._replies.put_nowait(received)

    def _end(self, error: ReceiverError) -> None:
        if self.error is None:
            self.error = error
        self.closed.set()
        self._replies.put_nowait(error)  # wakes a request waiting for its answer
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    # ------------------------------------------------------------------ requests
    def send(self, outgoing: Any, channel: int = CHANNEL) -> None:
        if self._transport is None or self._transport.is_closing():
            raise self.error or ReceiverError("the receiver's connection is closed")
        self._transport.write(frame.marshal(outgoing, channel))

    async def _request(self, outgoing: Any, answer: type[Any], channel: int = CHANNEL) -> Any:
        if outgoing is not None:
            self.send(outgoing, channel)
        received = await self._replies.get()
        if isinstance(received, ReceiverError):
            raise received
        if not isinstance(received, answer):
            raise ReceiverError(f"expected {answer.__name__}, the broker sent {received!r}")
        return received

    async def _handshake(self, user: str, password: str, vhost: str, heartbeat_s: int) -> None:
        await self._request(None, commands.Connection.Start, 0)
        properties: dict[str, Any] = {
            "product": "backoffice",
            "connection_name": "backoffice receiver",
            "capabilities": {
                "consumer_cancel_notify": True,
                "basic.nack": True,
                "authentication_failure_close": True,
            },
        }
        tune = await self._request(
            commands.Connection.StartOk(
                client_properties=properties, mechanism="PLAIN", response=f"\0{user}\0{password}"
            ),
            commands.Connection.Tune,
            0,
        )
        # The broker's heartbeat, unless the URL asks for another (0 takes the broker's).
        self._heartbeat_s = heartbeat_s or tune.heartbeat
        frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self.send(
            commands.Connection.TuneOk(
                channel_max=1, frame_max=frame_max, heartbeat=self._heartbeat_s
            ),
            0,
        )
        await self._request(
            commands.Connection.Open(virtual_host=vhost), commands.Connection.OpenOk, 0
        )
        if self._heartbeat_s:
            self._heartbeats = asyncio.create_task(self._beat())
        await self._request(commands.Channel.Open(), commands.Channel.OpenOk)

    async def _beat(self) -> None:
        """Sends a heartbeat every half period, and ends the receiver after two periods without
        a frame from the broker: a broker or a network that is gone is noticed."""
        beat = heartbeat.Heartbeat().marshal()
        while True:
            await asyncio.sleep(self._heartbeat_s / 2)
            if time.monotonic() - self._heard_at > 2 * self._heartbeat_s:
                self._end(ReceiverError(f"no frame from the broker in {2 * self._heartbeat_s} s"))
                return
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(beat)

    async def consume(self, queue: str, prefetch: int) -> None:
        await self._request(commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)
        self.consumer_tag = f"backoffice.{uuid.uuid4().hex}"
        await self._request(
            commands.Basic.Consume(queue=queue, consumer_tag=self.consumer_tag),
            commands.Basic.ConsumeOk,
        )

    async def cancel(self) -> None:
        """Stops the broker's deliveries; those sent before it answered still arrive."""
        self._cancelled = True
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await self._request(
                commands.Basic.Cancel(consumer_tag=self.consumer_tag), commands.Basic.CancelOk
            )

    async def close(self) -> None:
        """Closes the connection; the broker takes back whatever was not acked."""
        if self._transport is None or self._transport.is_closing():
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._request(
                    commands.Connection.Close(
                        reply_code=200, reply_text="closing", class_id=0, method_id=0
                    ),
                    commands.Connection.CloseOk,
                    0,
                )
        except (ReceiverError, TimeoutError):
            pass
        self._end(ReceiverError("the receiver was closed"))


def _refused(what: str, close: commands.Connection.Close | commands.Channel.Close) -> ReceiverError:
    return ReceiverError(f"{what}: {close.reply_code} {close.reply_text}")


def _address(url: str) -> tuple[str, int, str, str, str, bool, int]:
    """Host, port, user, password, virtual host, TLS and heartbeat (0: the broker's) of an
    AMQP URL, read as aio-pika reads it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"expected an amqp:// or amqps:// URL, got {parts.scheme!r}")
    tls = parts.scheme == "amqps"
    query = urllib.parse.parse_qs(parts.query)
    heartbeat_s = int(query["heartbeat"][0]) if "heartbeat" in query else 0
    return (
        parts.hostname or "localhost",
        parts.port or (5671 if tls else 5672),
        urllib.parse.unquote(parts.username or "guest"),
        urllib.parse.unquote(parts.password or "guest"),
        vhost_of(url),
        tls,
        heartbeat_s,
    )


async def open_receiver(
    url: str,
    queue: str,
    prefetch: int,
    on_delivery: Callable[[Incoming], None],
    closed: asyncio.Event | None = None,
) -> Receiver:
    """A connection that consumes ``queue`` with ``prefetch`` unacknowledged deliveries, each
    handed to ``on_delivery``; ``closed`` is set when it ends. Raises ``ReceiverError`` with the
    broker's reason when it cannot (a wrong password, no such virtual host or queue)."""
    host, port, user, password, vhost, tls, heartbeat_s = _address(url)
    loop = asyncio.get_running_loop()
    receiver = Receiver(on_delivery, closed if closed is not None else asyncio.Event())
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            await loop.create_connection(
                lambda: receiver, host, port, ssl=ssl.create_default_context() if tls else None
            )
            assert receiver._transport is not None
            receiver._transport.write(header.ProtocolHeader().marshal())
            await receiver._handshake(user, password, vhost, heartbeat_s)
            await receiver.consume(queue, prefetch)
    except BaseException:
        if receiver._transport is not None:
            receiver._transport.abort()
        receiver._end(receiver.error or ReceiverError("the receiver did not start"))
        raise
    return receiver
