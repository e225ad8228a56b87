"""The MQTT protocol rules (docs/mqtt.md#what-devprov-accepts-and-refuses) against a real server
with a raw client: packets DPS does not use, malformed and oversized packets, a second CONNECT,
slow, silent and vanishing clients. None of them may hurt the server or another client."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from devprov.mqtt.codec import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    PubRel,
    UnsubAck,
    Unsubscribe,
    encode,
)
from devprov.mqtt.session import MAX_PACKET_BYTES, MAX_QUEUED_PACKETS, topic_matches
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.mqtt.conftest import TEST_POLICY, LocalServer
from tests.transport.plaintext import TLS_ALERT, answer_to_plaintext

REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid=1"


def device(server: LocalServer, pki: Path) -> RawClient:
    context = tls_context(server.ca_file, pki / "my-device-full-chain.pem", pki / "my-device.key")
    return RawClient(server.mqtt_port, context)


def connected(server: LocalServer, pki: Path, **kwargs) -> RawClient:
    client = device(server, pki)
    assert client.connect(server.scope, "my-device", **kwargs).return_code == 0
    return client


def still_serves(server: LocalServer, pki: Path) -> None:
    """Another device registers normally."""
    with connected(server, pki) as client:
        client.subscribe()
        answer = client.register("my-device")
        assert status(answer) == 200, body(answer)


@pytest.mark.parametrize(
    "first",
    [PingReq(), Publish(REGISTER, b"{}"), Disconnect()],
    ids=["PINGREQ", "PUBLISH", "DISCONNECT"],
)
def test_a_packet_before_connect_closes(local_server: LocalServer, demo_pki: Path, first) -> None:
    with device(local_server, demo_pki) as client:
        client.send(first)
        assert client.closed_by_server()
    still_serves(local_server, demo_pki)


def test_a_second_connect_closes(local_server: LocalServer, demo_pki: Path) -> None:
    with connected(local_server, demo_pki) as client:
        client.send(Connect("MQTT", 4, True, 60, "my-device", username="x"))
        assert client.closed_by_server()


@pytest.mark.parametrize(
    "packet",
    [
        Publish(REGISTER, b"{}", qos=2, packet_id=5),
        PubRel(5),
        Publish("devices/my-device/messages/events/", b"{}"),
        Publish("$dps/registrations/PUT/iotdps-register/?$rid=a$b", b"{}"),
        Publish("$dps/registrations/PUT/iotdps-register/?$rid=1&$rid=2", b"{}"),
        Publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1", b" "),
    ],
    ids=["qos2", "pubrel", "other-topic", "bad-rid", "rid-twice", "poll-without-operation"],
)
def test_packets_dps_does_not_serve_close(local_server: LocalServer, demo_pki: Path, packet):
    with connected(local_server, demo_pki) as client:
        client.subscribe()
        client.send(packet)
        assert client.closed_by_server()
    still_serves(local_server, demo_pki)


def test_malformed_bytes_close(local_server: LocalServer, demo_pki: Path) -> None:
    with connected(local_server, demo_pki) as client:
        client.send(b"\x30\xff\xff\xff\xff\x7f")  # a remaining length of five bytes
        assert client.closed_by_server()
    with connected(local_server, demo_pki) as client:
        client.send(b"\x20\x02\x00\x00")  # CONNACK: only a server sends it
        assert client.closed_by_server()


def test_an_oversized_packet_closes_before_its_body(local_server: LocalServer, demo_pki: Path):
    with connected(local_server, demo_pki) as client:
        size = MAX_PACKET_BYTES  # remaining length: the packet is a few bytes over the limit
        header = bytes([0x30]) + _remaining_length(size)
        client.send(header + b"\x00\x01a")  # the header and three bytes of the body, no more
        assert client.closed_by_server(timeout=5)
    still_serves(local_server, demo_pki)


def test_the_largest_message_dps_takes_is_served(local_server: LocalServer, demo_pki: Path):
    padding = "x" * (96 * 1024 - 100)
    with connected(local_server, demo_pki) as client:
        client.subscribe()
        payload = ('{"registrationId":"my-device","payload":{"p":"' + padding + '"}}').encode()
        assert len(payload) <= 96 * 1024
        answer = client.request(REGISTER, payload)
    assert status(answer) == 200


def test_a_flood_behind_a_request_closes(local_server: LocalServer, demo_pki: Path) -> None:
    with connected(local_server, demo_pki) as client:
        client.subscribe()
        flood = encode(Publish(REGISTER, b"{}", qos=1, packet_id=9)) + encode(PingReq()) * (
            MAX_QUEUED_PACKETS + 5
        )
        client.send(flood)
        assert client.closed_by_server()


def test_unsubscribe_ping_and_disconnect(local_server: LocalServer, demo_pki: Path) -> None:
    with connected(local_server, demo_pki) as client:
        client.subscribe()
        client.send(Unsubscribe(3, ("$dps/registrations/res/#",)))
        assert client.read() == UnsubAck(3)
        client.send(PingReq())
        assert client.read() == PingResp()
        # Unsubscribed: the register is acknowledged and handled, its answer goes nowhere.
        client.send(Publish(REGISTER, b"{}", qos=1, packet_id=4))
        assert client.read() == PubAck(4)
        client.send(PingReq())
        assert client.read() == PingResp()
        client.send(Disconnect())
        assert client.closed_by_server()


def test_no_connect_in_time_closes(local_server: LocalServer, demo_pki: Path) -> None:
    with device(local_server, demo_pki) as client:
        client.sock.do_handshake()
        started = time.monotonic()
        assert client.closed_by_server(timeout=TEST_POLICY.head_timeout + 5)
        assert time.monotonic() - started >= TEST_POLICY.head_timeout * 0.9


def test_keep_alive_is_honoured(local_server: LocalServer, demo_pki: Path) -> None:
    with connected(local_server, demo_pki, keep_alive=1) as client:
        for _ in range(4):  # pings every 0.5 s keep a 1 s keep-alive connection open for 2 s
            time.sleep(0.5)
            client.send(PingReq())
            assert client.read() == PingResp()
        started = time.monotonic()
        assert client.closed_by_server(timeout=5)  # silence: closed after 1.5 s
        assert time.monotonic() - started >= 1.2


def test_silent_slow_and_vanishing_clients_do_not_block_others(
    local_server: LocalServer, demo_pki: Path
) -> None:
    silent = [socket.create_connection(("127.0.0.1", local_server.mqtt_port)) for _ in range(5)]
    context = tls_context(local_server.ca_file)
    context.check_hostname = False
    halves = []
    for _ in range(3):  # a CONNECT that stops half-way
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", local_server.mqtt_port)))
        tls.sendall(encode(Connect("MQTT", 4, True, 60, "x", username="y"))[:7])
        halves.append(tls)
    # A device that publishes and vanishes at once, without DISCONNECT or close_notify.
    vanishing = connected(local_server, demo_pki)
    vanishing.subscribe()
    vanishing.send(Publish(REGISTER, b"{}", qos=1, packet_id=1))
    vanishing.sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    vanishing.sock.close()
    try:
        still_serves(local_server, demo_pki)
    finally:
        for sock in silent + halves:
            sock.close()


def test_clean_session_flag_is_accepted_either_way(local_server: LocalServer, demo_pki: Path):
    for clean in (False, True):
        with device(local_server, demo_pki) as client:
            assert client.connect(local_server.scope, "my-device", clean=clean) == ConnAck(False, 0)


def test_plaintext_on_the_tls_port_is_dropped(local_server: LocalServer, demo_pki: Path) -> None:
    connect = encode(Connect("MQTT", 4, True, 60, "my-device", username="u"))
    received = answer_to_plaintext(local_server.mqtt_port, connect)
    # The server ends the connection, with at most a TLS alert, never MQTT.
    assert received == b"" or received[0] == TLS_ALERT
    still_serves(local_server, demo_pki)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("$dps/registrations/res/#", "$dps/registrations/res/200/?$rid=1", True),
        ("$dps/registrations/res/+/x", "$dps/registrations/res/200/x", True),
        ("$dps/registrations/res/#", "$dps/registrations/req", False),
        ("#", "$dps/registrations/res/200", False),
        ("+/registrations/res/#", "$dps/registrations/res/200", False),
        ("a/b", "a/b/c", False),
        ("a/#", "a", True),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def _remaining_length(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
