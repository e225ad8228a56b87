"""AMQP 1.0 frames without I/O (OASIS AMQP 1.0 part 1, sections 2.2, 2.3, 2.7, 3.4, 3.5 and
5.3): the protocol headers, the frame header, the performatives, the terminus and outcome
types, and the SASL frames, as frozen dataclasses (docs/amqp-protocol.md#frames).

:class:`FrameReader` takes bytes as they arrive and hands back protocol headers and whole
frames, refusing a frame larger than its limit from the 8-byte header alone, before its body
arrives; :func:`encode_frame` writes one. A body that is not a performative the receiver knows,
or a performative missing a mandatory field, raises :class:`MalformedFrame`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, cast

from devprov.amqp.application import AmqpError
from devprov.amqp.composite import (
    ANY,
    BINARY,
    BOOL,
    ERROR,
    FIELDS,
    MAP,
    STRING,
    SYMBOL,
    SYMBOLS,
    UBYTE,
    UINT,
    ULONG,
    USHORT,
    Composite,
    Kind,
    by_descriptor,
    item,
    read_composite,
)
from devprov.amqp.types import MalformedFrame, Value, decode_from, encode

# Protocol headers (sections 2.2 and 5.3.1): "AMQP", protocol id, major, minor, revision.
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
HEADER_SIZE = 8

AMQP_FRAME = 0  # frame types (section 2.3.1)
SASL_FRAME = 1
MIN_MAX_FRAME_SIZE = 512  # the smallest max-frame-size a peer may set (section 2.7.1)

# Settlement modes (sections 2.8.2, 2.8.3).
SND_UNSETTLED, SND_SETTLED, SND_MIXED = 0, 1, 2
RCV_FIRST, RCV_SECOND = 0, 1

# sasl-outcome codes (section 5.3.3.6).
SASL_OK, SASL_AUTH, SASL_SYS = 0, 1, 2


# --- terminus and delivery states ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Terminus(Composite):
    """The fields source and target share, in the order both begin with (3.5.3, 3.5.4)."""

    address: str | None = item(STRING)
    durable: int | None = item(UINT)
    expiry_policy: str | None = item(SYMBOL)
    timeout: int | None = item(UINT)
    dynamic: bool | None = item(BOOL)
    dynamic_node_properties: dict[str, Value] | None = item(FIELDS)


@dataclass(frozen=True, kw_only=True)
class Source(_Terminus):
    CODE: ClassVar[int] = 0x28
    NAME: ClassVar[str] = "amqp:source:list"
    distribution_mode: str | None = item(SYMBOL)
    filter: dict[Value, Value] | None = item(MAP)
    default_outcome: Value = item(ANY)
    outcomes: tuple[str, ...] | None = item(SYMBOLS)
    capabilities: tuple[str, ...] | None = item(SYMBOLS)


@dataclass(frozen=True, kw_only=True)
class Target(_Terminus):
    CODE: ClassVar[int] = 0x29
    NAME: ClassVar[str] = "amqp:target:list"
    capabilities: tuple[str, ...] | None = item(SYMBOLS)


@dataclass(frozen=True, kw_only=True)
class Received(Composite):
    CODE: ClassVar[int] = 0x23
    NAME: ClassVar[str] = "amqp:received:list"
    section_number: int = item(UINT, mandatory=True)
    section_offset: int = item(ULONG, mandatory=True)


@dataclass(frozen=True, kw_only=True)
class Accepted(Composite):
    CODE: ClassVar[int] = 0x24
    NAME: ClassVar[str] = "amqp:accepted:list"


@dataclass(frozen=True, kw_only=True)
class Rejected(Composite):
    CODE: ClassVar[int] = 0x25
    NAME: ClassVar[str] = "amqp:rejected:list"
    error: AmqpError | None = item(ERROR)


@dataclass(frozen=True, kw_only=True)
class Released(Composite):
    CODE: ClassVar[int] = 0x26
    NAME: ClassVar[str] = "amqp:released:list"


@dataclass(frozen=True, kw_only=True)
class Modified(Composite):
    CODE: ClassVar[int] = 0x27
    NAME: ClassVar[str] = "amqp:modified:list"
    delivery_failed: bool | None = item(BOOL)
    undeliverable_here: bool | None = item(BOOL)
    message_annotations: dict[str, Value] | None = item(FIELDS)


DeliveryState = Received | Accepted | Rejected | Released | Modified
_STATES = by_descriptor(Received, Accepted, Rejected, Released, Modified)
_TERMINI_SOURCE = by_descriptor(Source)
_TERMINI_TARGET = by_descriptor(Target)


def _writer(value: Composite) -> Value:
    return value.to_value()


SOURCE = Kind("source", lambda v: read_composite(v, _TERMINI_SOURCE, "source"), _writer)
TARGET = Kind("target", lambda v: read_composite(v, _TERMINI_TARGET, "target"), _writer)
STATE = Kind("delivery state", lambda v: read_composite(v, _STATES, "delivery state"), _writer)

# --- performatives (section 2.7) -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Open(Composite):
    CODE: ClassVar[int] = 0x10
    NAME: ClassVar[str] = "amqp:open:list"
    container_id: str = item(STRING, mandatory=True)
    hostname: str | None = item(STRING)
    max_frame_size: int = item(UINT, default=0xFFFF_FFFF)
    channel_max: int = item(USHORT, default=0xFFFF)
    idle_time_out: int | None = item(UINT)  # milliseconds
    outgoing_locales: tuple[str, ...] | None = item(SYMBOLS)
    incoming_locales: tuple[str, ...] | None = item(SYMBOLS)
    offered_capabilities: tuple[str, ...] | None = item(SYMBOLS)
    desired_capabilities: tuple[str, ...] | None = item(SYMBOLS)
    properties: dict[str, Value] | None = item(FIELDS)


@dataclass(frozen=True, kw_only=True)
class Begin(Composite):
    CODE: ClassVar[int] = 0x11
    NAME: ClassVar[str] = "amqp:begin:list"
    remote_channel: int | None = item(USHORT)
    next_outgoing_id: int = item(UINT, mandatory=True)
    incoming_window: int = item(UINT, mandatory=True)
    outgoing_window: int = item(UINT, mandatory=True)
    handle_max: int = item(UINT, default=0xFFFF_FFFF)
    offered_capabilities: tuple[str, ...] | None = item(SYMBOLS)
    desired_capabilities: tuple[str, ...] | None = item(SYMBOLS)
    properties: dict[str, Value] | None = item(FIELDS)


@dataclass(frozen=True, kw_only=True)
class Attach(Composite):
    CODE: ClassVar[int] = 0x12
    NAME: ClassVar[str] = "amqp:attach:list"
    name: str = item(STRING, mandatory=True)
    handle: int = item(UINT, mandatory=True)
    role: bool = item(BOOL, mandatory=True)  # False: sender, True: receiver (section 2.8.1)
    snd_settle_mode: int = item(UBYTE, default=SND_MIXED)
    rcv_settle_mode: int = item(UBYTE, default=RCV_FIRST)
    source: Source | None = item(SOURCE)
    target: Target | None = item(TARGET)
    unsettled: dict[Value, Value] | None = item(MAP)
    incomplete_unsettled: bool = item(BOOL, default=False)
    initial_delivery_count: int | None = item(UINT)
    max_message_size: int | None = item(ULONG)
    offered_capabilities: tuple[str, ...] | None = item(SYMBOLS)
    desired_capabilities: tuple[str, ...] | None = item(SYMBOLS)
    properties: dict[str, Value] | None = item(FIELDS)


@dataclass(frozen=True, kw_only=True)
class Flow(Composite):
    CODE: ClassVar[int] = 0x13
    NAME: ClassVar[str] = "amqp:flow:list"
    next_incoming_id: int | None = item(UINT)
    incoming_window: int = item(UINT, mandatory=True)
    next_outgoing_id: int = item(UINT, mandatory=True)
    outgoing_window: int = item(UINT, mandatory=True)
    handle: int | None = item(UINT)
    delivery_count: int | None = item(UINT)
    link_credit: int | None = item(UINT)
    available: int | None = item(UINT)
    drain: bool = item(BOOL, default=False)
    echo: bool = item(BOOL, default=False)
    properties: dict[str, Value] | None = item(FIELDS)


@dataclass(frozen=True, kw_only=True)
class Transfer(Composite):
    CODE: ClassVar[int] = 0x14
    NAME: ClassVar[str] = "amqp:transfer:list"
    handle: int = item(UINT, mandatory=True)
    delivery_id: int | None = item(UINT)
    delivery_tag: bytes | None = item(BINARY)
    message_format: int | None = item(UINT)
    settled: bool | None = item(BOOL)
    more: bool = item(BOOL, default=False)
    rcv_settle_mode: int | None = item(UBYTE)
    state: DeliveryState | None = item(STATE)
    resume: bool = item(BOOL, default=False)
    aborted: bool = item(BOOL, default=False)
    batchable: bool = item(BOOL, default=False)


@dataclass(frozen=True, kw_only=True)
class Disposition(Composite):
    CODE: ClassVar[int] = 0x15
    NAME: ClassVar[str] = "amqp:disposition:list"
    role: bool = item(BOOL, mandatory=True)
    first: int = item(UINT, mandatory=True)
    last: int | None = item(UINT)
    settled: bool = item(BOOL, default=False)
    state: DeliveryState | None = item(STATE)
    batchable: bool = item(BOOL, default=False)


@dataclass(frozen=True, kw_only=True)
class Detach(Composite):
    CODE: ClassVar[int] = 0x16
    NAME: ClassVar[str] = "amqp:detach:list"
    handle: int = item(UINT, mandatory=True)
    closed: bool = item(BOOL, default=False)
    error: AmqpError | None = item(ERROR)


@dataclass(frozen=True, kw_only=True)
class End(Composite):
    CODE: ClassVar[int] = 0x17
    NAME: ClassVar[str] = "amqp:end:list"
    error: AmqpError | None = item(ERROR)


@dataclass(frozen=True, kw_only=True)
class Close(Composite):
    CODE: ClassVar[int] = 0x18
    NAME: ClassVar[str] = "amqp:close:list"
    error: AmqpError | None = item(ERROR)


Performative = Open | Begin | Attach | Flow | Transfer | Disposition | Detach | End | Close
_PERFORMATIVES = by_descriptor(Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close)

# --- SASL (section 5.3.3) ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SaslMechanisms(Composite):
    CODE: ClassVar[int] = 0x40
    NAME: ClassVar[str] = "amqp:sasl-mechanisms:list"
    sasl_server_mechanisms: tuple[str, ...] = item(SYMBOLS, mandatory=True)


@dataclass(frozen=True, kw_only=True)
class SaslInit(Composite):
    CODE: ClassVar[int] = 0x41
    NAME: ClassVar[str] = "amqp:sasl-init:list"
    mechanism: str = item(SYMBOL, mandatory=True)
    initial_response: bytes | None = item(BINARY)
    hostname: str | None = item(STRING)


@dataclass(frozen=True, kw_only=True)
class SaslChallenge(Composite):
    CODE: ClassVar[int] = 0x42
    NAME: ClassVar[str] = "amqp:sasl-challenge:list"
    challenge: bytes = item(BINARY, mandatory=True)


@dataclass(frozen=True, kw_only=True)
class SaslResponse(Composite):
    CODE: ClassVar[int] = 0x43
    NAME: ClassVar[str] = "amqp:sasl-response:list"
    response: bytes = item(BINARY, mandatory=True)


@dataclass(frozen=True, kw_only=True)
class SaslOutcome(Composite):
    CODE: ClassVar[int] = 0x44
    NAME: ClassVar[str] = "amqp:sasl-outcome:list"
    code: int = item(UBYTE, mandatory=True)
    additional_data: bytes | None = item(BINARY)


SaslFrame = SaslMechanisms | SaslInit | SaslChallenge | SaslResponse | SaslOutcome
_SASL = by_descriptor(SaslMechanisms, SaslInit, SaslChallenge, SaslResponse, SaslOutcome)

# --- frames (section 2.3) ------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame: its type, channel and body. ``body`` is None for an empty frame (a heartbeat,
    section 2.4.5); ``payload`` is what follows a transfer's performative (message bytes)."""

    type: int
    channel: int
    body: Performative | SaslFrame | None
    payload: bytes = b""


def encode_frame(frame: Frame) -> bytes:
    """The frame's bytes: an 8-byte header (doff 2) and the body."""
    body = b"" if frame.body is None else encode(frame.body.to_value()) + frame.payload
    return struct.pack(">IBBH", HEADER_SIZE + len(body), 2, frame.type, frame.channel) + body


class FrameTooLarge(MalformedFrame):
    """A frame header announces more bytes than the receiver's max-frame-size."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the frame announces {size} bytes, more than max-frame-size {limit}")
        self.size = size
        self.limit = limit


class FrameReader:
    """Bytes in as they arrive; protocol headers and whole frames out."""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size  # may be lowered once open is exchanged
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def protocol_header(self) -> bytes | None:
        """The next 8 bytes, a protocol header to be judged by the caller, once they arrived."""
        if len(self._buffer) < HEADER_SIZE:
            return None
        header = bytes(self._buffer[:HEADER_SIZE])
        del self._buffer[:HEADER_SIZE]
        return header

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until its bytes arrived; raises MalformedFrame."""
        if len(self._buffer) < HEADER_SIZE:
            return None
        size, doff, kind, channel = struct.unpack_from(">IBBH", self._buffer)
        if size > self.max_frame_size:
            raise FrameTooLarge(size, self.max_frame_size)
        if doff < 2 or doff * 4 > size:
            raise MalformedFrame(f"a data offset of {doff} in a frame of {size} bytes")
        if kind not in (AMQP_FRAME, SASL_FRAME):
            raise MalformedFrame(f"unknown frame type {kind}")
        if len(self._buffer) < size:
            return None
        body = bytes(self._buffer[doff * 4 : size])  # extended header (doff > 2) is ignored
        del self._buffer[:size]
        return parse_frame(kind, channel, body)


def parse_frame(kind: int, channel: int, body: bytes) -> Frame:
    """The frame of type ``kind`` whose body (after the extended header) is ``body``."""
    if not body:
        if kind == SASL_FRAME:
            raise MalformedFrame("an empty SASL frame")
        return Frame(kind, channel, None)
    value, end = decode_from(body, 0)
    performative: Performative | SaslFrame
    if kind == SASL_FRAME:
        performative = cast(SaslFrame, read_composite(value, _SASL, "SASL frame"))
    else:
        performative = cast(Performative, read_composite(value, _PERFORMATIVES, "frame body"))
    payload = body[end:]
    if payload and not isinstance(performative, Transfer):
        raise MalformedFrame(f"{len(payload)} bytes after {performative.NAME}")
    return Frame(kind, channel, performative, payload)
