"""The receiver cuts deliveries out of whatever the socket hands it: split anywhere, the same
stream gives the same deliveries, with their properties, in order; frames that are not part of
a delivery go to the requests waiting for them; a damaged stream ends the receiver."""

from __future__ import annotations

import asyncio
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body, commands, frame, header

from services.receiver import Incoming, Receiver

CHANNEL = 1
PART = 4096  # a small frame size, so that a body takes several frames


def delivery_frames(tag: int, payload: bytes, headers: dict[str, object] | None) -> bytes:
    properties = commands.Basic.Properties(
        content_type="application/json",
        headers=headers,
        delivery_mode=2,
        message_id=f"m-{tag}",
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=tag),
        message_type="bookkeeping.period_submitted",
    )
    parts = [
        frame.marshal(
            commands.Basic.Deliver(
                consumer_tag="backoffice.x",
                delivery_tag=tag,
                redelivered=tag % 2 == 0,
                exchange="accounting.events",
                routing_key=f"bookkeeping.{tag}",
            ),
            CHANNEL,
        ),
        frame.marshal(header.ContentHeader(0, len(payload), properties), CHANNEL),
    ]
    for start in range(0, len(payload), PART):
        parts.append(frame.marshal(body.ContentBody(payload[start : start + PART]), CHANNEL))
    return b"".join(parts)


payloads = st.lists(
    st.tuples(
        st.binary(max_size=3 * PART),
        st.none()
        | st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.integers(0, 9) | st.text(max_size=5)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(payloads, st.lists(st.integers(1, 3 * PART), max_size=40))
def test_a_stream_split_anywhere_gives_the_same_deliveries(
    messages: list[tuple[bytes, dict[str, object] | None]], cuts: list[int]
) -> None:
    stream = b"".join(
        delivery_frames(tag, payload, headers)
        for tag, (payload, headers) in enumerate(messages, start=1)
    )
    received: list[Incoming] = []
    receiver = Receiver(received.append, asyncio.Event())
    position = 0
    for cut in cuts:
        receiver.data_received(stream[position : position + cut])
        position += cut
    receiver.data_received(stream[position:])
    assert receiver.error is None
    assert [m.body for m in received] == [payload for payload, _ in messages]
    assert [m.headers for m in received] == [headers for _, headers in messages]
    assert [m.delivery_tag for m in received] == list(range(1, len(messages) + 1))
    assert [m.redelivered for m in received] == [t % 2 == 0 for t in range(1, len(messages) + 1)]
    assert [m.routing_key for m in received] == [
        f"bookkeeping.{t}" for t in range(1, len(messages) + 1)
    ]
    assert {(m.exchange, m.content_type, m.delivery_mode, m.type) for m in received} == {
        ("accounting.events", "application/json", 2, "bookkeeping.period_submitted")
    }
    assert [m.message_id for m in received] == [f"m-{t}" for t in range(1, len(messages) + 1)]
    assert received[0].timestamp == dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)


def test_other_frames_answer_the_requests_waiting_for_them() -> None:
    receiver = Receiver(lambda _: None, asyncio.Event())
    ok = frame.marshal(commands.Basic.QosOk(), CHANNEL)
    receiver.data_received(delivery_frames(1, b"x", None)[:5] + b"")  # half a frame: waits
    receiver.data_received(delivery_frames(1, b"x", None)[5:] + ok)
    assert isinstance(receiver._replies.get_nowait(), commands.Basic.QosOk)


def test_a_damaged_stream_ends_the_receiver() -> None:
    closed = asyncio.Event()
    receiver = Receiver(lambda _: None, closed)
    damaged = bytearray(delivery_frames(1, b"abc", None))
    damaged[-1] = 0  # the last frame's end marker
    receiver.data_received(bytes(damaged))
    assert closed.is_set()
    assert receiver.error is not None and "end marker" in str(receiver.error)
