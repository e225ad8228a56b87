"""Clients that break the protocol, over a real TLS server: wrong headers, malformed and
oversized frames, frames out of place, floods, slow, silent and vanishing clients. Each is
closed with the error the engine promises (docs/amqp-protocol.md#errors-and-limits), and
none disturbs a well-behaved client connected at the same time."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import replace

import pytest

from devprov.amqp.application import AmqpError, Message
from devprov.amqp.connection import MAX_FRAME_SIZE, MAX_HELD_REPLIES, MAX_QUEUED_FRAMES
from devprov.amqp.frames import (
    AMQP_FRAME,
    AMQP_HEADER,
    SASL_FRAME,
    SASL_HEADER,
    Accepted,
    Attach,
    Begin,
    Close,
    Flow,
    Frame,
    Open,
    SaslInit,
    Target,
    Transfer,
    encode_frame,
)
from devprov.amqp.message import encode_message
from devprov.amqp.types import encode
from tests.amqp.client import AmqpClient, sasl_init
from tests.amqp.conftest import AmqpServer
from tests.http.conftest import HOST
from tests.transport.plaintext import TLS_ALERT, answer_to_plaintext

PLAIN = ("PLAIN", "user", "password")
SLEEP = encode_message(Message(b"", {"op": "sleep", "seconds": "0.3"}, correlation_id="slow"))


@pytest.fixture
def bystander(amqp_server: AmqpServer) -> Iterator[AmqpClient]:
    """A well-behaved client, connected before the hostile one and checked after it."""
    with amqp_server.ready(PLAIN, "bystander") as client:
        yield client
        assert client.send(Message(b"still", correlation_id="b")) == Accepted()
        assert client.receive().body == b"still"


def _tls(server: AmqpServer) -> AmqpClient:
    raw = socket.create_connection((HOST, server.port), timeout=10)
    return AmqpClient(server.context().wrap_socket(raw, server_hostname=HOST))


def _opened(server: AmqpServer) -> AmqpClient:
    client = server.connect(PLAIN)
    client.open()
    return client


def _condition(client: AmqpClient) -> str | None:
    error = client.expect_close()
    return None if error is None else error.condition


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        pytest.param(b"AMQP\x02\x01\x00\x00", AMQP_HEADER, id="tls-header"),
        pytest.param(b"AMQP\x00\x01\x00\x01", AMQP_HEADER, id="amqp-1.0.1"),
        pytest.param(b"AMQP\x03\x02\x00\x00", SASL_HEADER, id="sasl-2.0"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", AMQP_HEADER, id="http"),
    ],
)
def test_a_wrong_header_is_answered_with_ours_then_closed(
    amqp_server: AmqpServer, bystander: AmqpClient, header: bytes, answer: bytes
) -> None:
    with _tls(amqp_server) as client:
        client.send_raw(header)
        assert client.read_header() == answer
        assert client.closed_by_server()


def test_a_sasl_header_after_sasl_is_refused(amqp_server: AmqpServer) -> None:
    with _tls(amqp_server) as client:
        client.send_raw(SASL_HEADER)
        assert client.read_header() == SASL_HEADER
        client.read_sasl()
        client.send_sasl(sasl_init("ANONYMOUS"))
        client.read_sasl()
        client.send_raw(SASL_HEADER)
        assert client.read_header() == AMQP_HEADER
        assert client.closed_by_server()


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(encode_frame(Frame(AMQP_FRAME, 0, Open(container_id="c"))), id="open"),
        pytest.param(b"\x00\x00\x00\x10garbage!", id="garbage"),
        pytest.param(
            encode_frame(Frame(SASL_FRAME, 0, SaslInit(mechanism="PLAIN", initial_response=b"x"))),
            id="malformed-plain",
        ),
    ],
)
def test_anything_but_a_good_sasl_init_ends_sasl(amqp_server: AmqpServer, first: bytes) -> None:
    with _tls(amqp_server) as client:
        client.send_raw(SASL_HEADER)
        assert client.read_header() == SASL_HEADER
        client.read_sasl()
        client.send_raw(first)
        assert client.closed_by_server()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x10\x99", id="unknown-constructor"),
        pytest.param(b"\x00\x00\x00\x0a\x02\x00\x00\x00\x00\x53", id="truncated-body"),
        pytest.param(b"\x00\x00\x00\x08\x01\x00\x00\x00", id="bad-doff"),
        pytest.param(b"\x00\x00\x00\x08\x02\x05\x00\x00", id="unknown-frame-type"),
        pytest.param(struct.pack(">IBBH", 9, 2, 0, 0) + encode([]), id="not-described"),
    ],
)
def test_malformed_frames_close_with_decode_error(
    amqp_server: AmqpServer, bystander: AmqpClient, data: bytes
) -> None:
    with _opened(amqp_server) as client:
        client.send_raw(data)
        assert _condition(client) == "amqp:decode-error"


def test_a_malformed_frame_before_open_gets_an_open_then_the_close(amqp_server: AmqpServer):
    with amqp_server.connect(None) as client:
        client.send_raw(b"\x00\x00\x00\x09\x02\x00\x00\x00\x99")
        assert isinstance(client.expect(Open), Open)
        assert _condition(client) == "amqp:decode-error"


def test_an_oversized_frame_is_refused_before_its_body(
    amqp_server: AmqpServer, bystander: AmqpClient
) -> None:
    with _opened(amqp_server) as client:
        client.send_raw(struct.pack(">IBBH", MAX_FRAME_SIZE + 1, 2, 0, 0) + b"\x00\x53")
        assert _condition(client) == "amqp:connection:framing-error"


def test_the_smaller_max_frame_size_of_the_client_binds_it_too(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open(max_frame_size=1024)
        client.send_raw(struct.pack(">IBBH", 2000, 2, 0, 0))
        assert _condition(client) == "amqp:connection:framing-error"


def _begun(server: AmqpServer) -> AmqpClient:
    client = _opened(server)
    client.begin()
    return client


SENDER = Attach(
    name="s", handle=0, role=False, target=Target(address="a"), initial_delivery_count=0
)
FLOW = Flow(incoming_window=1, next_outgoing_id=0, outgoing_window=1)
BEGIN = Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1)


@pytest.mark.parametrize(
    ("frames", "condition"),
    [
        pytest.param([(3, FLOW)], "amqp:not-allowed", id="unknown-channel"),
        pytest.param(
            [(0, replace(FLOW, handle=9, link_credit=1))],
            "amqp:invalid-field",
            id="unknown-handle-flow",
        ),
        pytest.param(
            [(0, Transfer(handle=4, delivery_id=0))],
            "amqp:invalid-field",
            id="unknown-handle-transfer",
        ),
        pytest.param([(0, SENDER), (0, SENDER)], "amqp:not-allowed", id="handle-in-use"),
        pytest.param([(0, replace(SENDER, handle=99))], "amqp:not-allowed", id="handle-over-max"),
        pytest.param(
            [(0, replace(SENDER, initial_delivery_count=None))],
            "amqp:invalid-field",
            id="sender-without-delivery-count",
        ),
        pytest.param([(0, Open(container_id="again"))], "amqp:not-allowed", id="second-open"),
        pytest.param([(9, BEGIN)], "amqp:not-allowed", id="channel-over-max"),
        pytest.param([(0, BEGIN)], "amqp:not-allowed", id="channel-in-use"),
        pytest.param(
            [(1, replace(BEGIN, remote_channel=0))],
            "amqp:not-allowed",
            id="begin-answering-nothing",
        ),
        pytest.param(
            [(0, SENDER), (0, Transfer(handle=0))],
            "amqp:invalid-field",
            id="first-transfer-without-id",
        ),
    ],
)
def test_frames_out_of_place_close_the_connection(
    amqp_server: AmqpServer, bystander: AmqpClient, frames, condition: str
) -> None:
    with _begun(amqp_server) as client:
        for channel, body in frames:
            client.send_frame(body, channel)
        assert _condition(client) == condition


def test_a_frame_before_open_is_not_allowed(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.send_frame(Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1))
        assert _condition(client) == "amqp:not-allowed"


def test_a_sasl_frame_after_open_is_not_allowed(amqp_server: AmqpServer) -> None:
    with _opened(amqp_server) as client:
        client.send_sasl(sasl_init("ANONYMOUS"))
        assert _condition(client) == "amqp:not-allowed"


def test_a_max_frame_size_under_512_is_refused(amqp_server: AmqpServer) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.send_frame(Open(container_id="c", max_frame_size=100))
        assert _condition(client) == "amqp:invalid-field"


def test_a_flood_behind_a_request_closes(amqp_server: AmqpServer, bystander: AmqpClient) -> None:
    with amqp_server.ready(PLAIN) as client:
        flow = encode_frame(
            Frame(AMQP_FRAME, 0, Flow(incoming_window=9, next_outgoing_id=1, outgoing_window=9))
        )
        client.transfer(SLEEP)
        client.send_raw(flow * (MAX_QUEUED_FRAMES + 5))
        error = client.expect_close()
    assert error == AmqpError(
        "amqp:resource-limit-exceeded", "too many frames behind a request at work"
    )


def test_frames_behind_a_request_wait_their_turn(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.transfer(SLEEP)
        client.send(Message(b"second", correlation_id="2"), settled=True)
        first, second = client.receive(), client.receive()
    assert (first.correlation_id, second.correlation_id) == ("slow", "2")


def test_a_slow_client_is_served(amqp_server: AmqpServer, bystander: AmqpClient) -> None:
    with _tls(amqp_server) as client:
        message = encode_message(Message(b"drip", correlation_id="d"))
        data = (
            SASL_HEADER
            + encode_frame(Frame(SASL_FRAME, 0, sasl_init(PLAIN)))
            + AMQP_HEADER
            + encode_frame(Frame(AMQP_FRAME, 0, Open(container_id="slow")))
            + encode_frame(
                Frame(
                    AMQP_FRAME, 0, Begin(next_outgoing_id=0, incoming_window=9, outgoing_window=9)
                )
            )
            + encode_frame(Frame(AMQP_FRAME, 0, SENDER))
            + encode_frame(
                Frame(
                    AMQP_FRAME,
                    0,
                    Transfer(handle=0, delivery_id=0, delivery_tag=b"d", settled=True),
                    message,
                )
            )
        )
        for byte in data:
            client.send_raw(bytes([byte]))  # one TLS record per byte
        assert client.read_header() == SASL_HEADER
        client.read_sasl()
        assert client.read_sasl().code == 0  # type: ignore[union-attr]
        assert client.read_header() == AMQP_HEADER
        client.expect(Open)
        client.expect(Begin)
        client.expect(Attach)
        client.expect(Flow)
    address, request = amqp_server.request_seen("d")
    assert (address, request.body, request.correlation_id) == ("a", b"drip", "d")


def test_vanishing_clients_do_not_disturb_others(
    amqp_server: AmqpServer, bystander: AmqpClient
) -> None:
    def vanish(client: AmqpClient) -> None:
        linger = struct.pack("ii", 1, 0)  # close with a TCP reset, no close_notify
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        client.sock.close()

    mid_frame = amqp_server.ready(PLAIN)
    mid_frame.send_raw(encode_frame(Frame(AMQP_FRAME, 0, Close()))[:6])
    vanish(mid_frame)
    mid_request = amqp_server.ready(PLAIN)
    sleeping = Message(b"", {"op": "sleep", "seconds": "0.3"}, correlation_id="vanished")
    mid_request.transfer(encode_message(sleeping))
    vanish(mid_request)
    half_tls = socket.create_connection((HOST, amqp_server.port))
    half_tls.sendall(b"\x16\x03\x01\x00\xff")  # the start of a TLS record, no more
    silent = socket.create_connection((HOST, amqp_server.port))
    try:
        amqp_server.request_seen("vanished")  # at work; its answer goes to a closed connection
    finally:
        half_tls.close()
        silent.close()


def test_plaintext_on_the_tls_port_is_dropped(amqp_server: AmqpServer, bystander: AmqpClient):
    received = answer_to_plaintext(amqp_server.port, AMQP_HEADER, HOST)
    assert received == b"" or received[0] == TLS_ALERT  # nothing, or a TLS alert: never AMQP


def test_a_transfer_on_a_link_where_the_server_sends_is_refused(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.send_frame(Transfer(handle=0, delivery_id=0, delivery_tag=b"x"))  # the receiver
        assert _condition(client) == "amqp:not-allowed"


def test_a_delivery_whose_transfers_differ_in_id_is_refused(amqp_server: AmqpServer) -> None:
    with amqp_server.ready(PLAIN) as client:
        client.send_frame(Transfer(handle=1, delivery_id=0, delivery_tag=b"x", more=True))
        client.send_frame(Transfer(handle=1, delivery_id=5))
        assert _condition(client) == "amqp:invalid-field"


def test_replies_held_past_the_limit_close(amqp_server: AmqpServer, bystander: AmqpClient) -> None:
    with amqp_server.connect(PLAIN) as client:
        client.open()
        client.begin()
        client.attach_receiver("echo", credit=0)
        client.attach_sender("echo")
        for _ in range(MAX_HELD_REPLIES):
            assert client.send(Message(b"held")) == Accepted()
        client.transfer(encode_message(Message(b"one too many")))
        error = client.expect_close()
    assert error == AmqpError(
        "amqp:resource-limit-exceeded", f"more than {MAX_HELD_REPLIES} replies held"
    )
