"""One AMQP session of a server connection and its links (OASIS AMQP 1.0 part 1, sections 2.5
and 2.6): windows, handles, credit, delivery ids and settlement, and the reassembly of
deliveries sent in several transfers (docs/amqp-protocol.md#the-connection).

A :class:`Session` is driven by its connection (``devprov.amqp.connection``), which hands it the
frames of its channel and implements :class:`Engine` for it: sending frames, and starting the
application's work on an attach or a whole message. A frame that breaks a rule raises
:class:`ProtocolError`; the connection closes with its condition.
"""

from __future__ import annotations

import struct
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from devprov.amqp.application import AmqpError, LinkRequest, Message, Role, Scalar
from devprov.amqp.frames import (
    RCV_FIRST,
    SND_MIXED,
    SND_SETTLED,
    Accepted,
    Attach,
    Begin,
    DeliveryState,
    Detach,
    Disposition,
    End,
    Flow,
    Performative,
    Rejected,
    Transfer,
)
from devprov.amqp.message import decode_message, encode_message
from devprov.amqp.types import MalformedFrame, Value, encode

# DPS's maximum message size (docs/dps-wire.md#limits-and-quotas), plus room for the message's
# properties and application properties: a device's JSON body of 96 KiB fits, like MQTT's
# MAX_PACKET_BYTES (devprov.mqtt.session).
MAX_MESSAGE_BYTES = 96 * 1024 + 1024

# Transfer frames a client may send before the session window is opened again; restored when
# half is used. Ample for one request at a time, and each frame is at most max-frame-size.
SESSION_WINDOW = 1024

# Links per session (handle-max + 1): a DPS client attaches two, a sender and a receiver.
HANDLE_MAX = 7

# Messages a client may send on a link before it gets more credit; restored when half is used.
# DPS's clients send one request at a time.
LINK_CREDIT = 10

_SERIAL = 0xFFFF_FFFF  # transfer ids, delivery ids and counts are serial numbers (RFC 1982)

# Error conditions (sections 2.8.15 to 2.8.18).
NOT_ALLOWED = "amqp:not-allowed"
INVALID_FIELD = "amqp:invalid-field"
DECODE_ERROR = "amqp:decode-error"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"


class ProtocolError(Exception):
    """A frame broke a rule of the protocol: the connection closes with this condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.error = AmqpError(condition, description)


class Engine(Protocol):
    """What a session asks of its connection."""

    @property
    def max_frame_size(self) -> int:
        """The largest frame the client accepts."""

    def send(self, channel: int, body: Performative, payload: bytes = b"") -> None:
        """Send one AMQP frame."""

    def start_attach(
        self, session: Session, link: Link, attach: Attach, request: LinkRequest
    ) -> None:
        """Ask the application about a link, then call :meth:`Session.attached`."""

    def start_request(self, session: Session, link: Link, delivery: Delivery) -> None:
        """Hand a whole message to the application, once the one at work is answered."""


class LinkState(Enum):
    ATTACHING = "attaching"  # the application is deciding
    ATTACHED = "attached"
    DETACHED = "detached"  # the server detached it; the client's detach is awaited


@dataclass
class Delivery:
    """A whole message a client sent."""

    delivery_id: int
    settled: bool
    message: Message


@dataclass
class Link:
    """One link, from the server's side. ``role`` is the client's."""

    name: str
    remote_handle: int
    local_handle: int
    role: Role
    address: str
    state: LinkState = LinkState.ATTACHING
    delivery_count: int = 0  # the sender's count: the client's or ours, by role
    credit: int = 0  # what the sender may still send
    settled: bool = False  # our deliveries are sent settled (the client asked snd-settle-mode 1)
    drain: bool = False
    held: deque[Message] = field(default_factory=deque)  # replies waiting for credit
    partial: bytearray | None = None  # a delivery whose transfers are still arriving
    partial_id: int = 0
    partial_settled: bool = False


class Session:
    """A session begun by the client on ``remote_channel``, answered on ``local_channel``."""

    def __init__(self, engine: Engine, local_channel: int, begin: Begin) -> None:
        self._engine = engine
        self.local_channel = local_channel
        self.next_incoming_id = begin.next_outgoing_id
        self.incoming_window = SESSION_WINDOW
        self.next_outgoing_id = 0
        self.remote_incoming_window = begin.incoming_window
        self.next_delivery_id = 0
        self.links: dict[int, Link] = {}  # by the client's handle

    def begin_answer(self, remote_channel: int) -> Begin:
        return Begin(
            remote_channel=remote_channel,
            next_outgoing_id=self.next_outgoing_id,
            incoming_window=self.incoming_window,
            outgoing_window=SESSION_WINDOW,
            handle_max=HANDLE_MAX,
        )

    # --- frames from the client -------------------------------------------------------------

    def on_frame(self, body: Performative, payload: bytes) -> None:
        if isinstance(body, Attach):
            self._on_attach(body)
        elif isinstance(body, Transfer):
            self._on_transfer(body, payload)
        elif isinstance(body, Flow):
            self._on_flow(body)
        elif isinstance(body, Detach):
            self._on_detach(body)
        elif isinstance(body, Disposition):
            pass  # the client settles our replies; nothing is kept to resend
        else:
            raise ProtocolError(NOT_ALLOWED, f"{body.NAME} on a session's channel")

    def _on_attach(self, attach: Attach) -> None:
        if attach.handle > HANDLE_MAX:
            raise ProtocolError(NOT_ALLOWED, f"handle {attach.handle} is over handle-max")
        if attach.handle in self.links:
            raise ProtocolError(NOT_ALLOWED, f"handle {attach.handle} is in use")
        role = Role(attach.role)
        terminus = attach.target if role is Role.SENDER else attach.source
        if role is Role.SENDER and attach.initial_delivery_count is None:
            raise ProtocolError(INVALID_FIELD, "a sender's attach needs initial-delivery-count")
        used = {link.local_handle for link in self.links.values()}
        link = Link(
            name=attach.name,
            remote_handle=attach.handle,
            local_handle=min(set(range(HANDLE_MAX + 1)) - used),
            role=role,
            address=(terminus.address if terminus is not None else None) or "",
            delivery_count=attach.initial_delivery_count or 0,
            settled=attach.snd_settle_mode == SND_SETTLED,
        )
        self.links[attach.handle] = link
        properties = _scalars(attach.properties or {})
        request = LinkRequest(link.address, role, link.name, properties)
        if not link.address:
            self.attached(link, attach, AmqpError(INVALID_FIELD, "the link has no address"))
        else:
            self._engine.start_attach(self, link, attach, request)

    def attached(self, link: Link, attach: Attach, error: AmqpError | None) -> None:
        """Answer the client's attach: mirrored, or refused (null terminus, then detach)."""
        we_send = link.role is Role.RECEIVER
        self._send(
            Attach(
                name=link.name,
                handle=link.local_handle,
                role=not attach.role,
                snd_settle_mode=attach.snd_settle_mode if we_send else SND_MIXED,
                rcv_settle_mode=attach.rcv_settle_mode if we_send else RCV_FIRST,
                source=attach.source if error is None else None,
                target=attach.target if error is None else None,
                initial_delivery_count=0 if we_send else None,
                max_message_size=None if we_send else MAX_MESSAGE_BYTES,
            )
        )
        if error is not None:
            self._detach(link, error)
            return
        link.state = LinkState.ATTACHED
        if not we_send:
            self._grant(link)

    def _on_detach(self, detach: Detach) -> None:
        link = self._link(detach.handle)
        del self.links[detach.handle]
        if link.state is not LinkState.DETACHED:
            self._send(Detach(handle=link.local_handle, closed=detach.closed))

    def _on_flow(self, flow: Flow) -> None:
        # Section 2.5.6: the client's window is what it can still take from our next id.
        base = flow.next_incoming_id if flow.next_incoming_id is not None else 0
        window = (base + flow.incoming_window - self.next_outgoing_id) & _SERIAL
        self.remote_incoming_window = window if window <= flow.incoming_window else 0
        if flow.handle is None:
            if flow.echo:
                self._send(self._flow())
            for link in list(self.links.values()):
                self.flush(link)
            return
        link = self._link(flow.handle)
        if link.state is not LinkState.ATTACHED:
            return  # in flight before our detach
        if link.role is Role.RECEIVER and flow.link_credit is not None:
            # Section 2.6.7: credit = the receiver's delivery-count + its link-credit - ours.
            count = flow.delivery_count if flow.delivery_count is not None else 0
            link.credit = (count + flow.link_credit - link.delivery_count) & _SERIAL
            link.credit = min(link.credit, flow.link_credit)
            link.drain = flow.drain
            self.flush(link)
        if flow.echo:
            self._send(self._flow(link))

    def _on_transfer(self, transfer: Transfer, payload: bytes) -> None:
        # The window is opened again before it is half used, and frames are read one at a time:
        # a client cannot overrun it, nor a link's credit, granted the same way per delivery.
        self.next_incoming_id = (self.next_incoming_id + 1) & _SERIAL
        self.incoming_window -= 1
        if self.incoming_window <= SESSION_WINDOW // 2:
            self.incoming_window = SESSION_WINDOW
            self._send(self._flow())
        link = self._link(transfer.handle)
        if link.role is Role.RECEIVER:
            raise ProtocolError(NOT_ALLOWED, "a transfer on a link where the server sends")
        if link.state is not LinkState.ATTACHED:
            return  # in flight before our detach
        if link.partial is None:
            self._start_delivery(link, transfer)
        assert link.partial is not None
        if transfer.delivery_id is not None and transfer.delivery_id != link.partial_id:
            raise ProtocolError(INVALID_FIELD, "a delivery's transfers differ in delivery-id")
        link.partial_settled = link.partial_settled or bool(transfer.settled)
        if transfer.aborted:
            link.partial = None  # the client abandoned it (transfer's aborted, section 2.7.5)
            return
        link.partial += payload
        if len(link.partial) > MAX_MESSAGE_BYTES:
            text = f"a message over {MAX_MESSAGE_BYTES} bytes"
            self._detach(link, AmqpError(MESSAGE_SIZE_EXCEEDED, text))
        elif not transfer.more:
            self._complete(link)

    def _start_delivery(self, link: Link, transfer: Transfer) -> None:
        if transfer.delivery_id is None:
            raise ProtocolError(INVALID_FIELD, "a delivery's first transfer needs delivery-id")
        link.credit -= 1
        link.delivery_count = (link.delivery_count + 1) & _SERIAL
        if link.credit <= LINK_CREDIT // 2:
            self._grant(link)
        link.partial, link.partial_id = bytearray(), transfer.delivery_id
        link.partial_settled = False

    def _complete(self, link: Link) -> None:
        data, delivery_id, settled = (
            bytes(link.partial or b""),
            link.partial_id,
            link.partial_settled,
        )
        link.partial = None
        try:
            message = decode_message(data)
        except MalformedFrame as exc:
            if not settled:
                error = AmqpError(DECODE_ERROR, f"malformed message: {exc.reason}")
                self.settle(delivery_id, Rejected(error=error))
            return
        self._engine.start_request(self, link, Delivery(delivery_id, settled, message))

    # --- what the server sends --------------------------------------------------------------

    def settle(self, delivery_id: int, state: DeliveryState) -> None:
        """Settle a delivery the client sent, with its outcome."""
        self._send(Disposition(role=True, first=delivery_id, settled=True, state=state))

    def accept(self, delivery: Delivery) -> None:
        if not delivery.settled:
            self.settle(delivery.delivery_id, Accepted())

    def flush(self, link: Link) -> None:
        """Send the link's held replies while credit and the session window allow."""
        while link.held and link.credit > 0 and link.state is LinkState.ATTACHED:
            frames = self._transfers(link, encode_message(link.held[0]))
            if len(frames) > self.remote_incoming_window:
                return  # the client's session window reopens with its next flow
            link.held.popleft()
            for transfer, chunk in frames:
                self._send(transfer, chunk)
                self.next_outgoing_id = (self.next_outgoing_id + 1) & _SERIAL
                self.remote_incoming_window -= 1
            self.next_delivery_id = (self.next_delivery_id + 1) & _SERIAL
            link.delivery_count = (link.delivery_count + 1) & _SERIAL
            link.credit -= 1
        if link.drain and not link.held and link.credit:
            # Drain (section 2.6.7): the credit we cannot use is spent, and the client told.
            link.delivery_count = (link.delivery_count + link.credit) & _SERIAL
            link.credit = 0
            self._send(self._flow(link))

    def _transfers(self, link: Link, data: bytes) -> list[tuple[Transfer, bytes]]:
        """One delivery's transfers, each within the client's max-frame-size."""
        delivery_id = self.next_delivery_id
        first = Transfer(
            handle=link.local_handle,
            delivery_id=delivery_id,
            delivery_tag=struct.pack(">I", delivery_id),
            message_format=0,
            settled=link.settled,
            more=True,
        )
        room = self._engine.max_frame_size - 8 - len(encode(first.to_value()))
        chunks = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
        return [
            (
                Transfer(
                    handle=first.handle,
                    delivery_id=delivery_id,
                    delivery_tag=first.delivery_tag,
                    message_format=0,
                    settled=link.settled,
                    more=index < len(chunks) - 1,
                ),
                chunk,
            )
            for index, chunk in enumerate(chunks)
        ]

    def end(self) -> None:
        self._send(End())

    def _grant(self, link: Link) -> None:
        link.credit = LINK_CREDIT
        self._send(self._flow(link))

    def _detach(self, link: Link, error: AmqpError) -> None:
        link.state = LinkState.DETACHED
        link.partial = None
        link.held.clear()
        self._send(Detach(handle=link.local_handle, closed=True, error=error))

    def _flow(self, link: Link | None = None) -> Flow:
        return Flow(
            next_incoming_id=self.next_incoming_id,
            incoming_window=self.incoming_window,
            next_outgoing_id=self.next_outgoing_id,
            outgoing_window=SESSION_WINDOW,
            handle=None if link is None else link.local_handle,
            delivery_count=None if link is None else link.delivery_count,
            link_credit=None if link is None else link.credit,
            drain=link is not None and link.drain,
        )

    def _link(self, handle: int) -> Link:
        link = self.links.get(handle)
        if link is None:
            raise ProtocolError(INVALID_FIELD, f"handle {handle} is not attached")
        return link

    def _send(self, body: Performative, payload: bytes = b"") -> None:
        self._engine.send(self.local_channel, body, payload)


def _scalars(properties: dict[str, Value]) -> dict[str, Scalar]:
    # LinkRequest's properties: the scalar ones (DPS's api version is a string).
    result: dict[str, Scalar] = {}
    for key, value in properties.items():
        if isinstance(value, (str, bool, int, bytes, uuid.UUID)) or value is None:
            result[key] = value
    return result


__all__ = [
    "MAX_MESSAGE_BYTES",
    "Delivery",
    "Engine",
    "Link",
    "ProtocolError",
    "Session",
]
