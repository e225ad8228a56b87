"""An AMQP message's bare and annotated sections (OASIS AMQP 1.0 part 1, section 3.2) to and
from :class:`devprov.amqp.application.Message` (docs/amqp-protocol.md#messages).

A message is a sequence of described sections in a fixed order: header, delivery-annotations,
message-annotations, properties, application-properties, the body (data sections, amqp-sequence
sections or one amqp-value), footer. Decoding checks that order and the types of the fields the
application sees, and keeps what :class:`Message` holds; the header and the annotations are
read, checked and dropped. A body other than data sections or an amqp-value of text, binary or
null, or an application property that is not a scalar, raises :class:`MalformedFrame`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar

from devprov.amqp.application import Message, Scalar
from devprov.amqp.composite import (
    ANY,
    BINARY,
    STRING,
    SYMBOL,
    UINT,
    Composite,
    Kind,
    descriptor_of,
    item,
)
from devprov.amqp.types import (
    Described,
    MalformedFrame,
    Symbol,
    Timestamp,
    ULong,
    Value,
    decode_from,
    encode,
)

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES = 0x70, 0x71, 0x72, 0x73
APPLICATION_PROPERTIES, DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x74, 0x75, 0x76, 0x77, 0x78
_NAMES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}
# Each section's place in the order of section 3.2; the three body kinds share one.
_RANK = {
    HEADER: 0,
    DELIVERY_ANNOTATIONS: 1,
    MESSAGE_ANNOTATIONS: 2,
    PROPERTIES: 3,
    APPLICATION_PROPERTIES: 4,
    DATA: 5,
    AMQP_SEQUENCE: 5,
    AMQP_VALUE: 5,
    FOOTER: 6,
}
_REPEATABLE = frozenset({DATA, AMQP_SEQUENCE})
_BODY = frozenset({DATA, AMQP_SEQUENCE, AMQP_VALUE})


def _read_message_id(value: Value) -> Scalar:
    # message-id-ulong, -uuid, -binary or -string (section 3.2.11 to 3.2.14).
    if isinstance(value, (ULong, uuid.UUID, bytes)) or (
        isinstance(value, str) and not isinstance(value, Symbol)
    ):
        return value
    raise TypeError("message id")


def _write_message_id(value: Scalar) -> Value:
    return ULong(value) if type(value) is int else value


MESSAGE_ID = Kind("ulong, uuid, binary or string", _read_message_id, _write_message_id)


@dataclass(frozen=True, kw_only=True)
class Properties(Composite):
    """properties (section 3.2.4)."""

    CODE: ClassVar[int] = PROPERTIES
    NAME: ClassVar[str] = "amqp:properties:list"
    message_id: Scalar = item(MESSAGE_ID)
    user_id: bytes | None = item(BINARY)
    to: str | None = item(STRING)
    subject: str | None = item(STRING)
    reply_to: str | None = item(STRING)
    correlation_id: Scalar = item(MESSAGE_ID)
    content_type: str | None = item(SYMBOL)
    content_encoding: str | None = item(SYMBOL)
    absolute_expiry_time: Value = item(ANY)
    creation_time: Value = item(ANY)
    group_id: str | None = item(STRING)
    group_sequence: int | None = item(UINT)
    reply_to_group_id: str | None = item(STRING)


def decode_message(data: bytes) -> Message:
    """The message whose sections are ``data`` (a whole delivery's payload)."""
    offset, last_rank = 0, -1
    seen: set[int] = set()
    properties = Properties()
    application: dict[str, Scalar] = {}
    body: list[bytes] = []
    while offset < len(data):
        section, offset = decode_from(data, offset)
        code, content = _section(section)
        if _RANK[code] < last_rank or (code in seen and code not in _REPEATABLE):
            raise MalformedFrame(f"message section 0x{code:02x} out of order")
        if code in _BODY and seen & _BODY - {code}:
            raise MalformedFrame("a message body mixes section kinds")
        last_rank = _RANK[code]
        seen.add(code)
        if code == PROPERTIES:
            properties = Properties.from_value(content)
            _check_timestamps(properties)
        elif code == APPLICATION_PROPERTIES:
            application = _application_properties(content)
        elif code in _BODY:
            body.append(_body_bytes(code, content))
        elif code != HEADER and not isinstance(content, dict):
            raise MalformedFrame(f"message section 0x{code:02x} must be a map")
    return Message(
        body=b"".join(body),
        application_properties=application,
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        to=properties.to,
        reply_to=properties.reply_to,
        content_type=properties.content_type,
    )


def encode_message(message: Message) -> bytes:
    """The message as properties (when any is set), application-properties (when any) and one
    data section holding the body."""
    sections: list[Value] = []
    properties = Properties(
        message_id=message.message_id,
        to=message.to,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
    )
    if properties != Properties():
        sections.append(properties.to_value())
    if message.application_properties:
        application: dict[Value, Value] = {
            key: value for key, value in message.application_properties.items()
        }
        sections.append(Described(ULong(APPLICATION_PROPERTIES), application))
    sections.append(Described(ULong(DATA), bytes(message.body)))
    return b"".join(encode(section) for section in sections)


def _section(section: Value) -> tuple[int, Value]:
    if not isinstance(section, Described):
        raise MalformedFrame("a message section is a described value")
    key = descriptor_of(section)
    code = _NAMES.get(key, -1) if isinstance(key, str) else key
    if code not in _RANK:
        raise MalformedFrame(f"unknown message section {section.descriptor!r:.60}")
    return code, section.value


def _check_timestamps(properties: Properties) -> None:
    for value in (properties.absolute_expiry_time, properties.creation_time):
        if value is not None and not isinstance(value, Timestamp):
            raise MalformedFrame("properties: a time must be a timestamp")


def _application_properties(content: Value) -> dict[str, Scalar]:
    # Keys are strings and values simple types (section 3.2.5); devprov takes the scalar ones.
    if not isinstance(content, dict):
        raise MalformedFrame("application-properties must be a map")
    result: dict[str, Scalar] = {}
    for key, value in content.items():
        if not isinstance(key, str):
            raise MalformedFrame("an application property's key must be a string")
        if not isinstance(value, (str, bool, int, bytes, uuid.UUID, type(None))):
            raise MalformedFrame(f"application property {key!r:.60} is not a scalar")
        result[str(key)] = value
    return result


def _body_bytes(code: int, content: Value) -> bytes:
    if code == DATA and isinstance(content, bytes):
        return content
    if code == AMQP_VALUE:
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode("utf-8")
    raise MalformedFrame("a message body devprov does not take (data, or an amqp-value of text)")
