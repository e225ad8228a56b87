"""WebSocket on the HTTPS port: the upgrade of a request, then the connection as a Carrier.

Azure DPS serves MQTT over WebSocket at ``/$iothub/websocket`` on port 443, and Microsoft's
device SDKs use it (docs/sdk-clients.md#mqtt-over-websocket-the-upgrade); AMQP too, on the same
path, told apart by the subprotocol the client offers (docs/amqp.md#amqp-over-websocket). The
HTTPS server is given the paths that upgrade, each with the :class:`WebSocketRoute` of every
subprotocol served there; a request for such a path never reaches the ASGI app.
:func:`decide_upgrade` refuses what is not a WebSocket opening handshake for one of the path's
routes (RFC 6455 4.2.1) with a precise 4xx, or picks the route, :func:`switch_protocols` answers
101, and :class:`WebSocket` then owns the connection's bytes: wsproto's framing (sans-I/O, of
h11's family) between the TLS connection (``devprov.http.connection``, reached through
:class:`Link`) and the :class:`devprov.transport.stream.StreamSession` the route's opener made.

Binary message data reaches the session as it arrives, never gathered into whole messages: the
session's protocol (MQTT, AMQP) is a byte stream, and a message may hold part of a frame or
several. Nothing here knows MQTT or AMQP; the CLI wires the routes in.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.utilities import generate_accept_token

from devprov.http.cycle import split_target
from devprov.transport.stream import Peer, StreamOpener, StreamSession

# The server's one logger: operators configure it by this name, whichever module logs.
logger = logging.getLogger("devprov.http.server")

# The largest frame payload accepted. wsproto hands a data frame's payload on as it arrives and
# buffers only control frames (at most 125 bytes, RFC 6455 5.5), so a frame announcing 2**63
# bytes costs nothing by itself; but no client has a reason to announce more than one MQTT
# packet in a frame, and DPS bounds a message at 96 KB. A frame whose header announces more
# than that plus 1 KiB for the packet's topic and headers is refused before its payload with
# close code 1009 (docs/operations.md#websocket-connections).
MAX_FRAME_BYTES = 96 * 1024 + 1024

# RFC 6455 4.2.1 item 5: the key is the base64 of 16 random bytes.
_KEY_BYTES = 16

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class WebSocketRoute:
    """One protocol a path that upgrades to WebSocket speaks: the subprotocol the client offers
    for it (``Sec-WebSocket-Protocol``), and the opener that makes each connection's session."""

    subprotocol: str
    opener: StreamOpener


@dataclass(frozen=True)
class UpgradeRefusal:
    """The answer to a request on a WebSocket path that is not a valid upgrade; it closes."""

    status: int
    message: str
    headers: Headers


def find_routes(
    upgrades: Mapping[str, Sequence[WebSocketRoute]], target: bytes
) -> Sequence[WebSocketRoute] | None:
    """The routes of a request target (already accepted by ``cycle.split_target``), or None.

    The path is compared as the ASGI app would see it, percent-decoded and without the query,
    so that no spelling of a WebSocket path reaches the app.
    """
    if not upgrades:
        return None
    origin, _ = split_target(target) or (target, None)
    raw_path = origin.partition(b"?")[0]
    return upgrades.get(unquote(raw_path.decode("ascii")))


def decide_upgrade(
    request: h11.Request, routes: Sequence[WebSocketRoute]
) -> WebSocketRoute | UpgradeRefusal:
    """The route of the first subprotocol the client offers that one of ``routes`` serves, if
    ``request`` is a WebSocket opening handshake; else the refusal, checked in this order
    (RFC 6455 4.2.1, 4.2.2):

    not GET, 405; no ``Upgrade: websocket`` with ``Connection: upgrade``, 426; not HTTP/1.1, a
    body, a ``Sec-WebSocket-Version`` other than 13 or a ``Sec-WebSocket-Key`` that is not the
    base64 of 16 bytes, 400; no served subprotocol offered in ``Sec-WebSocket-Protocol``, 400,
    naming the served ones.
    """
    if request.method != b"GET":
        return UpgradeRefusal(405, "a WebSocket upgrade must be a GET", [(b"Allow", b"GET")])
    if b"websocket" not in _tokens(request, b"upgrade", lower=True) or b"upgrade" not in _tokens(
        request, b"connection", lower=True
    ):
        return UpgradeRefusal(
            426,
            "this path serves only WebSocket: send Upgrade: websocket and Connection: Upgrade",
            [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")],
        )
    return _handshake_problem(request) or _choose_route(request, routes)


def switch_protocols(connection: h11.Connection, request: h11.Request, subprotocol: str) -> bytes:
    """The 101 answer to ``request``, which passed :func:`decide_upgrade`, on ``connection``,
    whose last event was that request. h11 then counts the connection as switched; what the
    client sent after the head is ``connection.trailing_data``, the first WebSocket bytes.

    No extension is accepted: permessage-deflate, which Node's ``ws`` offers, is declined by
    not naming it (RFC 6455 9.1), and MQTT packets are too small to gain from it.
    """
    # The request has no body (decide_upgrade), so h11's next event is its end, after which h11
    # lets the server switch; were it anything else, send() would raise.
    connection.next_event()
    key = _values(request, b"sec-websocket-key")[0]
    response = h11.InformationalResponse(
        status_code=101,
        reason=b"Switching Protocols",
        headers=[
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", generate_accept_token(key)),
            (b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")),
        ],
    )
    return connection.send(response) or b""


class Link(Protocol):
    """What a WebSocket needs of the HTTPS connection it took over (``connection.HttpsConnection``)."""

    def write_plaintext(self, data: bytes) -> None:
        """Encrypt ``data`` and send it, after what was sent before, within this loop turn."""

    def close_connection(self, *, linger: bool) -> None:
        """Send close_notify and close the TCP connection; with ``linger``, half-close first and
        drop what the client still sends for a while, so that a client still sending reads the
        close frame rather than a reset."""

    def idle(self) -> None:
        """The connection waits on its client: the gate may evict it."""

    def busy(self) -> None:
        """The connection works for its client: the gate leaves it alone."""


class WebSocket:
    """One upgraded connection: a :class:`devprov.transport.stream.Carrier` for the session the
    route's opener made, fed by the HTTPS connection through :meth:`receive`, :meth:`end`,
    :meth:`shut_down`, :meth:`evict` and :meth:`lost`.

    What the client sends: binary data goes to the session as it arrives; a text frame is
    refused with close code 1003; a frame wsproto finds malformed (unmasked, a reserved opcode
    or bit, a control frame over 125 bytes or fragmented...) with 1002, invalid UTF-8 in a
    close reason with 1007, a frame over :data:`MAX_FRAME_BYTES` with 1009. A ping is answered.
    The client's close frame is answered with a close frame; the session then sees the end of
    its input and the connection closes. The session sees :meth:`StreamSession.connection_lost`
    exactly once, when the TCP connection is gone, whoever closed it.
    """

    def __init__(self, link: Link, route: WebSocketRoute, peer: Peer) -> None:
        self._link = link
        self._client = peer.address
        # No extension is negotiated; the frame limit is wsproto's hook on each frame header.
        self._ws = Connection(ConnectionType.SERVER, extensions=[_FrameLimit()])
        # True once a close frame went out or the input ended: nothing more is sent or fed.
        self._closing = False
        self._lost = False
        self.session: StreamSession = _NoSession()
        try:
            self.session = route.opener(self, peer)
        except Exception:
            logger.exception("no WebSocket session could be opened for %s", self._client)
            self._close(CloseReason.INTERNAL_ERROR, "internal error", linger=True)

    # --- the carrier, for the session ---------------------------------------------------------

    def send(self, data: bytes) -> None:
        """One binary message carrying ``data``; ignored once the connection is closing."""
        if data and not self._closing:
            self._link.write_plaintext(self._ws.send(BytesMessage(data=data)))

    def close(self) -> None:
        """Close frame 1000, then close_notify; the client may finish sending (``Link``)."""
        self._close(CloseReason.NORMAL_CLOSURE, "", linger=True)

    def idle(self) -> None:
        if not self._closing:
            self._link.idle()

    def busy(self) -> None:
        if not self._closing:
            self._link.busy()

    # --- the HTTPS connection's calls ---------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Plaintext from the client: frames, whole or in pieces."""
        if self._closing or not data:
            return
        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                if event.data:
                    self._call(self.session.data_received, bytes(event.data))
            elif isinstance(event, Ping):
                self._link.write_plaintext(self._ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self._fail(CloseReason.UNSUPPORTED_DATA, "only binary messages are accepted")
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            # A Pong needs nothing.
            if self._closing:
                return

    def end(self) -> None:
        """The client's input ended without a close frame (TLS close_notify, TCP FIN); the HTTPS
        connection closes itself."""
        if not self._closing:
            self._closing = True
            self._call(self.session.eof_received)

    def shut_down(self) -> None:
        """The server is stopping: the session finishes its work, then closes the carrier."""
        if not self._closing:
            self._call(self.session.shut_down)

    def evict(self) -> None:
        """The gate gave this connection's slot away: close now, without lingering."""
        self._close(CloseReason.NORMAL_CLOSURE, "", linger=False)

    def lost(self) -> None:
        """The TCP connection is closed."""
        self._closing = True
        if not self._lost:
            self._lost = True
            self._call(self.session.connection_lost)

    # --- internals ----------------------------------------------------------------------------

    def _on_close(self, event: CloseConnection) -> None:
        if self._ws.state is not ConnectionState.REMOTE_CLOSING:
            # wsproto reports a malformed frame as a CloseConnection of its own, the state still
            # open: the code says what was wrong (1002, 1007, or 1009 from the frame limit).
            self._fail(event.code, event.reason or "")
            return
        # The client's close frame: answer it (RFC 6455 5.5.1), then the session's input ends.
        # The closing handshake is complete, so the server closes TCP at once (RFC 6455 7.1.1).
        self._link.write_plaintext(self._ws.send(event.response()))
        self._closing = True
        self._call(self.session.eof_received)
        self._link.close_connection(linger=False)

    def _fail(self, code: int, reason: str) -> None:
        logger.debug("WebSocket from %s closed with %d: %s", self._client, code, reason)
        self._close(code, reason, linger=True)

    def _close(self, code: int, reason: str, *, linger: bool) -> None:
        if self._closing:
            return
        self._closing = True
        if self._ws.state is ConnectionState.OPEN:
            self._link.write_plaintext(self._ws.send(CloseConnection(code=code, reason=reason)))
        self._link.close_connection(linger=linger)

    def _call(self, method: Callable[..., None], *args: bytes) -> None:
        """Call the session; a failure is logged and closes the WebSocket with 1011."""
        try:
            method(*args)
        except Exception:
            logger.exception("the WebSocket session of %s failed", self._client)
            self._close(CloseReason.INTERNAL_ERROR, "internal error", linger=True)


class _NoSession:
    """The session of a connection whose opener failed: it is closing, and ignores the rest."""

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def connection_lost(self) -> None:
        pass

    def shut_down(self) -> None:
        pass


class _FrameLimit(Extension):
    """wsproto's extension hook, used without negotiating anything: it sees each frame's header
    before the payload and refuses a frame over :data:`MAX_FRAME_BYTES` with 1009."""

    name = "devprov-frame-limit"  # never offered nor named in a handshake

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if payload_length > MAX_FRAME_BYTES:
            return CloseReason.MESSAGE_TOO_BIG
        return RsvBits(False, False, False)  # claims no reserved bit: a set one is refused


def _handshake_problem(request: h11.Request) -> UpgradeRefusal | None:
    """What is wrong with an upgrade to WebSocket (decide_upgrade's 400s), or None."""
    if request.http_version != b"1.1":
        return _bad("a WebSocket upgrade must be an HTTP/1.1 request")
    if _values(request, b"transfer-encoding") or _values(request, b"content-length") not in (
        [],
        [b"0"],
    ):
        return _bad("a WebSocket upgrade request has no body")
    if _values(request, b"sec-websocket-version") != [b"13"]:
        # RFC 6455 4.4: the refusal names the version the server speaks.
        return UpgradeRefusal(
            400, "Sec-WebSocket-Version must be 13", [(b"Sec-WebSocket-Version", b"13")]
        )
    if not _is_key(_values(request, b"sec-websocket-key")):
        return _bad("Sec-WebSocket-Key must be one base64 value of 16 bytes")
    return None


def _choose_route(
    request: h11.Request, routes: Sequence[WebSocketRoute]
) -> WebSocketRoute | UpgradeRefusal:
    """The route of the client's first offered subprotocol that is served: the client lists
    them in its order of preference (RFC 6455 4.1, 11.3.4); else a 400 naming those served."""
    served = {route.subprotocol.encode("ascii"): route for route in routes}
    for offered in _tokens(request, b"sec-websocket-protocol", lower=False):
        if offered in served:
            return served[offered]
    names = [route.subprotocol for route in routes]
    if len(names) == 1:
        return _bad(
            f"the WebSocket subprotocol {names[0]} is required: "
            f"send Sec-WebSocket-Protocol: {names[0]}"
        )
    return _bad(
        f"a WebSocket subprotocol served here is required ({', '.join(names)}): "
        f"send Sec-WebSocket-Protocol with one of them"
    )


def _bad(message: str) -> UpgradeRefusal:
    return UpgradeRefusal(400, message, [])


def _values(request: h11.Request, name: bytes) -> list[bytes]:
    """The values of every ``name`` header line (h11 lowercases names, strips values)."""
    return [value for key, value in request.headers if key == name]


def _tokens(request: h11.Request, name: bytes, *, lower: bool) -> list[bytes]:
    """The comma-separated tokens of every ``name`` header line, lowercased if ``lower``."""
    tokens = [t.strip() for value in _values(request, name) for t in value.split(b",")]
    return [t.lower() for t in tokens] if lower else tokens


def _is_key(values: Sequence[bytes]) -> bool:
    if len(values) != 1:
        return False
    try:
        return len(base64.b64decode(values[0], validate=True)) == _KEY_BYTES
    except binascii.Error:
        return False
