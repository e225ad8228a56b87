"""A message's sections to and from the application's Message: what DPS's clients send (data
sections, an amqp-value of text), the section order, and what devprov does not take."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.amqp.application import Message
from devprov.amqp.message import decode_message, encode_message
from devprov.amqp.types import (
    Described,
    MalformedFrame,
    Symbol,
    Timestamp,
    UInt,
    ULong,
    Value,
    encode,
)


def _sections(*sections: tuple[int, Value]) -> bytes:
    return b"".join(encode(Described(ULong(code), value)) for code, value in sections)


def test_a_message_round_trips() -> None:
    message = Message(
        body=b'{"registrationId":"d"}',
        application_properties={"iotdps-operation-type": "iotdps-register", "force": True, "n": 3},
        message_id=ULong(7),
        correlation_id=uuid.UUID(int=5),
        to="to",
        reply_to="reply",
        content_type="application/json",
    )
    assert decode_message(encode_message(message)) == message


def test_an_empty_message_is_one_empty_data_section() -> None:
    assert encode_message(Message()) == b"\x00\x53\x75\xa0\x00"
    assert decode_message(b"") == Message()


def test_every_section_in_order_is_read_and_the_body_joined() -> None:
    data = _sections(
        (0x70, [True]),  # header: durable
        (0x71, {Symbol("x-opt-a"): 1}),
        (0x72, {Symbol("x-opt-b"): 2}),
        (
            0x73,
            [ULong(1), None, None, None, None, "corr", Symbol("text/plain"), None, Timestamp(9)],
        ),
        (0x74, {"k": "v"}),
        (0x75, b"ab"),
        (0x75, b"cd"),
        (0x78, {Symbol("f"): 1}),
    )
    message = decode_message(data)
    assert message == Message(
        body=b"abcd",
        application_properties={"k": "v"},
        message_id=ULong(1),
        correlation_id="corr",
        content_type="text/plain",
    )


@pytest.mark.parametrize(
    ("value", "body"),
    [("é", "é".encode()), (b"\x00", b"\x00"), (None, b"")],
    ids=["text", "binary", "null"],
)
def test_an_amqp_value_body_of_text_binary_or_null_is_taken(value: Value, body: bytes) -> None:
    assert decode_message(_sections((0x77, value))).body == body


def test_symbolic_section_descriptors_are_accepted() -> None:
    data = encode(Described(Symbol("amqp:data:binary"), b"x"))
    assert decode_message(data).body == b"x"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_sections((0x75, b"a"), (0x74, {})), id="properties-after-body"),
        pytest.param(_sections((0x73, []), (0x73, [])), id="properties-twice"),
        pytest.param(_sections((0x75, b"a"), (0x77, "b")), id="body-kinds-mixed"),
        pytest.param(_sections((0x77, "a"), (0x77, "b")), id="two-amqp-values"),
        pytest.param(_sections((0x76, [1])), id="amqp-sequence-body"),
        pytest.param(_sections((0x77, {"a": 1})), id="amqp-value-map"),
        pytest.param(_sections((0x75, "text")), id="data-not-binary"),
        pytest.param(_sections((0x74, {"k": [1]})), id="application-property-list"),
        pytest.param(_sections((0x74, {"k": 1.5})), id="application-property-double"),
        pytest.param(_sections((0x74, {UInt(1): "v"})), id="application-property-key-uint"),
        pytest.param(_sections((0x74, [])), id="application-properties-a-list"),
        pytest.param(_sections((0x72, [])), id="annotations-a-list"),
        pytest.param(_sections((0x73, [Symbol("id")])), id="message-id-symbol"),
        pytest.param(_sections((0x73, [None, None, UInt(1)])), id="to-uint"),
        pytest.param(_sections((0x73, [None] * 8 + [UInt(1)])), id="creation-time-uint"),
        pytest.param(_sections((0x79, [])), id="unknown-section"),
        pytest.param(encode(b"raw"), id="not-described"),
        pytest.param(_sections((0x75, b"a"))[:-1], id="truncated"),
    ],
)
def test_messages_devprov_does_not_take_raise_malformed_frame(data: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_message(data)


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_random_payloads_decode_or_raise_malformed_frame(data: bytes) -> None:
    with contextlib.suppress(MalformedFrame):
        decode_message(data)
