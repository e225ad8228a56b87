"""A strict MQTT 3.1.1 packet codec without I/O: bytes in, packets out, and back.

:class:`Decoder` takes bytes as they arrive and hands back whole packets; :func:`encode` turns a
packet into its bytes. Both hold to the OASIS standard MQTT Version 3.1.1 (29 October 2014). A
packet that breaks one of its rules is refused whole, with the section or the normative
statement (``[MQTT-x.y.z-n]``) in the reason: the receiver of a malformed packet must close the
connection rather than guess (section 4.8). In one place the codec is stricter than the letter
of 3.1.1: a remaining length must use the fewest bytes (see :func:`_read_remaining_length`).

Nothing here does I/O or knows of DPS: the session above decides what a packet means, which
client identifiers it accepts and what it answers to a protocol level other than 4.

The module runs past the usual 400 lines on purpose: it is one standard's fourteen packets, and
decoding and encoding share the rules (topic names and filters, strings, packet identifiers), so
each rule is written once and checked both ways.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, TypeAlias

# CONNACK return codes (section 3.2.2.3); 6 to 255 are reserved.
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_USERNAME_OR_PASSWORD = 4
NOT_AUTHORIZED = 5
SUBACK_FAILURE = 0x80  # a SUBACK return code: the subscription was refused (section 3.9.3)

_MAX_REMAINING_LENGTH = 268_435_455  # what four bytes of 7 bits can say (section 2.2.3)
_MAX_FIELD = 65_535  # strings and binary data carry a two-byte length (sections 1.5.3, 3.1.3.4)
_SUBACK_CODES = frozenset({0, 1, 2, SUBACK_FAILURE})  # the rest are reserved [MQTT-3.9.3-2]

# Packet types (section 2.2.1); 0 and 15 are reserved.
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 2, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = range(8, 15)
_NAMES = (
    "reserved type 0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
    "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
    "reserved type 15",
)  # fmt: skip
# What each side may receive: a server what clients send, a client what servers send.
_RECEIVED_BY = {
    "server": frozenset({1, 3, 4, 5, 6, 7, 8, 10, 12, 14}),
    "client": frozenset({2, 3, 4, 5, 6, 7, 9, 11, 13}),
}
# The fixed header flags of every type but PUBLISH are fixed by the standard (section 2.2.2).
_SET_FLAGS = {_PUBREL: 0b0010, _SUBSCRIBE: 0b0010, _UNSUBSCRIBE: 0b0010}


class MalformedPacket(Exception):
    """The bytes are not an MQTT 3.1.1 packet the receiver may accept; close the connection."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # a plain sentence naming what was wrong


class PacketTooLarge(MalformedPacket):
    """A packet announces more bytes than the receiver is willing to hold."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the packet announces {size} bytes, more than the limit of {limit}")
        self.size = size  # fixed header plus remaining length, as announced
        self.limit = limit


@dataclass(frozen=True)
class Will:
    topic: str
    message: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Connect:
    protocol_name: str
    protocol_level: int
    clean_session: bool
    keep_alive: int
    client_id: str
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None


@dataclass(frozen=True)
class ConnAck:
    session_present: bool
    return_code: int


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True)
class PubRec:
    packet_id: int


@dataclass(frozen=True)
class PubRel:
    packet_id: int


@dataclass(frozen=True)
class PubComp:
    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]  # (topic filter, requested QoS)


@dataclass(frozen=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True)
class UnsubAck:
    packet_id: int


@dataclass(frozen=True)
class PingReq:
    pass


@dataclass(frozen=True)
class PingResp:
    pass


@dataclass(frozen=True)
class Disconnect:
    pass


Packet: TypeAlias = (
    Connect | ConnAck | Publish | PubAck | PubRec | PubRel | PubComp | Subscribe | SubAck
    | Unsubscribe | UnsubAck | PingReq | PingResp | Disconnect
)  # fmt: skip


class Decoder:
    """Turns a byte stream from one peer into packets, decoding as the bytes arrive.

    :meth:`feed` decodes every complete packet at once and keeps only the unfinished tail: after
    a feed the decoder holds at most one incomplete packet, within ``max_packet_bytes``, however
    much it was given. :meth:`next_packet` hands the packets back in order, then raises the
    error met after them, if any; from then on the decoder is dead and every call raises that
    error again, since nothing after a malformed packet can be framed.
    """

    def __init__(
        self, *, max_packet_bytes: int, role: Literal["server", "client"] = "server"
    ) -> None:
        if max_packet_bytes < 2:
            raise ValueError("max_packet_bytes must allow the smallest packet (2 bytes)")
        if role not in _RECEIVED_BY:
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        self._limit = max_packet_bytes
        self._role = role
        self._buffer = bytearray()
        self._ready: deque[Packet] = deque()
        self._error: MalformedPacket | None = None  # met while decoding; raised after _ready
        self._dead = False  # the error has been raised

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream and decode what they complete. Errors wait in
        line behind the packets decoded before them; only a dead decoder raises here."""
        if self._dead and self._error is not None:
            raise self._error
        if self._error is not None:
            return  # the stream cannot be framed past a malformed packet: drop what follows
        self._buffer += data
        start = 0
        try:
            while (end := self._decode_at(start)) is not None:
                start = end
        except MalformedPacket as exc:
            self._error = exc
            self._buffer.clear()
        else:
            del self._buffer[:start]

    def next_packet(self) -> Packet | None:
        """The next decoded packet, or None until more bytes are fed."""
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            self._dead = True
            raise self._error
        return None

    def _decode_at(self, start: int) -> int | None:
        """Decode the packet at ``start`` of the buffer into the queue and return where it
        ends, or None while it is incomplete. Each rule is checked as soon as its bytes are in."""
        buffer = self._buffer
        if start >= len(buffer):
            return None
        kind, flags = buffer[start] >> 4, buffer[start] & 0x0F
        _check_fixed_header(kind, flags, self._role)
        length = _read_remaining_length(buffer, start + 1)
        if length is None:
            return None
        remaining, header = length[0], 1 + length[1]
        size = header + remaining
        if size > self._limit:
            raise PacketTooLarge(size, self._limit)
        if len(buffer) - start < size:
            return None
        body = _Reader(bytes(buffer[start + header : start + size]), _NAMES[kind])
        self._ready.append(_decode_body(kind, flags, body))
        return start + size


def _check_fixed_header(kind: int, flags: int, role: str) -> None:
    name = _NAMES[kind]
    if kind not in _RECEIVED_BY[role]:
        if kind in (0, 15):
            raise MalformedPacket(f"packet type {kind} is reserved (section 2.2.1)")
        sender = "client" if role == "server" else "server"
        raise MalformedPacket(f"a {sender} does not send {name} (packet type {kind})")
    if kind == _PUBLISH:
        qos = (flags >> 1) & 0b11
        if qos == 3:
            raise MalformedPacket("the PUBLISH fixed header asks for QoS 3 [MQTT-3.3.1-4]")
        if qos == 0 and flags & 0b1000:
            raise MalformedPacket("the PUBLISH fixed header sets DUP with QoS 0 [MQTT-3.3.1-2]")
        return
    expected = _SET_FLAGS.get(kind, 0)
    if flags != expected:
        raise MalformedPacket(
            f"the {name} fixed header flags are {flags:04b}, not {expected:04b} [MQTT-2.2.2-2]"
        )


def _read_remaining_length(buffer: bytearray, at: int) -> tuple[int, int] | None:
    """The remaining length at ``at`` and how many bytes it takes, or None while incomplete.

    At most four bytes (section 2.2.3). A last byte of zero after a continuation is a longer
    spelling of a smaller number: 3.1.1 only shows the minimal encoding, MQTT 5 requires it
    (section 1.5.5), no client sends anything else, and refusing it keeps one spelling per
    packet.
    """
    value = 0
    for index in range(4):
        if at + index >= len(buffer):
            return None
        byte = buffer[at + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise MalformedPacket("the remaining length is not in its shortest encoding")
            return value, index + 1
    raise MalformedPacket("the remaining length runs past four bytes (section 2.2.3)")


class _Reader:
    """The fields of one packet's variable header and payload, never read past its end."""

    __slots__ = ("_at", "_data", "_name")

    def __init__(self, data: bytes, name: str) -> None:
        self._data, self._at, self._name = data, 0, name

    def take(self, count: int, what: str) -> bytes:
        end = self._at + count
        if end > len(self._data):
            raise MalformedPacket(f"the {self._name} packet ends inside its {what}")
        chunk, self._at = self._data[self._at : end], end
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def binary(self, what: str) -> bytes:
        return self.take(self.u16(what), what)

    def string(self, what: str) -> str:
        return _parse_string(self.binary(what), f"the {self._name} {what}")

    def packet_id(self) -> int:
        packet_id = self.u16("packet identifier")
        if packet_id == 0:
            raise MalformedPacket(f"the {self._name} packet identifier is 0 [MQTT-2.3.1-1]")
        return packet_id

    def topic_name(self, what: str = "topic name") -> str:
        topic = self.string(what)
        _refuse(_topic_name_problem(topic), f"the {self._name} {what}")
        return topic

    def topic_filter(self) -> str:
        topic = self.string("topic filter")
        _refuse(_topic_filter_problem(topic), f"the {self._name} topic filter")
        return topic

    def at_end(self) -> bool:
        return self._at == len(self._data)

    def rest(self) -> bytes:
        chunk, self._at = self._data[self._at :], len(self._data)
        return chunk

    def finish(self) -> None:
        if not self.at_end():
            left = len(self._data) - self._at
            raise MalformedPacket(f"the {self._name} packet has {left} bytes after its last field")


def _refuse(problem: str | None, what: str) -> None:
    if problem is not None:
        raise MalformedPacket(f"{what} {problem}")


def _parse_string(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")  # strict: refuses surrogates and overlong forms too
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what} is not well-formed UTF-8 [MQTT-1.5.3-1]") from exc
    if "\0" in text:
        raise MalformedPacket(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    return text


def _topic_name_problem(topic: str) -> str | None:
    if not topic:
        return "is empty [MQTT-4.7.3-1]"
    if "+" in topic or "#" in topic:
        return "contains a wildcard [MQTT-3.3.2-2]"
    return None


def _topic_filter_problem(topic: str) -> str | None:
    if not topic:
        return "is empty [MQTT-4.7.3-1]"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "has a '#' that is not alone in its last level [MQTT-4.7.1-2]"
        if "+" in level and level != "+":
            return "has a '+' that is not alone in its level [MQTT-4.7.1-3]"
    return None


def _decode_body(kind: int, flags: int, body: _Reader) -> Packet:
    packet: Packet
    if kind == _CONNECT:
        return _decode_connect(body)  # reads only as far as it understands
    if kind == _CONNACK:
        packet = _decode_connack(body)
    elif kind == _PUBLISH:
        qos = (flags >> 1) & 0b11
        topic = body.topic_name()
        packet_id = body.packet_id() if qos else None
        packet = Publish(topic, body.rest(), qos, packet_id, bool(flags & 1), bool(flags & 8))
    elif kind in _ACKS:
        packet = _ACKS[kind](body.packet_id())
    elif kind == _SUBSCRIBE:
        packet = _decode_subscribe(body)
    elif kind == _SUBACK:
        packet_id, codes = body.packet_id(), tuple(body.rest())
        if not codes or not _SUBACK_CODES.issuperset(codes):
            raise MalformedPacket("the SUBACK return codes are missing or reserved [MQTT-3.9.3-2]")
        packet = SubAck(packet_id, codes)
    elif kind == _UNSUBSCRIBE:
        packet_id, filters = body.packet_id(), []
        while not body.at_end():
            filters.append(body.topic_filter())
        if not filters:
            raise MalformedPacket("the UNSUBSCRIBE packet has no topic filter [MQTT-3.10.3-2]")
        packet = Unsubscribe(packet_id, tuple(filters))
    else:
        packet = _EMPTY[kind]()
    body.finish()
    return packet


# The packets that carry nothing but a packet identifier, and those that carry nothing at all.
_ACKS: dict[int, type[PubAck | PubRec | PubRel | PubComp | UnsubAck]] = {
    _PUBACK: PubAck, _PUBREC: PubRec, _PUBREL: PubRel, _PUBCOMP: PubComp, _UNSUBACK: UnsubAck,
}  # fmt: skip
_EMPTY: dict[int, type[PingReq | PingResp | Disconnect]] = {
    _PINGREQ: PingReq, _PINGRESP: PingResp, _DISCONNECT: Disconnect,
}  # fmt: skip


def _decode_connect(body: _Reader) -> Connect:
    name, level = body.string("protocol name"), body.byte("protocol level")
    if (name, level) != ("MQTT", 4):
        # Another protocol or version (MQTT 3.1's "MQIsdp" level 3, MQTT 5's properties...): the
        # rest need not follow 3.1.1's layout, so it is left unread and the session refuses the
        # connection with CONNACK 1 (section 3.1.2.2, [MQTT-3.1.2-2]).
        return Connect(name, level, clean_session=False, keep_alive=0, client_id="")
    flags = body.byte("connect flags")
    will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0b11, bool(flags & 0x20)
    has_password, has_username = bool(flags & 0x40), bool(flags & 0x80)
    if flags & 0x01:
        raise MalformedPacket("the CONNECT flags set the reserved bit 0 [MQTT-3.1.2-3]")
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket(
            "the CONNECT flags set will QoS or retain without a will [MQTT-3.1.2-11]"
        )
    if will_qos == 3:
        raise MalformedPacket("the CONNECT flags ask for will QoS 3 [MQTT-3.1.2-14]")
    if has_password and not has_username:
        raise MalformedPacket(
            "the CONNECT flags set a password without a user name [MQTT-3.1.2-22]"
        )
    keep_alive = body.u16("keep alive")
    client_id = body.string("client identifier")  # the session decides which it accepts
    will = None
    if will_flag:
        will = Will(
            body.topic_name("will topic"), body.binary("will message"), will_qos, will_retain
        )
    username = body.string("user name") if has_username else None
    password = body.binary("password") if has_password else None
    body.finish()
    return Connect(name, level, bool(flags & 0x02), keep_alive, client_id, username, password, will)


def _decode_connack(body: _Reader) -> ConnAck:
    flags, code = body.byte("acknowledge flags"), body.byte("return code")
    if flags & 0xFE:
        raise MalformedPacket("the CONNACK acknowledge flags set reserved bits [MQTT-3.2.2-1]")
    if code > NOT_AUTHORIZED:
        raise MalformedPacket(f"the CONNACK return code {code} is reserved (section 3.2.2.3)")
    if code != ACCEPTED and flags:
        raise MalformedPacket("a refusing CONNACK says a session is present [MQTT-3.2.2-4]")
    return ConnAck(bool(flags), code)


def _decode_subscribe(body: _Reader) -> Subscribe:
    packet_id, topics = body.packet_id(), []
    while not body.at_end():
        topic, qos = body.topic_filter(), body.byte("requested QoS")
        if qos > 2:  # also catches any of the six reserved upper bits
            raise MalformedPacket(f"the SUBSCRIBE requested QoS byte is {qos:#04x} [MQTT-3.8.3-4]")
        topics.append((topic, qos))
    if not topics:
        raise MalformedPacket("the SUBSCRIBE packet has no topic filter [MQTT-3.8.3-3]")
    return Subscribe(packet_id, tuple(topics))


def encode(packet: Packet) -> bytes:
    """The bytes of ``packet``; ValueError if the standard does not allow it."""
    kind = _KINDS.get(type(packet))
    if kind is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    body = _encode_body(packet)  # validates the packet, including PUBLISH's flags
    first = kind << 4 | _SET_FLAGS.get(kind, 0)
    if isinstance(packet, Publish):
        first |= packet.dup << 3 | packet.qos << 1 | packet.retain
    if len(body) > _MAX_REMAINING_LENGTH:
        raise ValueError(f"the packet body is {len(body)} bytes, more than MQTT can frame")
    length, remaining = bytearray(), len(body)
    while True:
        remaining, digit = remaining >> 7, remaining & 0x7F
        length.append(digit | (0x80 if remaining else 0))
        if not remaining:
            return bytes([first]) + bytes(length) + body


_KINDS: dict[type, int] = {
    Connect: _CONNECT, ConnAck: _CONNACK, Publish: _PUBLISH, PubAck: _PUBACK, PubRec: _PUBREC,
    PubRel: _PUBREL, PubComp: _PUBCOMP, Subscribe: _SUBSCRIBE, SubAck: _SUBACK,
    Unsubscribe: _UNSUBSCRIBE, UnsubAck: _UNSUBACK, PingReq: _PINGREQ, PingResp: _PINGRESP,
    Disconnect: _DISCONNECT,
}  # fmt: skip


def _encode_body(packet: Packet) -> bytes:
    """The variable header and payload of ``packet``, once its fields are checked."""
    body = b""  # PINGREQ, PINGRESP and DISCONNECT are a fixed header alone
    match packet:
        case Connect():
            body = _encode_connect(packet)
        case ConnAck(session_present=present, return_code=code):
            _check(0 <= code <= NOT_AUTHORIZED, f"CONNACK return code {code} is reserved")
            _check(not (present and code), "a refusing CONNACK cannot say a session is present")
            body = bytes([int(present), code])
        case Publish():
            body = _encode_publish(packet)
        case PubAck() | PubRec() | PubRel() | PubComp() | UnsubAck():
            body = _packet_id(packet.packet_id)
        case Subscribe(topics=topics):
            _check(bool(topics), "a SUBSCRIBE needs at least one topic filter")
            _check(all(qos in (0, 1, 2) for _, qos in topics), "SUBSCRIBE QoS is 0, 1 or 2")
            filters = b"".join(_topic_filter(topic) + bytes([qos]) for topic, qos in topics)
            body = _packet_id(packet.packet_id) + filters
        case SubAck(return_codes=codes):
            _check(bool(codes), "a SUBACK needs at least one return code")
            _check(_SUBACK_CODES.issuperset(codes), f"SUBACK return codes {codes} are reserved")
            body = _packet_id(packet.packet_id) + bytes(codes)
        case Unsubscribe(topics=topics):
            _check(bool(topics), "an UNSUBSCRIBE needs at least one topic filter")
            filters = b"".join(_topic_filter(topic) for topic in topics)
            body = _packet_id(packet.packet_id) + filters
    return body


def _encode_publish(packet: Publish) -> bytes:
    _check(packet.qos in (0, 1, 2), f"PUBLISH QoS {packet.qos} does not exist")
    _check(not (packet.dup and packet.qos == 0), "PUBLISH cannot set DUP with QoS 0")
    _check_topic_name(packet.topic)
    if packet.qos:
        packet_id = _packet_id(packet.packet_id)
    else:
        _check(packet.packet_id is None, "a QoS 0 PUBLISH has no packet identifier")
        packet_id = b""
    return _string(packet.topic) + packet_id + packet.payload


def _encode_connect(packet: Connect) -> bytes:
    _check(0 <= packet.protocol_level <= 255, "the protocol level is one byte")
    _check(0 <= packet.keep_alive <= _MAX_FIELD, "keep alive is two bytes")
    flags, payload = 0x02 if packet.clean_session else 0, _string(packet.client_id)
    if packet.will is not None:
        will = packet.will
        _check(will.qos in (0, 1, 2), f"will QoS {will.qos} does not exist")
        _check_topic_name(will.topic)
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _binary(will.message)
    if packet.username is not None:
        flags |= 0x80
        payload += _string(packet.username)
    if packet.password is not None:
        _check(packet.username is not None, "MQTT 3.1.1 has no password without a user name")
        flags |= 0x40
        payload += _binary(packet.password)
    header = bytes([packet.protocol_level, flags]) + packet.keep_alive.to_bytes(2, "big")
    return _string(packet.protocol_name) + header + payload


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise ValueError(reason)


def _check_topic_name(topic: str) -> None:
    problem = _topic_name_problem(topic)
    _check(problem is None, f"the topic name {topic!r} {problem}")


def _packet_id(packet_id: int | None) -> bytes:
    _check(packet_id is not None and 0 < packet_id <= _MAX_FIELD, "packet ids are 1 to 65535")
    assert packet_id is not None  # for the type checker: _check refused None
    return packet_id.to_bytes(2, "big")


def _binary(data: bytes) -> bytes:
    _check(len(data) <= _MAX_FIELD, f"a field of {len(data)} bytes is longer than 65535")
    return len(data).to_bytes(2, "big") + data


def _string(text: str) -> bytes:
    _check("\0" not in text, "MQTT strings cannot hold U+0000")
    try:
        return _binary(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError("MQTT strings are UTF-8 and cannot hold lone surrogates") from exc


def _topic_filter(topic: str) -> bytes:
    problem = _topic_filter_problem(topic)
    _check(problem is None, f"the topic filter {topic!r} {problem}")
    return _string(topic)
