"""MQTT's WebSocket carrier on the HTTPS port (http.websocket), over real TLS on 127.0.0.1.

The session behind the route is a recording echo written here; the clients are wsproto's
client side over an ``ssl`` socket, or raw bytes where a frame must be malformed. The upgrade
requests of paho-mqtt 1.6.1 (the Python device SDK) and Node's ws 7.5.14 are sent byte for byte
(docs/sdk-clients.md#mqtt-over-websocket-the-upgrade).

Every accept has its reject twin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
)

from devprov.http.websocket import (
    MAX_FRAME_BYTES,
    UpgradeRefusal,
    WebSocketRoute,
    decide_upgrade,
)
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Carrier, Peer
from tests.http.conftest import (
    EchoApp,
    Pki,
    Reply,
    client_context,
    connect,
    exchange,
    get,
    read_all,
    run,
    serving,
)
from tests.http.test_connection import refused_without_tls, until

PATH = "/$iothub/websocket"

# What paho-mqtt 1.6.1 sends for azure-iot-device with websockets=True, captured.
PAHO_KEY = b"ir799E0RR46vwltWX61CLA=="
PAHO_UPGRADE = (
    b"GET /$iothub/websocket HTTP/1.1\r\n"
    b"Host: localhost:443\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Origin: https://localhost:443\r\n"
    b"Sec-WebSocket-Key: " + PAHO_KEY + b"\r\n"
    b"Sec-Websocket-Version: 13\r\n"
    b"Sec-Websocket-Protocol: mqtt\r\n"
    b"\r\n"
)

# What Node's ws 7.5.14 sends for azure-iot-provisioning-device-mqtt's MqttWs (its own key).
NODE_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
NODE_UPGRADE = (
    b"GET /$iothub/websocket HTTP/1.1\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: " + NODE_KEY + b"\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: websocket\r\n"
    b"Sec-WebSocket-Protocol: mqtt\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Host: localhost\r\n"
    b"\r\n"
)


def expected_accept(key: bytes) -> bytes:
    """RFC 6455 4.2.2: base64 of the SHA-1 of the key and the protocol's GUID."""
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key + guid).digest())


def upgrade(
    *, method: bytes = b"GET", path: bytes = PATH.encode(), key: bytes | None = None, **headers: str
) -> bytes:
    """An upgrade request; keyword headers (``sec_websocket_protocol="x"``) replace or, set to
    "", remove the defaults."""
    fields = {
        "Host": "localhost",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": (key or base64.b64encode(os.urandom(16))).decode(),
        "Sec-WebSocket-Protocol": "mqtt",
    }
    for name, value in headers.items():
        fields[name.replace("_", "-").title().replace("Websocket", "WebSocket")] = value
    lines = [f"{name}: {value}" for name, value in fields.items() if value]
    head = method + b" " + path + b" HTTP/1.1\r\n" + "\r\n".join(lines).encode()
    return head + b"\r\n\r\n"


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, length: int | None = None
) -> bytes:
    """One frame as a client writes it (RFC 6455 5.2); ``length`` overrides the announced one."""
    announced = len(payload) if length is None else length
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask else 0
    if announced <= 125:
        head = struct.pack("!BB", first, bit | announced)
    elif announced <= 0xFFFF:
        head = struct.pack("!BBH", first, bit | 126, announced)
    else:
        head = struct.pack("!BBQ", first, bit | 127, announced)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# --- the session behind the route -------------------------------------------------------------


@dataclass
class Session:
    """Records what its carrier fed it; echoes data unless told not to."""

    carrier: Carrier
    peer: Peer
    echo: bool
    fail_on_data: bool
    data: bytearray = field(default_factory=bytearray)
    pieces: int = 0
    events: list[str] = field(default_factory=list)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.pieces += 1
        if self.fail_on_data:
            raise RuntimeError("the session broke")
        if self.echo:
            self.carrier.send(data)

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self) -> None:
        self.events.append("lost")
        self.carrier.send(b"ignored: the carrier is gone")

    def shut_down(self) -> None:
        self.events.append("shut_down")
        self.carrier.close()


@dataclass
class Opener:
    """The StreamOpener of these tests."""

    echo: bool = True
    fail_on_data: bool = False
    sessions: list[Session] = field(default_factory=list)

    def __call__(self, carrier: Carrier, peer: Peer) -> Session:
        session = Session(carrier, peer, self.echo, self.fail_on_data)
        self.sessions.append(session)
        return session

    @property
    def only(self) -> Session:
        assert len(self.sessions) == 1, self.sessions
        return self.sessions[0]


def routes(opener: Opener) -> dict[str, list[WebSocketRoute]]:
    return {PATH: [WebSocketRoute(subprotocol="mqtt", opener=opener)]}


# --- a blocking client, run with asyncio.to_thread -------------------------------------------


def read_head(tls: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """The status and headers of the first answer, and what came after its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        assert name.lower() not in headers, f"{name} twice"
        headers[name.lower()] = value
    return int(lines[0].split(" ")[1]), headers, rest


class Client:
    """A WebSocket client over TLS: wsproto's framing, the socket in the calling thread."""

    def __init__(self, port: int, context: ssl.SSLContext, request: bytes, extra: bytes = b""):
        self.tls = connect(port, context)
        self.tls.sendall(request + extra)
        self.status, self.headers, rest = read_head(self.tls)
        assert self.status == 101, (self.status, self.headers, rest)
        self.ws = Connection(ConnectionType.CLIENT)
        self.ws.receive_data(rest)
        self.pending: list[Event] = []

    def send(self, event: Event) -> None:
        self.tls.sendall(self.ws.send(event))

    def send_raw(self, data: bytes) -> None:
        self.tls.sendall(data)

    def next_event(self) -> Event:
        """The server's next event; CloseConnection(1006) when the connection ends without one."""
        while not self.pending:
            self.pending.extend(self.ws.events())
            if self.pending:
                break
            try:
                data = self.tls.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            self.ws.receive_data(data or None)
        return self.pending.pop(0)

    def read_bytes(self, count: int) -> tuple[bytes, int]:
        """``count`` bytes of binary messages, and how many messages carried them."""
        data, messages = b"", 0
        while len(data) < count:
            event = self.next_event()
            assert isinstance(event, BytesMessage), event
            data += event.data
            messages += event.message_finished
        return data, messages

    def closed_with(self) -> int:
        """The code of the server's close frame, after which the server closes the connection."""
        event = self.next_event()
        assert isinstance(event, CloseConnection), event
        assert read_all_quietly(self.tls) == b""
        return int(event.code)

    def close(self) -> None:
        self.tls.close()


def read_all_quietly(tls: ssl.SSLSocket) -> bytes:
    try:
        return read_all(tls)
    except (ConnectionResetError, ssl.SSLError):
        return b""


async def open_client(port: int, pki: Pki, request: bytes | None = None, **options: Any) -> Client:
    context = options.pop("context", None) or client_context(pki)
    return await asyncio.to_thread(Client, port, context, request or upgrade(), **options)


# --- the upgrade --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "key"),
    [(PAHO_UPGRADE, PAHO_KEY), (NODE_UPGRADE, NODE_KEY)],
    ids=["ok/paho-1.6.1", "ok/node-ws-7.5.14"],
)
def test_the_sdks_upgrades_are_answered_101_with_mqtt_and_no_extension(
    pki: Pki, request_bytes: bytes, key: bytes
) -> None:
    opener, app = Opener(), EchoApp()

    async def scenario() -> tuple[Client, bytes]:
        async with serving(pki, app, upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki, request_bytes)
            client.send(BytesMessage(data=b"\x10\x0cCONNECT"))
            echoed, _ = await asyncio.to_thread(client.read_bytes, 9)
            client.close()
            return client, echoed

    client, echoed = run(scenario)
    assert client.headers == {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-accept": expected_accept(key).decode(),
        "sec-websocket-protocol": "mqtt",
    }  # no Sec-WebSocket-Extensions: permessage-deflate is declined
    assert echoed == b"\x10\x0cCONNECT"
    assert opener.only.data == b"\x10\x0cCONNECT" and app.calls == 0


def test_the_query_and_percent_encoding_reach_the_same_route(pki: Pki) -> None:
    opener, app = Opener(), EchoApp()

    async def scenario() -> list[int]:
        async with serving(pki, app, upgrades=routes(opener)) as (_, port):
            statuses = []
            for path in (b"/$iothub/websocket?iothub-no-client-cert=true", b"/%24iothub/websocket"):
                client = await open_client(port, pki, upgrade(path=path))
                statuses.append(client.status)
                client.close()
            return statuses

    assert run(scenario) == [101, 101]
    assert len(opener.sessions) == 2 and app.calls == 0


REFUSALS = [
    ("fail/post", upgrade(method=b"POST"), 405, {"allow": "GET"}, "GET"),
    ("fail/no-upgrade", get(PATH), 426, {"upgrade": "websocket"}, "Upgrade: websocket"),
    ("fail/upgrade-to-h2c", upgrade(upgrade="h2c"), 426, {"upgrade": "websocket"}, "WebSocket"),
    ("fail/connection-close", upgrade(connection="close"), 426, {"upgrade": "websocket"}, "Upgr"),
    ("fail/version-8", upgrade(sec_websocket_version="8"), 400,
     {"sec-websocket-version": "13"}, "Sec-WebSocket-Version must be 13"),
    ("fail/no-version", upgrade(sec_websocket_version=""), 400, {}, "Sec-WebSocket-Version"),
    ("fail/no-key", upgrade(sec_websocket_key=""), 400, {}, "Sec-WebSocket-Key"),
    ("fail/short-key", upgrade(key=base64.b64encode(b"x" * 15)), 400, {}, "Sec-WebSocket-Key"),
    ("fail/key-not-base64", upgrade(key=b"not base64 at all!!!!!!="), 400, {}, "Sec-WebSocket-Key"),
    ("fail/no-subprotocol", upgrade(sec_websocket_protocol=""), 400, {},
     "the WebSocket subprotocol mqtt is required: send Sec-WebSocket-Protocol: mqtt"),
    ("fail/other-subprotocol", upgrade(sec_websocket_protocol="mqttv3.1, MQTT"), 400, {},
     "subprotocol mqtt is required"),
    ("fail/body", upgrade(content_length="4")[:-2] + b"\r\nabcd", 400, {}, "no body"),
    ("fail/http-1.0", upgrade().replace(b"HTTP/1.1", b"HTTP/1.0"), 400, {}, "HTTP/1.1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_bytes", "status", "headers", "message"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_what_is_not_a_valid_upgrade_gets_a_precise_4xx_and_the_connection_closes(
    pki: Pki, request_bytes: bytes, status: int, headers: dict[str, str], message: str
) -> None:
    opener, app = Opener(), EchoApp()

    async def scenario() -> Reply:
        async with serving(pki, app, upgrades=routes(opener)) as (_, port):
            # exchange() reads until the server closes: the connection does not stay open
            return await asyncio.to_thread(exchange, port, client_context(pki), request_bytes)

    reply = run(scenario)
    assert reply.status == status
    assert {k: v.lower() for k, v in headers.items()}.items() <= reply.headers.items()
    assert reply.headers["connection"] == "close"
    assert message in reply.json()["message"]
    assert reply.json()["errorCode"] == {400: 400001, 405: 405000, 426: 426000}[status]
    assert opener.sessions == [] and app.calls == 0


# Node's ws as azure-iot-provisioning-device-amqp's AmqpWs opens it: rhea's websocket_connect
# offers the one subprotocol AMQPWSB10 (azure-iot-amqp-base, dist/amqp.js).
ROUTED = [
    ("ok/mqtt", "mqtt", "mqtt"),
    ("ok/amqp", "AMQPWSB10", "AMQPWSB10"),
    ("ok/the-first-served-of-several", "mqttv3.1, AMQPWSB10, mqtt", "AMQPWSB10"),
]


@pytest.mark.parametrize(
    ("offered", "chosen"), [case[1:] for case in ROUTED], ids=[case[0] for case in ROUTED]
)
def test_one_path_serves_several_subprotocols(pki: Pki, offered: str, chosen: str) -> None:
    openers = {"mqtt": Opener(), "AMQPWSB10": Opener()}
    two = {PATH: [WebSocketRoute(name, opener) for name, opener in openers.items()]}

    async def scenario() -> Client:
        async with serving(pki, EchoApp(), upgrades=two) as (_, port):
            client = await open_client(port, pki, upgrade(sec_websocket_protocol=offered))
            client.send(BytesMessage(data=b"AMQP\x00\x01\x00\x00"))
            await asyncio.to_thread(client.read_bytes, 8)
            client.close()
            return client

    client = run(scenario)
    assert client.headers["sec-websocket-protocol"] == chosen
    assert openers[chosen].only.data == b"AMQP\x00\x01\x00\x00"
    (other,) = set(openers) - {chosen}
    assert openers[other].sessions == []


def test_a_subprotocol_no_route_serves_is_refused_naming_those_served(pki: Pki) -> None:
    openers = [Opener(), Opener()]
    two = {
        PATH: [WebSocketRoute(n, o) for n, o in zip(["mqtt", "AMQPWSB10"], openers, strict=True)]
    }

    async def scenario() -> Reply:
        async with serving(pki, EchoApp(), upgrades=two) as (_, port):
            request = upgrade(sec_websocket_protocol="AMQPWSB09, amqpwsb10")
            return await asyncio.to_thread(exchange, port, client_context(pki), request)

    reply = run(scenario)
    assert reply.status == 400
    assert "(mqtt, AMQPWSB10)" in reply.json()["message"]
    assert all(opener.sessions == [] for opener in openers)


def test_one_refusal_twin_the_same_request_with_the_subprotocol_is_accepted(pki: Pki) -> None:
    opener = Opener()

    async def scenario() -> int:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            request = upgrade(
                sec_websocket_protocol="mqttv3.1, mqtt", connection="keep-alive, Upgrade"
            )
            client = await open_client(port, pki, request)
            client.close()
            return client.status

    assert run(scenario) == 101


def test_other_paths_still_reach_the_app(pki: Pki) -> None:
    opener, app = Opener(), EchoApp()

    async def scenario() -> list[Reply]:
        async with serving(pki, app, upgrades=routes(opener)) as (_, port):
            context = client_context(pki)
            plain = await asyncio.to_thread(exchange, port, context, get("/registrations"))
            # an upgrade for a path without a route is the app's like any request
            asked = upgrade(path=b"/$iothub/other", connection="Upgrade, close")
            other = await asyncio.to_thread(exchange, port, context, asked)
            return [plain, other]

    plain, other = run(scenario)
    assert plain.status == other.status == 200
    assert [scope["path"] for scope in app.scopes] == ["/registrations", "/$iothub/other"]
    assert opener.sessions == []


def test_without_routes_the_websocket_path_is_the_apps(pki: Pki) -> None:
    app = EchoApp()

    async def scenario() -> Reply:
        async with serving(pki, app) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), get(PATH))

    assert run(scenario).status == 200 and app.calls == 1


# --- bytes both ways ------------------------------------------------------------------------------


def test_bytes_flow_both_ways_however_frames_cut_them(pki: Pki) -> None:
    opener = Opener()
    packets = [b"\x10\x20" + bytes(range(32)), b"\x82\x05\x00\x01abc", b"\xc0\x00"]
    stream = b"".join(packets)

    async def scenario() -> tuple[bytes, int]:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki)
            # one packet split over two messages, then a fragmented message, then the rest of
            # one packet and all of the next two in one frame
            client.send(BytesMessage(data=stream[:10]))
            client.send(BytesMessage(data=stream[10:20], message_finished=False))
            client.send(BytesMessage(data=stream[20:25], message_finished=True))
            client.send(BytesMessage(data=stream[25:]))
            await until(lambda: len(opener.only.data) == len(stream))
            # the session's replies: one message each
            session = opener.only
            session.echo = False
            session.carrier.send(b"\x20\x02\x00\x00")
            session.carrier.send(b"\x90\x03\x00\x01\x00")
            replies = await asyncio.to_thread(client.read_bytes, len(stream) + 9)
            client.close()
            return replies

    (replies, messages) = run(scenario)
    assert opener.only.data == stream
    assert replies == stream + b"\x20\x02\x00\x00\x90\x03\x00\x01\x00"
    assert messages == opener.only.pieces + 2  # each send() is one message


def test_a_large_frame_reaches_the_session_as_it_arrives(pki: Pki) -> None:
    opener = Opener(echo=False)
    payload = os.urandom(MAX_FRAME_BYTES)  # the largest frame accepted (twin of the 1009 test)

    async def scenario() -> None:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki)
            await asyncio.to_thread(client.send_raw, frame(0x2, payload))
            await until(lambda: len(opener.only.data) == len(payload))
            client.close()

    run(scenario)
    assert opener.only.data == payload
    assert opener.only.pieces > 1  # handed on in pieces, not gathered into one message


def test_bytes_sent_with_the_upgrade_head_are_not_lost(pki: Pki) -> None:
    opener = Opener()
    first = frame(0x2, b"\x10\x0bhello world") + frame(0x2, b"\xc0\x00")

    async def scenario() -> bytes:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki, PAHO_UPGRADE, extra=first)
            echoed, _ = await asyncio.to_thread(client.read_bytes, 15)
            client.close()
            return echoed

    assert run(scenario) == b"\x10\x0bhello world\xc0\x00"
    assert opener.only.data == b"\x10\x0bhello world\xc0\x00"


@pytest.mark.parametrize("identity", [True, False], ids=["ok/client-chain", "ok/no-certificate"])
def test_the_client_chain_and_address_reach_the_peer(pki: Pki, identity: bool) -> None:
    opener = Opener()
    pair = (pki.device_chain_file, pki.device_key_file) if identity else None

    async def scenario() -> int:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki, context=client_context(pki, identity=pair))
            client_port = int(client.tls.getsockname()[1])
            client.close()
            return client_port

    client_port = run(scenario)
    peer = opener.only.peer
    assert peer.transport == "websocket"
    assert peer.address == ("127.0.0.1", client_port)
    assert peer.chain_der == ((pki.device_der, pki.intermediate_der) if identity else ())


def test_a_ping_is_answered_with_its_payload(pki: Pki) -> None:
    opener = Opener()

    async def scenario() -> Event:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki)
            client.send(Ping(payload=b"are you there"))
            event = await asyncio.to_thread(client.next_event)
            client.close()
            return event

    assert run(scenario) == Pong(payload=b"are you there")
    assert opener.only.data == b""


# --- what is refused after the upgrade --------------------------------------------------------


FRAME_REFUSALS = [
    ("fail/text", frame(0x1, b"hello"), 1003),
    ("fail/unmasked", frame(0x2, b"\x10\x00", mask=False), 1002),
    ("fail/reserved-opcode", frame(0x3, b"x"), 1002),
    ("fail/fragmented-ping", frame(0x9, b"x", fin=False), 1002),
    ("fail/long-ping", frame(0x9, b"x" * 126), 1002),
    ("fail/compressed-without-deflate", frame(0x40 | 0x2, b"x"), 1002),  # RSV1 set
    ("fail/close-reason-not-utf8", frame(0x8, b"\x03\xe8\xff"), 1007),
    ("fail/oversized-header", frame(0x2, b"\x10", length=2**40), 1009),
    ("fail/just-over-the-limit", frame(0x2, b"\x10", length=MAX_FRAME_BYTES + 1), 1009),
]


@pytest.mark.parametrize(
    ("bad", "code"), [case[1:] for case in FRAME_REFUSALS], ids=[case[0] for case in FRAME_REFUSALS]
)
def test_a_bad_frame_closes_the_websocket_with_its_code(pki: Pki, bad: bytes, code: int) -> None:
    opener = Opener()

    async def scenario() -> tuple[bytes, int]:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (server, port):
            client = await open_client(port, pki)
            client.send(BytesMessage(data=b"\xc0\x00"))  # accepted before the bad frame
            echoed, _ = await asyncio.to_thread(client.read_bytes, 2)
            client.send_raw(bad)
            closed = await asyncio.to_thread(client.closed_with)
            client.close()
            await until(lambda: server.gate.open == 0)
            return echoed, closed

    echoed, closed = run(scenario)
    assert (echoed, closed) == (b"\xc0\x00", code)
    assert opener.only.data == b"\xc0\x00"  # nothing of the bad frame reached the session
    assert opener.only.events == ["lost"]


def test_a_failing_session_is_closed_with_1011_and_logged(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    opener = Opener(fail_on_data=True)

    async def scenario() -> int:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (_, port):
            client = await open_client(port, pki)
            client.send(BytesMessage(data=b"\x10\x00"))
            closed = await asyncio.to_thread(client.closed_with)
            client.close()
            return closed

    with caplog.at_level(logging.ERROR, logger="devprov"):
        assert run(scenario, server_errors=True) == 1011
    assert [r.getMessage() for r in caplog.records] == [
        f"the WebSocket session of ('127.0.0.1', {opener.only.peer.address[1]}) failed"  # type: ignore[index]
    ]
    assert opener.only.events == ["lost"]


def test_an_opener_that_fails_closes_with_1011_and_is_logged(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    def opener(carrier: Carrier, peer: Peer) -> Session:
        raise RuntimeError("no session today")

    async def scenario() -> int:
        route = {PATH: [WebSocketRoute(subprotocol="mqtt", opener=opener)]}
        async with serving(pki, EchoApp(), upgrades=route) as (_, port):
            client = await open_client(port, pki)
            client.send(BytesMessage(data=b"\x10\x00"))  # dropped: nothing to take it
            closed = await asyncio.to_thread(client.closed_with)
            client.close()
            return closed

    with caplog.at_level(logging.ERROR, logger="devprov"):
        assert run(scenario, server_errors=True) == 1011
    assert [r.getMessage().split(" for ")[0] for r in caplog.records] == [
        "no WebSocket session could be opened"
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Upgrade",
                    "Connection",
                    "Sec-WebSocket-Version",
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Protocol",
                    "X-Other",
                ]
            ),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=40),
        ),
        max_size=8,
    )
)
def test_any_header_values_give_a_decision_and_nothing_else(
    headers: list[tuple[str, str]],
) -> None:
    fields = [("Host", "localhost"), *headers]
    request = h11.Request(
        method="GET", target=PATH, headers=[(n, v.encode("latin-1")) for n, v in fields]
    )
    route = WebSocketRoute(subprotocol="mqtt", opener=Opener())
    decision = decide_upgrade(request, [route])
    assert decision is route or (
        isinstance(decision, UpgradeRefusal) and decision.status in (400, 426)
    )


# --- how it ends --------------------------------------------------------------------------------


def test_the_clients_close_is_answered_then_eof_then_lost_once(pki: Pki) -> None:
    opener = Opener()

    async def scenario() -> int:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (server, port):
            client = await open_client(port, pki)
            client.send(CloseConnection(code=1000, reason="bye"))
            closed = await asyncio.to_thread(client.closed_with)
            client.close()
            await until(lambda: server.gate.open == 0)
            return closed

    assert run(scenario) == 1000
    assert opener.only.events == ["eof", "lost"]


@pytest.mark.parametrize("notify", [True, False], ids=["ok/close-notify", "ok/tcp-close"])
def test_the_end_of_tls_or_tcp_is_eof_then_lost_once(pki: Pki, notify: bool) -> None:
    opener = Opener()

    async def scenario() -> None:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (server, port):
            client = await open_client(port, pki)
            if notify:
                raw = await asyncio.to_thread(
                    client.tls.unwrap
                )  # close_notify, then read the answer
                raw.close()
            else:
                client.tls.shutdown(2)  # TCP FIN without close_notify
                client.close()
            await until(lambda: server.gate.open == 0)

    run(scenario)
    assert opener.only.events == ["eof", "lost"]


def test_server_close_shuts_the_session_down_which_closes_with_1000(pki: Pki) -> None:
    opener = Opener()

    async def scenario() -> int:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (server, port):
            client = await open_client(port, pki)
            closing = asyncio.ensure_future(server.close())
            closed = await asyncio.to_thread(client.closed_with)
            client.close()
            await closing
            return closed

    assert run(scenario) == 1000
    assert opener.only.events == ["shut_down", "lost"]


def test_at_the_cap_an_idle_websocket_is_evicted_with_1000_and_a_busy_one_is_not(pki: Pki) -> None:
    policy = ConnectionPolicy(max_connections=2, evict_after=0.2)
    opener = Opener()

    async def scenario() -> tuple[Reply, int, bool, bytes]:
        async with serving(pki, EchoApp(), upgrades=routes(opener), policy=policy) as (_, port):
            idle = await open_client(port, pki)
            busy = await open_client(port, pki)
            await until(lambda: len(opener.sessions) == 2)
            opener.sessions[1].carrier.busy()  # as a session at work on a request
            await asyncio.sleep(0.3)  # both past evict_after
            served = await asyncio.to_thread(exchange, port, client_context(pki), get())
            evicted = await asyncio.to_thread(idle.closed_with)
            # the busy one kept its slot; with a busy newcomer in the other, the next is refused
            holder = await open_client(port, pki)
            await until(lambda: len(opener.sessions) == 3)
            opener.sessions[2].carrier.busy()
            await asyncio.sleep(0.3)
            refused = await asyncio.to_thread(refused_without_tls, port)
            busy.send(BytesMessage(data=b"\xc0\x00"))
            echoed, _ = await asyncio.to_thread(busy.read_bytes, 2)
            for client in (idle, busy, holder):
                client.close()
            return served, evicted, refused, echoed

    served, evicted, refused, echoed = run(scenario)
    assert served.status == 200 and evicted == 1000
    assert opener.sessions[0].events == ["lost"]
    assert refused and echoed == b"\xc0\x00"


def test_a_closed_carrier_sends_nothing_more(pki: Pki) -> None:
    opener = Opener()

    async def scenario() -> int:
        async with serving(pki, EchoApp(), upgrades=routes(opener)) as (server, port):
            client = await open_client(port, pki)
            await until(lambda: len(opener.sessions) == 1)
            carrier = opener.only.carrier
            carrier.close()
            carrier.close()  # twice is harmless
            carrier.send(b"after the close")  # ignored
            carrier.idle()
            code = await asyncio.to_thread(client.closed_with)  # and nothing after the close
            client.close()
            await until(lambda: server.gate.open == 0)
            return code

    assert run(scenario) == 1000
    assert opener.only.events == ["lost"]
