"""The AMQP frames the outbox publishes are the bytes pamqp marshals for aiormq's
``basic_publish``: the broker reads them the same way."""

from __future__ import annotations

import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from billing.outbox.amqp import PERSISTENT, Frames, Message

MAX_BODY_FRAME = 64  # small, so that bodies are split as a 128 KiB frame limit splits them


def pamqp_frames(channel: int, exchange: str, content_type: str, message: Message) -> bytes:
    properties = commands.Basic.Properties(
        content_type=content_type, delivery_mode=PERSISTENT, message_id=message.message_id
    )
    body = message.body
    frames = [
        commands.Basic.Publish(exchange=exchange, routing_key=message.routing_key, mandatory=True),
        ContentHeader(0, len(body), properties),
        *(
            ContentBody(body[at : at + MAX_BODY_FRAME])
            for at in range(0, len(body), MAX_BODY_FRAME)
        ),
    ]
    return b"".join(marshal(frame, channel) for frame in frames)


@pytest.mark.parametrize(
    "message",
    [
        Message("payment.succeeded", "6f1c1b8e-2d0a-4c53-9c55-8d5f0e6f4b1a", b'{"amount": 1}'),
        Message("subscription.expiring", "id", b""),
        Message("payment.refunded", "ид-события", "платёж".encode() * 40),  # split in 8
        Message("payment.succeeded", "x" * 255, b"y" * MAX_BODY_FRAME),  # exactly one frame
    ],
    ids=["small", "empty body", "split body", "longest id"],
)
def test_frames_are_pamqps_bytes(message: Message) -> None:
    frames = Frames(7, "billing.events", "application/json", MAX_BODY_FRAME)
    for _ in range(2):  # the second time from the cached publish frame
        assert frames.of(message) == pamqp_frames(7, "billing.events", "application/json", message)


def test_a_message_id_longer_than_a_short_string_is_refused() -> None:
    frames = Frames(1, "billing.events", "application/json", MAX_BODY_FRAME)
    with pytest.raises(ValueError, match="255 bytes"):
        frames.of(Message("payment.succeeded", "x" * 256, b"{}"))
