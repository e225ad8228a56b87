"""mqtt.codec: round trips, the bytes real clients send, every malformed-packet rule, fuzzing.

Expected bytes are written out by hand from the MQTT 3.1.1 standard, never produced by the
codec under test.
"""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.mqtt.codec import (
    ACCEPTED,
    NOT_AUTHORIZED,
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    Decoder,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketTooLarge,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
    encode,
)

Role = Literal["server", "client"]
LIMIT = 1 << 20


def varint(value: int) -> bytes:
    """The remaining length as section 2.2.3 spells it, written independently of the codec."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def decode_all(data: bytes, role: Role = "server", limit: int = LIMIT) -> list[Packet]:
    decoder = Decoder(max_packet_bytes=limit, role=role)
    decoder.feed(data)
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    assert decoder.buffered == 0
    return packets


def decode_in_pieces(pieces: list[bytes], role: Role) -> list[Packet]:
    decoder = Decoder(max_packet_bytes=LIMIT, role=role)
    packets = []
    for piece in pieces:
        decoder.feed(piece)
        while (packet := decoder.next_packet()) is not None:
            packets.append(packet)
    assert decoder.buffered == 0
    return packets


def malformed(data: bytes, role: Role = "server", limit: int = LIMIT) -> MalformedPacket:
    decoder = Decoder(max_packet_bytes=limit, role=role)
    decoder.feed(data)
    with pytest.raises(MalformedPacket) as caught:
        decoder.next_packet()
    return caught.value


# --- strategies --------------------------------------------------------------------------------

CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
strings = st.text(CHARACTERS, max_size=40)
topic_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0+#"),
    min_size=1,
    max_size=40,
)
filter_levels = st.one_of(
    st.just("+"),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0+#/"), max_size=8),
)
topic_filters = st.builds(
    lambda levels, hash_last: "/".join([*levels, "#"] if hash_last else levels),
    st.lists(filter_levels, min_size=0, max_size=5),
    st.booleans(),
).filter(bool)
packet_ids = st.integers(1, 65535)
qos_values = st.integers(0, 2)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_values)
    return Publish(
        topic=draw(topic_names),
        payload=draw(st.binary(max_size=200)),
        qos=qos,
        packet_id=draw(packet_ids) if qos else None,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    username = draw(st.none() | strings)
    will = st.builds(Will, topic_names, st.binary(max_size=50), qos_values, st.booleans())
    return Connect(
        protocol_name="MQTT",
        protocol_level=4,
        clean_session=draw(st.booleans()),
        keep_alive=draw(st.integers(0, 65535)),
        client_id=draw(strings),
        username=username,
        password=None if username is None else draw(st.none() | st.binary(max_size=50)),
        will=draw(st.none() | will),
    )


# Another protocol or version comes back with its name and level alone.
other_connects = st.builds(
    lambda name, level: Connect(name, level, clean_session=False, keep_alive=0, client_id=""),
    strings,
    st.integers(0, 255),
).filter(lambda connect: (connect.protocol_name, connect.protocol_level) != ("MQTT", 4))

both_ways = st.one_of(
    publishes(),
    st.builds(PubAck, packet_ids),
    st.builds(PubRec, packet_ids),
    st.builds(PubRel, packet_ids),
    st.builds(PubComp, packet_ids),
)
client_sends = st.one_of(
    connects(),
    other_connects,
    both_ways,
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(topic_filters, qos_values), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=4).map(tuple)),
    st.just(PingReq()),
    st.just(Disconnect()),
)
server_sends = st.one_of(
    st.integers(ACCEPTED, NOT_AUTHORIZED).flatmap(
        lambda code: st.builds(ConnAck, st.just(False) if code else st.booleans(), st.just(code))
    ),
    both_ways,
    st.builds(
        SubAck,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, SUBACK_FAILURE]), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(UnsubAck, packet_ids),
    st.just(PingResp()),
)
exchanges = st.one_of(
    st.tuples(st.just("server"), st.lists(client_sends, min_size=1, max_size=5)),
    st.tuples(st.just("client"), st.lists(server_sends, min_size=1, max_size=5)),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# --- round trips -------------------------------------------------------------------------------


@given(exchanges)
def test_a_packet_fed_whole_decodes_to_itself(exchange: tuple[Role, list[Packet]]) -> None:
    role, packets = exchange
    for packet in packets:
        assert decode_all(encode(packet), role) == [packet]


@given(exchanges)
@settings(max_examples=50)
def test_packets_fed_byte_by_byte_decode_to_themselves(
    exchange: tuple[Role, list[Packet]],
) -> None:
    role, packets = exchange
    data = b"".join(encode(packet) for packet in packets)
    assert decode_in_pieces([data[i : i + 1] for i in range(len(data))], role) == packets


@given(exchanges, st.lists(st.integers(0, 10_000), max_size=8))
def test_packets_fed_in_random_splits_decode_to_themselves(
    exchange: tuple[Role, list[Packet]], cuts: list[int]
) -> None:
    role, packets = exchange
    data = b"".join(encode(packet) for packet in packets)
    assert decode_in_pieces(split(data, cuts), role) == packets


def test_several_packets_in_one_feed_come_out_in_order_and_a_partial_one_waits() -> None:
    packets = [PingReq(), PubAck(7), Publish("a/b", b"x", qos=1, packet_id=9), Disconnect()]
    data = b"".join(encode(packet) for packet in packets)
    decoder = Decoder(max_packet_bytes=100)
    decoder.feed(data + b"\x30\x05\x00")  # and the start of one more PUBLISH
    assert decoder.buffered == 3
    assert [decoder.next_packet() for _ in packets] == packets
    assert decoder.next_packet() is None
    decoder.feed(b"\x01a")  # not there yet: the topic is in, the payload is not
    assert decoder.next_packet() is None
    decoder.feed(b"hi")
    assert decoder.next_packet() == Publish("a", b"hi")
    assert decoder.buffered == 0


def test_a_client_id_of_65535_bytes_and_an_empty_one_are_decoded() -> None:
    for client_id in ("x" * 65535, ""):
        connect = Connect("MQTT", 4, clean_session=True, keep_alive=0, client_id=client_id)
        assert decode_all(encode(connect)) == [connect]


# --- what real clients send --------------------------------------------------------------------

USERNAME = "0ne00000001/registrations/my-device/api-version=2019-03-31&ClientVersion=x%2F1.0"
SAS = b"SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fmy-device&sig=abc%3D&se=1795780846"


@pytest.mark.parametrize(
    ("flags", "clean_session", "keep_alive", "password"),
    [
        pytest.param(0x80, False, 60, None, id="python-sdk-x509"),
        pytest.param(0xC0, False, 60, SAS, id="python-sdk-symmetric-key"),
        pytest.param(0x82, True, 180, None, id="node-sdk-x509"),
        pytest.param(0xC2, True, 180, SAS, id="node-sdk-symmetric-key"),
    ],
)
def test_the_connect_of_the_device_sdks(
    flags: int, clean_session: bool, keep_alive: int, password: bytes | None
) -> None:
    body = field(b"MQTT") + bytes([4, flags]) + keep_alive.to_bytes(2, "big")
    body += field(b"my-device") + field(USERNAME.encode())
    if password is not None:
        body += field(password)
    wire = b"\x10" + varint(len(body)) + body
    connect = Connect("MQTT", 4, clean_session, keep_alive, "my-device", USERNAME, password)
    assert encode(connect) == wire
    assert decode_all(wire) == [connect]


def test_the_dps_subscribe() -> None:
    wire = b"\x82\x1d\x00\x01\x00\x18$dps/registrations/res/#\x01"
    subscribe = Subscribe(1, (("$dps/registrations/res/#", 1),))
    assert encode(subscribe) == wire
    assert decode_all(wire) == [subscribe]


def test_the_dps_register_publish_at_qos_1() -> None:
    topic = b"$dps/registrations/PUT/iotdps-register/?$rid=1"
    payload = b'{"payload": null, "registrationId": "my-device"}'
    wire = frame(0x32, field(topic) + b"\x00\x02" + payload)
    assert wire[0] == 0x32
    publish = Publish(topic.decode(), payload, qos=1, packet_id=2)
    assert encode(publish) == wire
    assert decode_all(wire) == [publish]


def test_an_mqtt_5_connect_comes_back_with_its_level_and_nothing_parsed() -> None:
    # MQTT 5: flags, keep alive, then properties (session expiry interval 0x11) before the id.
    body = field(b"MQTT") + b"\x05\x02\x00\x3c" + b"\x05\x11\x00\x00\x00\x3c" + field(b"dev")
    assert decode_all(frame(0x10, body)) == [Connect("MQTT", 5, False, 0, "")]


def test_an_mqtt_3_1_connect_comes_back_with_its_name_and_level() -> None:
    body = field(b"MQIsdp") + b"\x03\x02\x00\x3c" + field(b"dev")
    assert decode_all(frame(0x10, body)) == [Connect("MQIsdp", 3, False, 0, "")]


# --- malformed packets -------------------------------------------------------------------------


def connect_body(flags: int, payload: bytes) -> bytes:
    return field(b"MQTT") + bytes([4, flags]) + b"\x00\x3c" + payload


def fixed_header_cases() -> list[object]:
    """Every type with flags the standard does not allow, for the role that receives it."""
    samples: list[tuple[Role, Packet, int]] = [
        ("server", Connect("MQTT", 4, True, 0, "d"), 0),
        ("client", ConnAck(False, 0), 0),
        ("server", PubAck(1), 0),
        ("server", PubRec(1), 0),
        ("server", PubRel(1), 0b0010),
        ("server", PubComp(1), 0),
        ("server", Subscribe(1, (("a", 0),)), 0b0010),
        ("client", SubAck(1, (0,)), 0),
        ("server", Unsubscribe(1, ("a",)), 0b0010),
        ("client", UnsubAck(1), 0),
        ("server", PingReq(), 0),
        ("client", PingResp(), 0),
        ("server", Disconnect(), 0),
    ]
    cases = []
    for role, packet, expected in samples:
        wire = encode(packet)
        for wrong in sorted({0b0000, 0b0001, 0b0010, 0b1000, 0b1111} - {expected}):
            name = type(packet).__name__
            cases.append(
                pytest.param(
                    role, bytes([wire[0] & 0xF0 | wrong]) + wire[1:], id=f"{name}-{wrong:04b}"
                )
            )
    return cases


@pytest.mark.parametrize(("role", "wire"), fixed_header_cases())
def test_fixed_header_flags_other_than_the_standard_fixes_are_refused(
    role: Role, wire: bytes
) -> None:
    assert "[MQTT-2.2.2-2]" in malformed(wire, role).reason


PUBLISH_A = field(b"a") + b"\x00\x01"  # topic "a", packet id 1

MALFORMED: list[tuple[str, Role, bytes, str]] = [
    # The fixed header.
    ("remaining-length-of-5-bytes", "server", b"\x30\xff\xff\xff\xff\x7f", "four bytes"),
    ("remaining-length-not-shortest", "server", b"\xc0\x80\x00", "shortest"),
    ("reserved-type-0", "server", b"\x00\x00", "reserved"),
    ("reserved-type-15", "server", b"\xf0\x00", "reserved"),
    ("reserved-type-15-to-client", "client", b"\xf0\x00", "reserved"),
    ("connack-to-server", "server", b"\x20\x02\x00\x00", "does not send CONNACK"),
    ("suback-to-server", "server", b"\x90\x03\x00\x01\x00", "does not send SUBACK"),
    ("unsuback-to-server", "server", b"\xb0\x02\x00\x01", "does not send UNSUBACK"),
    ("pingresp-to-server", "server", b"\xd0\x00", "does not send PINGRESP"),
    ("connect-to-client", "client", frame(0x10, connect_body(0x02, field(b"d"))), "CONNECT"),
    (
        "subscribe-to-client",
        "client",
        frame(0x82, b"\x00\x01" + field(b"a") + b"\x00"),
        "SUBSCRIBE",
    ),
    ("unsubscribe-to-client", "client", frame(0xA2, b"\x00\x01" + field(b"a")), "UNSUBSCRIBE"),
    ("pingreq-to-client", "client", b"\xc0\x00", "does not send PINGREQ"),
    ("disconnect-to-client", "client", b"\xe0\x00", "does not send DISCONNECT"),
    ("publish-qos-3", "server", frame(0x36, PUBLISH_A), "[MQTT-3.3.1-4]"),
    ("publish-dup-qos-0", "server", frame(0x38, field(b"a")), "[MQTT-3.3.1-2]"),
    # The remaining length does not match the fields.
    ("puback-left-over", "server", b"\x40\x03\x00\x01\x00", "1 bytes after"),
    ("pingreq-left-over", "server", b"\xc0\x01\x00", "after its last field"),
    ("disconnect-left-over", "server", b"\xe0\x01\x00", "after its last field"),
    ("connack-left-over", "client", b"\x20\x03\x00\x00\x00", "after its last field"),
    ("unsuback-left-over", "client", b"\xb0\x03\x00\x01\x00", "after its last field"),
    (
        "connect-left-over",
        "server",
        frame(0x10, connect_body(0x02, field(b"d") + b"\x00")),
        "after",
    ),
    ("puback-truncated", "server", b"\x40\x01\x00", "ends inside its packet identifier"),
    ("connack-truncated", "client", b"\x20\x01\x00", "ends inside its return code"),
    ("publish-topic-truncated", "server", frame(0x30, b"\x00\x05ab"), "ends inside its topic"),
    ("publish-id-truncated", "server", frame(0x32, field(b"a") + b"\x00"), "packet identifier"),
    ("connect-name-truncated", "server", frame(0x10, b"\x00\x04MQ"), "protocol name"),
    ("connect-level-missing", "server", frame(0x10, field(b"MQTT")), "protocol level"),
    ("connect-flags-missing", "server", frame(0x10, field(b"MQTT") + b"\x04"), "connect flags"),
    ("connect-id-truncated", "server", frame(0x10, connect_body(2, b"\x00\x09my")), "identifier"),
    ("connect-no-username", "server", frame(0x10, connect_body(0x80, field(b"d"))), "user name"),
    ("connect-no-password", "server", frame(0x10, connect_body(0xC0, field(b"d") * 2)), "password"),
    ("connect-no-will", "server", frame(0x10, connect_body(0x04, field(b"d"))), "will topic"),
    ("subscribe-qos-missing", "server", frame(0x82, b"\x00\x01" + field(b"a")), "requested QoS"),
    # Strings [MQTT-1.5.3].
    ("topic-invalid-utf8", "server", frame(0x30, field(b"a\xff")), "[MQTT-1.5.3-1]"),
    ("topic-surrogate", "server", frame(0x30, field(b"\xed\xa0\x80")), "[MQTT-1.5.3-1]"),
    ("topic-overlong-nul", "server", frame(0x30, field(b"\xc0\x80")), "[MQTT-1.5.3-1]"),
    ("topic-nul", "server", frame(0x30, field(b"a\x00b")), "[MQTT-1.5.3-2]"),
    ("client-id-invalid-utf8", "server", frame(0x10, connect_body(2, field(b"\xfe"))), "UTF-8"),
    ("client-id-nul", "server", frame(0x10, connect_body(2, field(b"\x00"))), "U+0000"),
    (
        "username-nul",
        "server",
        frame(0x10, connect_body(0x82, field(b"d") + field(b"u\x00"))),
        "user name contains U+0000",
    ),
    ("protocol-name-invalid-utf8", "server", frame(0x10, field(b"MQ\xffT") + b"\x04"), "UTF-8"),
    ("filter-invalid-utf8", "server", frame(0xA2, b"\x00\x01" + field(b"\xff")), "[MQTT-1.5.3-1]"),
    # CONNECT flags [MQTT-3.1.2].
    (
        "connect-reserved-bit",
        "server",
        frame(0x10, connect_body(0x03, field(b"d"))),
        "[MQTT-3.1.2-3]",
    ),
    (
        "connect-password-without-username",
        "server",
        frame(0x10, connect_body(0x42, field(b"d") + field(b"p"))),
        "[MQTT-3.1.2-22]",
    ),
    (
        "connect-will-qos-no-will",
        "server",
        frame(0x10, connect_body(0x0A, field(b"d"))),
        "-3.1.2-11]",
    ),
    ("connect-will-retain-no-will", "server", frame(0x10, connect_body(0x22, field(b"d"))), "-11]"),
    (
        "connect-will-qos-3",
        "server",
        frame(0x10, connect_body(0x1E, field(b"d") + field(b"t") + field(b"m"))),
        "[MQTT-3.1.2-14]",
    ),
    (
        "connect-will-topic-wildcard",
        "server",
        frame(0x10, connect_body(0x06, field(b"d") + field(b"t/#") + field(b"m"))),
        "wildcard",
    ),
    # Topic names [MQTT-3.3.2-2], [MQTT-4.7.3-1].
    ("publish-topic-empty", "server", frame(0x30, field(b"")), "[MQTT-4.7.3-1]"),
    ("publish-topic-plus", "server", frame(0x30, field(b"a/+")), "[MQTT-3.3.2-2]"),
    ("publish-topic-hash", "server", frame(0x30, field(b"a/#")), "[MQTT-3.3.2-2]"),
    ("publish-topic-empty-to-client", "client", frame(0x30, field(b"")), "[MQTT-4.7.3-1]"),
    # Packet identifiers [MQTT-2.3.1-1].
    ("publish-qos-1-id-0", "server", frame(0x32, field(b"a") + b"\x00\x00"), "[MQTT-2.3.1-1]"),
    ("publish-qos-2-id-0", "client", frame(0x34, field(b"a") + b"\x00\x00"), "[MQTT-2.3.1-1]"),
    ("puback-id-0", "server", b"\x40\x02\x00\x00", "[MQTT-2.3.1-1]"),
    ("pubrec-id-0", "server", b"\x50\x02\x00\x00", "[MQTT-2.3.1-1]"),
    ("pubrel-id-0", "server", b"\x62\x02\x00\x00", "[MQTT-2.3.1-1]"),
    ("pubcomp-id-0", "client", b"\x70\x02\x00\x00", "[MQTT-2.3.1-1]"),
    ("subscribe-id-0", "server", frame(0x82, b"\x00\x00" + field(b"a") + b"\x00"), "-2.3.1-1]"),
    ("unsubscribe-id-0", "server", frame(0xA2, b"\x00\x00" + field(b"a")), "[MQTT-2.3.1-1]"),
    ("suback-id-0", "client", b"\x90\x03\x00\x00\x00", "[MQTT-2.3.1-1]"),
    ("unsuback-id-0", "client", b"\xb0\x02\x00\x00", "[MQTT-2.3.1-1]"),
    # SUBSCRIBE and UNSUBSCRIBE.
    ("subscribe-no-filter", "server", b"\x82\x02\x00\x01", "[MQTT-3.8.3-3]"),
    ("unsubscribe-no-filter", "server", b"\xa2\x02\x00\x01", "[MQTT-3.10.3-2]"),
    ("subscribe-qos-3", "server", frame(0x82, b"\x00\x01" + field(b"a") + b"\x03"), "-3.8.3-4]"),
    ("subscribe-qos-upper-bit", "server", frame(0x82, b"\x00\x01" + field(b"a") + b"\x04"), "0x04"),
    ("subscribe-qos-0x81", "server", frame(0x82, b"\x00\x01" + field(b"a") + b"\x81"), "0x81"),
]
FILTERS = [b"", b"a/#/b", b"a#", b"#/a", b"a/b#", b"a+", b"+a/b", b"a/++", b"a/+#"]
MALFORMED += [
    (f"subscribe-filter-{bad.decode() or 'empty'}", "server", frame(0x82, b"\x00\x01" + field(bad) + b"\x00"), "filter")
    for bad in FILTERS
]  # fmt: skip
MALFORMED += [
    (f"unsubscribe-filter-{bad.decode() or 'empty'}", "server", frame(0xA2, b"\x00\x01" + field(bad)), "filter")
    for bad in FILTERS
]  # fmt: skip
MALFORMED += [
    # What only a client receives.
    ("connack-reserved-flags", "client", b"\x20\x02\x02\x00", "[MQTT-3.2.2-1]"),
    ("connack-code-6", "client", b"\x20\x02\x00\x06", "reserved"),
    ("connack-refused-with-session", "client", b"\x20\x02\x01\x05", "[MQTT-3.2.2-4]"),
    ("suback-no-code", "client", b"\x90\x02\x00\x01", "[MQTT-3.9.3-2]"),
    ("suback-code-3", "client", b"\x90\x03\x00\x01\x03", "[MQTT-3.9.3-2]"),
    ("suback-code-0x81", "client", b"\x90\x03\x00\x01\x81", "[MQTT-3.9.3-2]"),
]


@pytest.mark.parametrize(
    ("role", "wire", "reason"), [pytest.param(*case[1:], id=case[0]) for case in MALFORMED]
)
def test_a_malformed_packet_is_refused_with_its_reason(
    role: Role, wire: bytes, reason: str
) -> None:
    assert reason in malformed(wire, role).reason


@pytest.mark.parametrize(
    "topic", ["$dps/registrations/res/#", "#", "+", "+/+/#", "a//b", "/", "a/+/c"]
)
def test_topic_filters_the_standard_allows_are_accepted(topic: str) -> None:
    wire = frame(0x82, b"\x00\x01" + field(topic.encode()) + b"\x02")
    assert decode_all(wire) == [Subscribe(1, ((topic, 2),))]


def test_a_connect_whose_protocol_name_is_not_utf8_is_refused_even_at_another_level() -> None:
    assert "UTF-8" in malformed(frame(0x10, field(b"\xffMQTT") + b"\x05")).reason


# --- limits and the dead decoder ---------------------------------------------------------------


def test_packet_too_large_is_raised_from_the_fixed_header_alone() -> None:
    decoder = Decoder(max_packet_bytes=100)
    decoder.feed(b"\x30\xff\x7f")  # PUBLISH announcing 16383 bytes; none of them sent
    with pytest.raises(PacketTooLarge) as caught:
        decoder.next_packet()
    assert (caught.value.size, caught.value.limit) == (3 + 16383, 100)
    assert decoder.buffered == 0


def test_a_packet_of_exactly_the_limit_is_decoded_and_one_byte_more_is_not() -> None:
    fits = Publish("t", b"x" * 95)  # 1 + 1 + 3 + 95 = 100 bytes
    assert len(encode(fits)) == 100
    assert decode_all(encode(fits), limit=100) == [fits]
    error = malformed(encode(Publish("t", b"x" * 96)), limit=100)
    assert isinstance(error, PacketTooLarge)
    assert error.size == 101


def test_a_megabyte_fed_at_once_stops_at_the_first_oversized_packet() -> None:
    decoder = Decoder(max_packet_bytes=100 * 1024)
    decoder.feed(encode(PingReq()) + encode(Publish("t", b"x" * (1 << 20))) + encode(PingReq()))
    assert decoder.buffered == 0  # nothing held: the rest of the stream cannot be framed
    assert decoder.next_packet() == PingReq()
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()


def test_after_an_error_the_decoder_is_dead() -> None:
    decoder = Decoder(max_packet_bytes=100)
    decoder.feed(b"\x20\x02\x00\x00" + encode(PingReq()))  # a CONNACK sent to a server
    with pytest.raises(MalformedPacket) as first:
        decoder.next_packet()
    for call in (decoder.next_packet, lambda: decoder.feed(encode(PingReq()))):
        with pytest.raises(MalformedPacket) as again:
            call()
        assert again.value is first.value
    assert decoder.buffered == 0


def test_bytes_fed_after_an_error_not_yet_raised_are_dropped() -> None:
    decoder = Decoder(max_packet_bytes=100)
    decoder.feed(encode(PingReq()) + b"\xf0\x00")
    decoder.feed(b"\x00" * 500)
    assert decoder.buffered == 0
    assert decoder.next_packet() == PingReq()
    with pytest.raises(MalformedPacket, match="reserved"):
        decoder.next_packet()


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        pytest.param({"max_packet_bytes": 1}, "smallest", id="limit-below-2"),
        pytest.param({"max_packet_bytes": 10, "role": "broker"}, "role", id="unknown-role"),
    ],
)
def test_a_decoder_refuses_settings_it_cannot_honour(
    arguments: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        Decoder(**arguments)  # type: ignore[arg-type]


# --- what encode refuses -----------------------------------------------------------------------

MQTT4 = {"protocol_name": "MQTT", "protocol_level": 4, "clean_session": True, "keep_alive": 0}
UNENCODABLE: list[tuple[str, Packet, str]] = [
    ("publish-qos-3", Publish("t", b"", qos=3, packet_id=1), "QoS 3"),
    ("publish-qos-1-no-id", Publish("t", b"", qos=1), "packet ids"),
    ("publish-qos-1-id-0", Publish("t", b"", qos=1, packet_id=0), "packet ids"),
    ("publish-id-65536", Publish("t", b"", qos=2, packet_id=65536), "packet ids"),
    ("publish-qos-0-with-id", Publish("t", b"", packet_id=1), "no packet identifier"),
    ("publish-dup-qos-0", Publish("t", b"", dup=True), "DUP"),
    ("publish-topic-plus", Publish("a/+", b""), "wildcard"),
    ("publish-topic-empty", Publish("", b""), "empty"),
    ("publish-topic-nul", Publish("a\0", b""), "U+0000"),
    ("publish-topic-surrogate", Publish("a\ud800", b""), "surrogate"),
    ("publish-topic-too-long", Publish("t" * 65536, b""), "65535"),
    ("puback-id-0", PubAck(0), "packet ids"),
    ("pubrel-id-0", PubRel(0), "packet ids"),
    ("unsuback-id-0", UnsubAck(0), "packet ids"),
    ("subscribe-no-filter", Subscribe(1, ()), "at least one"),
    ("subscribe-bad-filter", Subscribe(1, (("a/#/b", 0),)), "'#'"),
    ("subscribe-qos-3", Subscribe(1, (("a", 3),)), "QoS"),
    ("subscribe-id-0", Subscribe(0, (("a", 0),)), "packet ids"),
    ("unsubscribe-no-filter", Unsubscribe(1, ()), "at least one"),
    ("unsubscribe-bad-filter", Unsubscribe(1, ("a+",)), "'+'"),
    ("suback-no-code", SubAck(1, ()), "at least one"),
    ("suback-code-3", SubAck(1, (3,)), "reserved"),
    ("connack-code-6", ConnAck(False, 6), "reserved"),
    ("connack-refused-with-session", ConnAck(True, 5), "session"),
    ("connect-password-alone", Connect(**MQTT4, client_id="d", password=b"p"), "user name"),
    ("connect-will-qos-3", Connect(**MQTT4, client_id="d", will=Will("t", b"", 3, False)), "QoS"),
    ("connect-will-wildcard", Connect(**MQTT4, client_id="d", will=Will("#", b"", 0, False)), "wildcard"),
    ("connect-keep-alive", Connect("MQTT", 4, True, 65536, "d"), "keep alive"),
    ("connect-level", Connect("MQTT", 256, True, 0, "d"), "protocol level"),
    ("connect-client-id-too-long", Connect(**MQTT4, client_id="é" * 32768), "65535"),
    ("connect-password-too-long", Connect(**MQTT4, client_id="", username="u", password=bytes(65536)), "65535"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("packet", "reason"), [pytest.param(*case[1:], id=case[0]) for case in UNENCODABLE]
)
def test_encode_refuses_what_the_standard_does_not_allow(packet: Packet, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("+", r"\+")):
        encode(packet)


def test_encode_refuses_what_is_not_a_packet() -> None:
    with pytest.raises(TypeError):
        encode(Will("t", b"", 0, False))  # type: ignore[arg-type]


# --- fuzzing -----------------------------------------------------------------------------------


def feed_and_drain(decoder: Decoder, pieces: list[bytes], limit: int) -> None:
    """Feed every piece; only MalformedPacket may escape, and the buffer stays bounded."""
    try:
        for piece in pieces:
            decoder.feed(piece)
            assert decoder.buffered <= limit + 5
            while decoder.next_packet() is not None:
                pass
    except MalformedPacket:
        assert decoder.buffered == 0


@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.sampled_from(["server", "client"]),
    st.integers(2, 400),
)
def test_random_bytes_raise_nothing_but_malformed_packet(
    pieces: list[bytes], role: Role, limit: int
) -> None:
    feed_and_drain(Decoder(max_packet_bytes=limit, role=role), pieces, limit)


@given(
    exchanges,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.lists(st.integers(0, 10_000), max_size=4),
    st.integers(2, 400),
)
def test_damaged_packets_raise_nothing_but_malformed_packet(
    exchange: tuple[Role, list[Packet]],
    damage: list[tuple[int, int]],
    cuts: list[int],
    limit: int,
) -> None:
    role, packets = exchange
    data = bytearray(b"".join(encode(packet) for packet in packets))
    for at, value in damage:
        data[at % len(data)] = value
    feed_and_drain(Decoder(max_packet_bytes=limit, role=role), split(bytes(data), cuts), limit)
