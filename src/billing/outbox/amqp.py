"""A batch of messages published on one aiormq channel in one socket write, each confirmed
by the broker.

``Channel.basic_publish`` (and aio-pika's ``Exchange.publish`` over it) costs ≈ 80–130 µs of
CPU per message on this project's machine: a task per concurrent publish, a timeout, the
channel's lock, a drain future, a write-queue entry and a socket write for each message
(bench/tried.md, "Outbox relay"). ``publish_all`` does for every message of the batch what
``basic_publish`` does, with the channel's own bookkeeping, so that the channel's reader
settles the confirmations as usual: it takes the next delivery tag and registers a
confirmation future under it in ``channel.confirmations`` (resolved by the broker's
``Basic.Ack``, failed with ``DeliveryError`` by a ``Basic.Nack``) and the tag under the
message id in ``channel.message_id_delivery_tag`` (how a ``Basic.Return`` of a mandatory
message fails its confirmation with ``PublishError``). What it does once per batch instead of
once per message: take the lock, queue the marshalled frames of all the messages as one
write, and watch the channel's ``closing`` (the confirmations still open when it closes get
its error: ``basic_publish``'s come from the channel's future store, which fails them then,
at two callbacks and two set entries per message). Those attributes are aiormq's (7.2),
hence the pin in pyproject.toml; tests/integration/test_outbox_amqp.py covers acks, nacks,
returns, bodies split over frames and a connection cut in the middle of a batch.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import aiormq
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import commands
from pamqp.frame import marshal

PERSISTENT = 2  # AMQP delivery mode: the broker writes the message to disk before confirming
_HEADER, _BODY = 2, 3  # frame types (the method frame is pamqp's)
_FRAME_END = b"\xce"
_BASIC = 60  # the class of Basic.Publish and of the content header
# The properties every message has (content_type, delivery_mode, message_id), flagged in the
# header's property flags in the spec's order, their values following in that order.
_PROPERTY_FLAGS = 1 << 15 | 1 << 12 | 1 << 7


@dataclass(frozen=True, slots=True)
class Message:
    routing_key: str
    message_id: str
    body: bytes


def _shortstr(value: str) -> bytes:
    encoded = value.encode()
    if len(encoded) > 255:
        raise ValueError(f"an AMQP short string holds at most 255 bytes: {value[:40]!r}…")
    return bytes([len(encoded)]) + encoded


class Frames:
    """The method, header and body frames of messages published on one channel to one
    exchange, byte for byte as pamqp marshals them for ``basic_publish``
    (tests/unit/test_outbox_amqp_frames.py compares them), with what all of them share
    encoded once: the ``Basic.Publish`` frame per routing key, the header's constant
    properties. pamqp's marshalling walks every property of the spec per message: ≈ 5 µs
    against ≈ 0.7."""

    def __init__(
        self, channel_number: int, exchange: str, content_type: str, max_body_frame: int
    ) -> None:
        self.channel_number = channel_number
        self.exchange = exchange
        self.max_body_frame = max_body_frame
        self._properties = (
            struct.pack(">H", _PROPERTY_FLAGS) + _shortstr(content_type) + bytes([PERSISTENT])
        )
        self._publish: dict[str, bytes] = {}

    def _frame(self, kind: int, payload: bytes) -> bytes:
        return struct.pack(">BHI", kind, self.channel_number, len(payload)) + payload + _FRAME_END

    def _publish_frame(self, routing_key: str) -> bytes:
        frame = self._publish.get(routing_key)
        if frame is None:
            method = commands.Basic.Publish(
                exchange=self.exchange, routing_key=routing_key, mandatory=True
            )
            frame = self._publish[routing_key] = marshal(method, self.channel_number)
        return frame

    def of(self, message: Message) -> bytes:
        body, size = message.body, self.max_body_frame
        header = (
            struct.pack(">HHQ", _BASIC, 0, len(body))  # class, weight (always 0), body size
            + self._properties
            + _shortstr(message.message_id)
        )
        return b"".join(
            [
                self._publish_frame(message.routing_key),
                self._frame(_HEADER, header),
                *(self._frame(_BODY, body[at : at + size]) for at in range(0, len(body), size)),
            ]
        )


async def publish_all(
    channel: aiormq.Channel,
    exchange: str,
    messages: Sequence[Message],
    *,
    content_type: str,
    confirm_within: float,
) -> list[asyncio.Future[object]]:
    """Publish ``messages`` (persistent, mandatory) to ``exchange`` and wait until the broker
    has settled each or ``confirm_within`` seconds passed. Answers each message's
    confirmation: a result for an ack, ``DeliveryError`` for a nack, ``PublishError`` for a
    returned message, the channel's error if it closed, cancelled if no answer came in time.
    The channel must have publisher confirms on and ``on_return_raises``."""
    if not messages:
        return []
    # Marshalled before any delivery tag is taken: a message that cannot be encoded fails
    # the call with nothing sent, and the channel's tags stay in step with the broker's.
    frames = Frames(channel.number, exchange, content_type, channel.max_content_size)
    payload = b"".join([frames.of(message) for message in messages])
    loop = asyncio.get_running_loop()
    confirmations: list[asyncio.Future[object]] = []
    async with channel.lock:  # nothing below awaits: the tags and the write go together
        tags = range(channel.delivery_tag + 1, channel.delivery_tag + 1 + len(messages))
        for message in messages:
            channel.delivery_tag += 1
            confirmation = loop.create_future()
            channel.confirmations[channel.delivery_tag] = confirmation
            channel.message_id_delivery_tag[message.message_id] = channel.delivery_tag
            confirmations.append(confirmation)
        channel.write_queue.put_nowait(ChannelFrame(payload=payload, should_close=False))
        closing = channel.closing  # done when the channel or its connection closes
    try:
        await asyncio.wait(
            [_all_settled(confirmations), closing],
            timeout=confirm_within,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        closed = _closed_error(closing)
        closing.cancel()  # only this observer: the channel stays open
        for message, tag, confirmation in zip(messages, tags, confirmations, strict=True):
            if confirmation.done():
                pass
            elif closed is not None:
                confirmation.set_exception(closed)
            else:
                confirmation.cancel()  # no answer in time; a late ack is then ignored
            if channel.message_id_delivery_tag.get(message.message_id) == tag:
                del channel.message_id_delivery_tag[message.message_id]
    return confirmations


def _all_settled(futures: Sequence[asyncio.Future[object]]) -> asyncio.Future[None]:
    """A future done once all of ``futures`` are: one callback each, no task."""
    settled = asyncio.get_running_loop().create_future()
    left = len(futures)

    def one_more(_: asyncio.Future[object]) -> None:
        nonlocal left
        left -= 1
        if not left and not settled.done():
            settled.set_result(None)

    for future in futures:
        future.add_done_callback(one_more)
    return settled


def _closed_error(closing: asyncio.Future[object]) -> BaseException | None:
    """Why the channel closed, if it did."""
    if not closing.done() or closing.cancelled():
        return None
    return closing.exception() or ChannelInvalidStateError("the channel was closed")
