"""AMQP frames: the header, every performative and SASL frame both ways, the fields a peer may
leave out, the ones it may not, and a reader that refuses an oversized frame from its header."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.amqp.application import AmqpError
from devprov.amqp.composite import Composite
from devprov.amqp.frames import (
    AMQP_FRAME,
    SASL_FRAME,
    Accepted,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Flow,
    Frame,
    FrameReader,
    FrameTooLarge,
    Modified,
    Open,
    Received,
    Rejected,
    Released,
    SaslChallenge,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Source,
    Target,
    Transfer,
    encode_frame,
    parse_frame,
)
from devprov.amqp.types import Described, MalformedFrame, Symbol, UInt, ULong, Value, encode

ERROR = AmqpError("amqp:not-found", "gone", {"retry-after": 3, "why": "x"})

PERFORMATIVES = [
    Open(
        container_id="c",
        hostname="h",
        max_frame_size=1024,
        channel_max=3,
        idle_time_out=500,
        offered_capabilities=("a", "b"),
        properties={"product": "p"},
    ),
    Begin(remote_channel=1, next_outgoing_id=2, incoming_window=3, outgoing_window=4),
    Attach(
        name="n",
        handle=1,
        role=True,
        snd_settle_mode=1,
        rcv_settle_mode=0,
        source=Source(address="a", outcomes=("amqp:accepted:list",)),
        target=Target(address="b", dynamic=False),
        initial_delivery_count=0,
        max_message_size=10,
        properties={"com.microsoft:api-version": "2019-03-31"},
    ),
    Flow(
        next_incoming_id=1,
        incoming_window=2,
        next_outgoing_id=3,
        outgoing_window=4,
        handle=0,
        delivery_count=5,
        link_credit=6,
        drain=True,
        echo=True,
    ),
    Transfer(
        handle=0,
        delivery_id=1,
        delivery_tag=b"t",
        message_format=0,
        settled=True,
        more=True,
        state=Received(section_number=1, section_offset=2),
    ),
    Disposition(role=True, first=1, last=2, settled=True, state=Accepted()),
    Disposition(role=True, first=1, state=Rejected(error=ERROR)),
    Disposition(role=False, first=1, state=Released()),
    Disposition(role=False, first=1, state=Modified(delivery_failed=True)),
    Detach(handle=1, closed=True, error=ERROR),
    End(error=AmqpError("amqp:internal-error")),
    Close(),
]
SASL = [
    SaslMechanisms(sasl_server_mechanisms=("PLAIN", "ANONYMOUS")),
    SaslInit(mechanism="PLAIN", initial_response=b"\0u\0p", hostname="h"),
    SaslChallenge(challenge=b"c"),
    SaslResponse(response=b"r"),
    SaslOutcome(code=0, additional_data=b"d"),
]


def _read(data: bytes, limit: int = 65536) -> Frame | None:
    reader = FrameReader(limit)
    reader.feed(data)
    return reader.next_frame()


@pytest.mark.parametrize("body", PERFORMATIVES, ids=lambda b: type(b).__name__)
def test_performatives_round_trip(body: Composite) -> None:
    frame = Frame(AMQP_FRAME, 5, body, b"payload" if isinstance(body, Transfer) else b"")
    assert _read(encode_frame(frame)) == frame


@pytest.mark.parametrize("body", SASL, ids=lambda b: type(b).__name__)
def test_sasl_frames_round_trip(body: Composite) -> None:
    frame = Frame(SASL_FRAME, 0, body)
    assert _read(encode_frame(frame)) == frame


def test_the_frame_header_is_size_doff_type_channel() -> None:
    data = encode_frame(Frame(AMQP_FRAME, 0x0102, Close()))
    assert struct.unpack(">IBBH", data[:8]) == (len(data), 2, 0, 0x0102)
    assert data[8:] == b"\x00\x53\x18\x45"  # described by 0x18, an empty list


def test_an_empty_frame_is_a_heartbeat() -> None:
    assert encode_frame(Frame(AMQP_FRAME, 0, None)) == b"\x00\x00\x00\x08\x02\x00\x00\x00"
    assert _read(b"\x00\x00\x00\x08\x02\x00\x00\x00") == Frame(AMQP_FRAME, 0, None)


def test_symbolic_descriptors_are_accepted() -> None:
    body = encode(Described(Symbol("amqp:open:list"), ["c"]))
    assert parse_frame(AMQP_FRAME, 0, body).body == Open(container_id="c")
    state = Described(Symbol("amqp:accepted:list"), [])
    disposition = encode(
        Described(Symbol("amqp:disposition:list"), [True, UInt(0), None, True, state])
    )
    parsed = parse_frame(AMQP_FRAME, 0, disposition).body
    assert parsed == Disposition(role=True, first=0, settled=True, state=Accepted())


def test_missing_trailing_fields_take_their_defaults() -> None:
    body = encode(Described(ULong(0x12), ["n", UInt(0), False]))
    assert parse_frame(AMQP_FRAME, 0, body).body == Attach(name="n", handle=0, role=False)
    parsed = parse_frame(AMQP_FRAME, 0, encode(Described(ULong(0x10), ["c"]))).body
    assert isinstance(parsed, Open)
    assert (parsed.max_frame_size, parsed.channel_max, parsed.idle_time_out) == (
        0xFFFF_FFFF,
        0xFFFF,
        None,
    )


def test_a_multiple_field_takes_one_symbol_or_an_array() -> None:
    body = encode(Described(ULong(0x40), [Symbol("PLAIN")]))
    assert parse_frame(SASL_FRAME, 0, body).body == SaslMechanisms(
        sasl_server_mechanisms=("PLAIN",)
    )


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        pytest.param(AMQP_FRAME, Described(ULong(0x10), []), id="open-without-container-id"),
        pytest.param(AMQP_FRAME, Described(ULong(0x10), [None]), id="open-null-container-id"),
        pytest.param(AMQP_FRAME, Described(ULong(0x12), ["n", None, True]), id="attach-no-handle"),
        pytest.param(AMQP_FRAME, Described(ULong(0x10), [UInt(1)]), id="open-container-id-uint"),
        pytest.param(AMQP_FRAME, Described(ULong(0x16), [1]), id="detach-handle-long"),
        pytest.param(AMQP_FRAME, Described(ULong(0x18), [None, None]), id="close-two-fields"),
        pytest.param(AMQP_FRAME, Described(ULong(0x99), []), id="unknown-descriptor"),
        pytest.param(AMQP_FRAME, Described(Symbol("amqp:nope:list"), []), id="unknown-symbol"),
        pytest.param(AMQP_FRAME, Described(ULong(0x18), {}), id="performative-a-map"),
        pytest.param(AMQP_FRAME, [UInt(0)], id="not-described"),
        pytest.param(AMQP_FRAME, Described(ULong(0x40), [Symbol("PLAIN")]), id="sasl-in-amqp"),
        pytest.param(SASL_FRAME, Described(ULong(0x10), ["c"]), id="open-in-sasl"),
        pytest.param(
            AMQP_FRAME,
            Described(ULong(0x12), ["n", UInt(0), True, None, None, Described(ULong(0x29), [])]),
            id="attach-source-a-target",
        ),
        pytest.param(
            AMQP_FRAME,
            Described(ULong(0x15), [True, UInt(0), None, True, Described(ULong(0x34), [])]),
            id="unknown-delivery-state",
        ),
        pytest.param(
            AMQP_FRAME,
            Described(ULong(0x18), [Described(ULong(0x1D), [])]),
            id="error-no-condition",
        ),
    ],
)
def test_malformed_bodies_are_refused(kind: int, value: Value) -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(kind, 0, encode(value))


def test_bytes_after_a_performative_other_than_transfer_are_refused() -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(AMQP_FRAME, 0, encode(Close().to_value()) + b"\x40")


def test_an_empty_sasl_frame_is_refused() -> None:
    with pytest.raises(MalformedFrame):
        _read(b"\x00\x00\x00\x08\x02\x01\x00\x00")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"\x00\x00\x00\x08\x01\x00\x00\x00", id="doff-1"),
        pytest.param(b"\x00\x00\x00\x08\x03\x00\x00\x00", id="doff-past-size"),
        pytest.param(b"\x00\x00\x00\x08\x02\x07\x00\x00", id="unknown-type"),
    ],
)
def test_bad_frame_headers_are_refused(header: bytes) -> None:
    with pytest.raises(MalformedFrame):
        _read(header)


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    with pytest.raises(FrameTooLarge) as caught:
        _read(struct.pack(">IBBH", 70000, 2, 0, 0), limit=65536)
    assert (caught.value.size, caught.value.limit) == (70000, 65536)


def test_an_extended_header_is_skipped() -> None:
    body = encode(Close().to_value())
    data = struct.pack(">IBBH", 12 + len(body), 3, 0, 0) + b"\xff" * 4 + body
    assert _read(data) == Frame(AMQP_FRAME, 0, Close())


def test_the_reader_waits_for_whole_frames_and_headers() -> None:
    data = b"AMQP\x00\x01\x00\x00" + encode_frame(Frame(AMQP_FRAME, 0, Open(container_id="c")))
    reader = FrameReader(65536)
    headers, frames = [], []
    for byte in data:
        reader.feed(bytes([byte]))
        if not headers:
            header = reader.protocol_header()
            if header is not None:
                headers.append(header)
        elif (frame := reader.next_frame()) is not None:
            frames.append(frame)
    assert headers == [b"AMQP\x00\x01\x00\x00"]
    assert frames == [Frame(AMQP_FRAME, 0, Open(container_id="c"))]
    assert reader.buffered == 0


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_frames_parse_or_raise_malformed_frame(data: bytes) -> None:
    reader = FrameReader(65536)
    reader.feed(struct.pack(">IBBH", 8 + len(data), 2, data[0] % 2 if data else 0, 0) + data)
    with contextlib.suppress(MalformedFrame):
        reader.next_frame()


@given(st.sampled_from(PERFORMATIVES + SASL), st.data())
@settings(max_examples=500)
def test_mutated_frames_parse_or_raise_malformed_frame(
    body: Composite, data: st.DataObject
) -> None:
    kind = SASL_FRAME if body in SASL else AMQP_FRAME
    encoded = bytearray(encode_frame(Frame(kind, 0, body)))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(8, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MalformedFrame):
        parse_frame(kind, 0, bytes(encoded[8:]))
