"""One client connection of the HTTPS server: TLS, HTTP/1.1 framing, keep-alive, closing.

Owns the asyncio protocol object: pumping bytes through the connection's ``TlsSession``, h11's
state machine, one request cycle at a time (``devprov.http.cycle``), enforcing the request
limits, the timeouts of each phase, flow control in both directions, and how the connection
ends. h11's states, the timers and closing make one state machine, kept in this one class
(hence past 400 lines: split up, its invariants would span modules); the cycle and the server
reach it only through the narrow protocols ``cycle.Connection`` and :class:`Server`.

The phases and their timeouts (``devprov.transport.policy``): the TLS handshake; the first
request's head, counted from the handshake's end; between requests, keep-alive until the next
request's first byte, then its head; the request body, a total from the end of the head; the
handler, from the end of the head until the response is written (``devprov.http.cycle``). A
head or body that times out gets 408; a handshake or keep-alive wait that times out is closed.
While the connection waits on its client (every phase but a handler at work on a whole request)
the server's gate may evict it to make room at the cap.

A connection ends cleanly, with the server's close_notify, whenever the server closes it
(unless TLS failed) and when the client sent close_notify first: both keep the TLS session
resumable. A client that drops TCP without close_notify while the server has nothing left to
send loses its session (why: ``devprov.transport.tls``, above ``TlsSession``).

A request for one of the server's WebSocket paths is answered here, never by the app: refused,
or upgraded (``devprov.http.websocket``). Once upgraded the connection stops speaking HTTP: its
timers are disarmed, and the plaintext, the end of input, the server's shut-down and the gate's
eviction go to the connection's :class:`devprov.http.websocket.WebSocket`, whose session owns
the timing from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, Protocol, cast

import h11

from devprov.http.asgi import AsgiApp, Message
from devprov.http.cycle import ClientDisconnected, Cycle, build_scope
from devprov.http.response import build_error_response, build_response_head, decide_refusal
from devprov.http.websocket import (
    UpgradeRefusal,
    WebSocket,
    WebSocketRoute,
    decide_upgrade,
    find_routes,
    switch_protocols,
)
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.proxy import (
    MalformedProxyHeader,
    ProxyPreamble,
)
from devprov.transport.stream import Peer
from devprov.transport.tls import TlsContexts, TlsError, TlsSession

# The server's one logger: operators configure it by this name, whichever module logs.
logger = logging.getLogger("devprov.http.server")

# After an early answer (400, 413, 500) the client may still be sending. Closing with unread
# input makes the kernel answer with RST, which can destroy the answer before the client read
# it (RFC 9112 9.6), so the server half-closes and drops input for this long first.
LINGER_SECONDS = 2.0


class _Phase(Enum):
    """The phases of a connection (module docstring); a handler at work is not timed here."""

    HANDSHAKE = "TLS handshake"
    HEAD = "request head"
    KEEP_ALIVE = "keep-alive wait"
    BODY = "request body"
    HANDLER = "handler"


class Server(Protocol):
    """What a connection needs from the server that accepted it (``server.HttpsServer``)."""

    app: AsgiApp
    contexts: TlsContexts
    policy: ConnectionPolicy
    gate: ConnectionGate
    max_body_bytes: int
    max_header_bytes: int
    # Request paths that upgrade to WebSocket, each with its routes (one per subprotocol).
    upgrades: Mapping[str, Sequence[WebSocketRoute]]

    @property
    def closed(self) -> bool:
        """True once the server's close() has begun."""

    def track(self, connection: HttpsConnection) -> None:
        """The connection is open."""

    def forget(self, connection: HttpsConnection) -> None:
        """The connection is closed."""

    def handshake_done(self, connection: HttpsConnection, chain_bytes: int) -> None:
        """The TLS handshake finished; the client presented ``chain_bytes`` of certificates."""

    def spawn(self, coroutine: Awaitable[None]) -> None:
        """Run a request's app call as a task; the server's close() ends those still running."""

    def request_state(self) -> dict[str, Any]:
        """The ASGI ``state`` for a new request's scope."""


class HttpsConnection(asyncio.Protocol):
    """One client connection: the TLS handshake, then HTTP/1.1 request cycles one at a time."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._policy = server.policy
        self._loop = asyncio.get_running_loop()
        self._tls = TlsSession(server.contexts.context)
        self.generation = server.contexts.generation  # of the TLS context, see tls.TlsContexts
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
        self._transport = cast(asyncio.Transport, None)
        self._client: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None
        self._tls_extension: dict[str, Any] = {}
        self._cycle: Cycle | None = None
        self._websocket: WebSocket | None = None  # once upgraded (module docstring)
        self._timer: asyncio.TimerHandle | None = None
        self._phase = _Phase.HANDSHAKE
        self._writable = asyncio.Event()
        self._writable.set()
        self._read_paused = self._closing = self._lingering = False
        self._peer_eof = self._shutting_down = self._flush_pending = False
        self._close_after_response = self._retiring = False
        # The PROXY protocol header to read before TLS, from a --proxy-from peer only.
        self._proxy = ProxyPreamble(None, ())

    # --- asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._client = _address(transport.get_extra_info("peername"))
        self._local = _address(transport.get_extra_info("sockname"))
        # Read within the handshake's timeout, like TLS.
        self._proxy = ProxyPreamble(self._client, self._policy.proxy_from)
        self._server.track(self)
        self._arm(self._policy.handshake_timeout)
        if self._server.closed:  # accepted while close() was already sweeping connections
            self.shut_down()

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._peer_eof:
            return
        if self._proxy.pending:
            try:
                data = self._proxy.feed(data)
            except MalformedProxyHeader as exc:
                logger.debug("bad PROXY header from %s: %s", self._client, exc)
                self._close(notify=False)
                return
            self._client = self._proxy.address
            if not data:
                return
        tls = self._tls
        tls.receive(data)
        try:
            if not tls.handshake_complete:
                if not tls.handshake():
                    self._flush()
                    return
                self._tls_extension = extension = tls.extension()
                chain = extension["devprov.client_chain_der"]
                self._server.handshake_done(self, sum(len(der) for der in chain))
                self._wait_for_request(first=True)
            plaintext, closed = tls.read()
        except TlsError as exc:
            logger.debug("TLS failure from %s: %s", self._client, exc)
            self._flush()
            self._close(notify=False)
            return
        if self._websocket is not None:
            self._websocket.receive(plaintext)
            if closed:  # the client's close_notify: the session's input ends, close_notify answers
                self._peer_eof = True
                self._websocket.end()
                self._close()
            self._flush_soon()
            return
        if plaintext:
            if self._phase is _Phase.KEEP_ALIVE:  # the next request's first byte: its head is timed
                self._enter(_Phase.HEAD, self._policy.head_timeout)
            self._h11.receive_data(plaintext)
        if closed:  # the client's close_notify: h11 sees the end, and _close() answers it
            self._peer_eof = True
            self._h11.receive_data(b"")
        self._handle_events()
        # After _handle_events: the app task it may have started runs first, so session
        # tickets, the response and close_notify can leave in one write.
        self._flush_soon()

    def eof_received(self) -> bool | None:
        if self._websocket is not None:
            self._websocket.end()  # then asyncio closes the transport, as for HTTP
        cycle = self._cycle
        if self._lingering or cycle is None or cycle.response_complete:
            return None  # asyncio closes the transport; no close_notify (module docstring)
        # A half-close after a request still gets its response (_handle_events keeps the
        # connection until it is written); h11 sees the end of the client's data.
        if not self._peer_eof:
            self._peer_eof = True
            self._h11.receive_data(b"")
            self._handle_events()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._disarm()
        if self._websocket is not None:
            self._websocket.lost()
            self._websocket = None  # it refers back to this connection, as a cycle does
        if self._cycle is not None:
            self._cycle.disconnect()
            # The cycle refers back to this connection: break the cycle of references, so that
            # the TLS connection (and the session and chain it holds) is freed now, not at the
            # garbage collector's next full pass.
            self._cycle = None
        self._writable.set()
        self._server.forget(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- HTTP events --------------------------------------------------------------------------

    def _handle_events(self) -> None:
        while not self._closing and self._websocket is None:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                logger.debug("malformed request from %s: %s", self._client, exc)
                self._reject(exc.error_status_hint, "malformed HTTP request")
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:  # a pipelined request waits for the current response
                self.pause_reading()
                return
            if isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end_of_body()
            elif isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.ConnectionClosed):
                cycle = self._cycle
                if cycle is not None and not cycle.response_complete:
                    # A half-close after a whole request: the client still reads its answer.
                    self._close_after_response = True
                    return
                self._close()  # sends close_notify: a clean end keeps the session resumable

    def _on_request(self, request: h11.Request) -> None:
        self._disarm()
        refusal = decide_refusal(
            request,
            max_header_bytes=self._server.max_header_bytes,
            max_body_bytes=self._server.max_body_bytes,
        )
        if refusal is not None:
            self._reject(*refusal)
            return
        routes = find_routes(self._server.upgrades, request.target)
        if routes is not None:
            self._upgrade(request, routes)
            return
        cycle = Cycle(self, head=request.method == b"HEAD")
        self._cycle = cycle
        if self._h11.their_state is h11.SEND_BODY:
            self._enter(_Phase.BODY, self._policy.body_timeout)
        else:
            self._enter(_Phase.HANDLER)
        scope = build_scope(
            request,
            client=self._client,
            server=self._local,
            state=self._server.request_state(),
            tls=self._tls_extension,
        )
        self._server.spawn(cycle.run(self._server.app, scope, timeout=self._policy.handler_timeout))

    def _upgrade(self, request: h11.Request, routes: Sequence[WebSocketRoute]) -> None:
        """A request for a WebSocket path: refused with a 4xx, or upgraded to the protocol of
        the subprotocol chosen (module docstring)."""
        route = decide_upgrade(request, routes)
        if isinstance(route, UpgradeRefusal):
            self._reject(route.status, route.message, route.headers)
            return
        self._send_plaintext(switch_protocols(self._h11, request, route.subprotocol))
        self._server.gate.idle(self)  # until the session says otherwise: it waits for a packet
        chain = tuple(self._tls_extension["devprov.client_chain_der"])
        peer = Peer(address=self._client, chain_der=chain, transport="websocket")
        self._websocket = websocket = WebSocket(self, route, peer)
        trailing, closed = self._h11.trailing_data  # sent with the head: the first frames
        websocket.receive(trailing)
        if closed:
            websocket.end()
            self._close()

    def _on_data(self, data: bytes) -> None:
        cycle = cast(Cycle, self._cycle)
        cycle.received += len(data)
        if cycle.received > self._server.max_body_bytes:
            if self._h11.our_state is h11.SEND_RESPONSE:
                self._reject(413, f"request body exceeds {self._server.max_body_bytes} bytes")
            else:  # the response is under way: nothing can be said any more
                self._close()
        elif not cycle.response_complete:  # else: dropping a body the app did not read
            cycle.feed(data)

    def _on_end_of_body(self) -> None:
        cycle = cast(Cycle, self._cycle)
        if cycle.response_complete:
            self._next_cycle()
        else:
            self._enter(_Phase.HANDLER)
            cycle.end_body()

    def _on_response_complete(self) -> None:
        if self._closing:
            return
        if self._close_after_response:
            self._close()
            return
        if self._h11.our_state is h11.MUST_CLOSE:
            self._close(linger=self._h11.their_state is h11.SEND_BODY)
        elif self._h11.their_state is h11.DONE:
            self._next_cycle()
            self._handle_events()
        else:  # drop the rest of a body the app did not read, then serve the next request
            self.resume_reading()

    def _next_cycle(self) -> None:
        self._h11.start_next_cycle()
        self._cycle = None
        self.resume_reading()
        self._wait_for_request(first=False)

    def _wait_for_request(self, *, first: bool) -> None:
        if self._shutting_down or (self._retiring and not first):
            self._close()
        elif first:  # the first request's head is timed from the handshake's end
            self._enter(_Phase.HEAD, self._policy.head_timeout)
        else:
            self._enter(_Phase.KEEP_ALIVE, self._policy.keep_alive_timeout)

    def _enter(self, phase: _Phase, timeout: float | None = None) -> None:
        """Start ``phase``: its timer (none while a handler works) and what the gate knows."""
        self._phase = phase
        if timeout is None:
            self._disarm()
            self._server.gate.busy(self)
        else:
            self._arm(timeout)
            self._server.gate.idle(self)

    # --- the cycle's requests (cycle.Connection) ----------------------------------------------

    async def write_response(self, cycle: Cycle, start: Message, body: bytes, more: bool) -> None:
        """Send the head on the first call, then ``body``; the end too unless ``more``."""
        events: list[h11.Event] = []
        if not cycle.head_sent:
            # A client still waiting for 100 may never send its body (RFC 9110 10.1.1): close.
            close = (
                self._shutting_down or self._retiring or self._h11.they_are_waiting_for_100_continue
            )
            events.append(build_response_head(start, body, more=more, head=cycle.head, close=close))
            cycle.head_sent = True
        if body and not cycle.head:  # HEAD: h11 frames no body, so the app's is dropped
            events.append(h11.Data(data=body))
        if not more:
            events.append(h11.EndOfMessage())
        if not self._send_plaintext(self._serialize(events), now=more):
            raise ClientDisconnected("the connection is closed")
        if not more:
            cycle.complete()
            self._on_response_complete()
        elif not self._writable.is_set():
            await self._writable.wait()

    def send_continue(self) -> None:
        """The app wants the body: answer ``Expect: 100-continue`` if the client waits."""
        if self._h11.they_are_waiting_for_100_continue and not self._closing:
            continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            self._send_plaintext(self._serialize([continue_]))
        self.resume_reading()

    def app_failed(self, cycle: Cycle, *, timed_out: bool = False) -> None:
        """The app raised, returned early or ran out of time: 500 (503 for the timeout) if
        nothing was sent yet, else cut the response."""
        if cycle is not self._cycle or self._closing:
            return
        if self._h11.our_state is h11.SEND_RESPONSE:
            if timed_out:
                seconds = self._policy.handler_timeout
                self._reject(503, f"the request was not handled within {seconds:g} s")
            else:
                self._reject(500, "internal server error")
        else:
            cycle.disconnect()
            self._close()

    def pause_reading(self) -> None:
        """Stop reading the socket (a pipelined request, or a body the app is not reading)."""
        if not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()

    # --- writing and closing ------------------------------------------------------------------

    def _reject(
        self, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """Answer without (or instead of) the app, then close."""
        if self._cycle is not None:
            self._cycle.disconnect()
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            answer = build_error_response(status, message, headers)
            self._send_plaintext(self._serialize(answer))
        self._close(linger=True)

    def _serialize(self, events: Iterable[h11.Event]) -> bytes:
        # One join for head, body and framing, then one TLS write: fewer records and syscalls.
        pieces: list[bytes] = []
        for event in events:
            pieces.extend(self._h11.send_with_data_passthrough(event) or ())
        return b"".join(pieces)

    def _send_plaintext(self, data: bytes, *, now: bool = False) -> bool:
        """Encrypt and queue ``data``; False if the connection is closed or just failed.

        Streamed parts go out ``now``: the memory BIO is unbounded, so an app that never yields
        must not pile up its whole response there before flow control can see it.
        """
        if self._closing:
            return False
        try:
            self._tls.write(data)
        except TlsError:
            logger.debug("TLS write to %s failed", self._client, exc_info=True)
            self._close(notify=False)
            return False
        if now:
            self._flush()
        else:
            self._flush_soon()
        return True

    def _flush_soon(self) -> None:
        # One socket write per turn of the loop: each write wakes the client, and on the VM the
        # benchmark ran on that wake-up cost more than the TLS 1.3 tickets, response and
        # close_notify it carried (4 writes per connection became 2).
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self._tls.outgoing()
        if data and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self, *, linger: bool = False, notify: bool = True) -> None:
        """Close the connection, with close_notify first if ``notify`` (module docstring)."""
        if self._closing:
            return
        self._closing = True
        self._disarm()
        if self._cycle is not None and not self._cycle.response_complete:
            self._cycle.disconnect()
        if notify and self._tls.handshake_complete:
            self._tls.close()
            self._flush()
        transport = self._transport
        if linger and not self._peer_eof and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the client reset the connection already: nothing to linger for
                transport.close()
                return
            self._lingering = True
            self.resume_reading()
            self._timer = self._loop.call_later(LINGER_SECONDS, transport.close)
            self._server.gate.idle(self)  # done but for the linger: evictable at the cap
        else:
            transport.close()

    def shut_down(self) -> None:
        """Server closing: close now if idle or lingering, else after the current response."""
        self._shutting_down = True
        if self._lingering:
            self._transport.close()
        elif self._websocket is not None:
            self._websocket.shut_down()
        elif self._cycle is None:
            self._close(notify=self._tls.handshake_complete)

    def retire(self) -> None:
        """This connection's TLS context was replaced (tls.TlsContexts): close between requests
        rather than serve more on it, so that the old context and its session cache are freed."""
        self._retiring = True
        if self._phase is _Phase.KEEP_ALIVE:
            self._close()

    def evict(self) -> None:
        """The gate needs this slot for a new connection (transport.gate.Slot)."""
        if self._lingering:
            self._transport.close()
        elif self._websocket is not None:
            self._websocket.evict()
        else:
            self._close(notify=self._tls.handshake_complete)

    def abort(self) -> None:
        self._transport.abort()

    # --- the upgraded connection's requests (websocket.Link) -----------------------------------

    def write_plaintext(self, data: bytes) -> None:
        self._send_plaintext(data)

    def close_connection(self, *, linger: bool) -> None:
        self._close(linger=linger)

    def idle(self) -> None:
        if not self._closing:
            self._server.gate.idle(self)

    def busy(self) -> None:
        if not self._closing:
            self._server.gate.busy(self)

    # --- timers -------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        phase = self._phase
        logger.debug("%s of %s timed out", phase.value, self._client)
        if phase is _Phase.HANDSHAKE:
            self._close(notify=False)
        elif phase is _Phase.HEAD:
            self._reject(
                408, f"the request head did not arrive within {self._policy.head_timeout:g} s"
            )
        elif phase is _Phase.BODY:
            self._reject(
                408, f"the request body did not arrive within {self._policy.body_timeout:g} s"
            )
        else:  # keep-alive: a quiet close (RFC 9112 9.5)
            self._close()


def _address(info: object) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None
