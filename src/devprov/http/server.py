"""An asyncio HTTPS server for ASGI 3 apps: HTTP/1.1 by h11, TLS by pyOpenSSL over memory BIOs.

Owns the listeners, one protocol object per connection (TLS pumping, HTTP/1.1 framing,
keep-alive, timeouts, the request body limit, the answers given without the app) and the ASGI
lifespan. TLS, and why client certificates are collected rather than verified during the
handshake, is ``devprov.http.tls``; the chain reaches the app in ``scope["extensions"]["tls"]``.
Errors the server answers itself (400, 413, 431, 500) use DPS's error body; the app's own errors
are the app's business.

Longer than the house guide of about 400 lines on purpose: the server, a connection and its
request cycle share one state machine (h11's states, timers, flow control, closing), and its
invariants are easier to check in one place. The lifespan runner is the part that could move out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import h11
from OpenSSL import SSL

from devprov.core.error import BodyTooLargeError, InternalError, MalformedRequestError
from devprov.http.tls import TlsError, TlsSession

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)

# After an early answer (400, 413, 500) the client may still be sending. Closing with unread
# input makes the kernel answer with RST, which can destroy the answer before the client read
# it (RFC 9112 9.6), so the server half-closes and drops input for this long first.
LINGER_SECONDS = 2.0
# Body bytes buffered for an app that has not called receive() before reading pauses.
BODY_HIGH_WATER = 64 * 1024
# close(): how long requests in flight get before their connections are cut.
SHUTDOWN_GRACE_SECONDS = 10.0

# h11 sends an empty reason phrase unless given one; some clients print or log it.
_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}

# DPS error numbers are <HTTP status><3-digit sub-code> (core.error); 431 has no leaf there.
_ERROR_NUMBERS = {
    400: MalformedRequestError.number,
    413: BodyTooLargeError.number,
    500: InternalError.number,
}


class ClientDisconnected(OSError):
    """send() after the connection closed (ASGI HTTP spec 2.4 asks for an OSError)."""


class LifespanStartupFailed(RuntimeError):
    """The app answered lifespan.startup with lifespan.startup.failed."""


class HttpsServer:
    """Serves one ASGI 3 app over HTTPS on any number of listeners, without threads.

    ``context`` comes from :func:`devprov.http.tls.build_server_context`. Limits: request bodies
    over ``max_body_bytes`` get 413, request heads over ``max_header_bytes`` get 431; a TLS
    handshake has ``handshake_timeout`` seconds, a connection may wait ``idle_timeout`` seconds
    for its next request and a request body may stall that long.
    """

    def __init__(
        self,
        app: AsgiApp,
        context: SSL.Context,
        *,
        max_body_bytes: int = 96 * 1024,
        handshake_timeout: float = 10,
        idle_timeout: float = 60,
        max_header_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        self.context = context
        self.max_body_bytes = max_body_bytes
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_header_bytes = max_header_bytes
        self._servers: list[asyncio.Server] = []
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifespan: _Lifespan | None = None
        self._drained = asyncio.Event()
        self._closed = False

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen on ``host``:``port`` (0 picks a port) and return the port bound.

        May be called again for more listeners. The first call runs the app's lifespan startup
        and raises :class:`LifespanStartupFailed` if the app reports a failure.
        """
        if self._closed:
            raise RuntimeError("the server is closed")
        if self._lifespan is None:
            self._lifespan = _Lifespan(self.app)
            await self._lifespan.startup()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=reuse_port
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return [s for server in self._servers for s in server.sockets]

    @property
    def ports(self) -> list[int]:
        """The ports listened on, one per listening socket."""
        return [int(s.getsockname()[1]) for s in self.sockets]

    async def close(self) -> None:
        """Stop listening, let requests in flight finish, close connections, run shutdown."""
        self._closed = True
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.shut_down()
        if self._connections:
            try:
                await asyncio.wait_for(self._drained.wait(), SHUTDOWN_GRACE_SECONDS)
            except TimeoutError:
                for connection in list(self._connections):
                    connection.abort()
                await self._drained.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._lifespan is not None:
            await self._lifespan.shutdown()

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if self._closed and not self._connections:
            self._drained.set()

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _state(self) -> dict[str, Any]:
        # ASGI lifespan state: each request gets a shallow copy of what startup left there.
        return dict(self._lifespan.state) if self._lifespan is not None else {}


class _Connection(asyncio.Protocol):
    """One client connection: the TLS handshake, then HTTP/1.1 request cycles one at a time."""

    def __init__(self, server: HttpsServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._tls = TlsSession(server.context)
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
        self._transport = cast(asyncio.Transport, None)
        self._client: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None
        self._tls_extension: dict[str, Any] = {}
        self._cycle: _Cycle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._writable = asyncio.Event()
        self._writable.set()
        self._read_paused = self._closing = self._lingering = False
        self._peer_eof = self._shutting_down = self._flush_pending = False

    # --- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._client = _address(transport.get_extra_info("peername"))
        self._local = _address(transport.get_extra_info("sockname"))
        self._server._connections.add(self)
        self._arm(self._server.handshake_timeout)
        if self._server._closed:  # accepted while close() was already sweeping connections
            self.shut_down()

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._peer_eof:
            return
        self._last_read = self._loop.time()
        tls = self._tls
        tls.receive(data)
        try:
            if not tls.handshake_complete:
                if not tls.handshake():
                    self._flush()
                    return
                self._tls_extension = tls.extension()
                self._wait_for_request()
            plaintext, closed = tls.read()
        except TlsError as exc:
            logger.debug("TLS failure from %s: %s", self._client, exc)
            self._flush()
            self._close(notify=False)
            return
        if plaintext:
            self._h11.receive_data(plaintext)
        if closed:
            self._peer_eof = True
            self._h11.receive_data(b"")
        self._handle_events()
        # After _handle_events: the app task it may have started runs first, so session
        # tickets, the response and close_notify can leave in one write.
        self._flush_soon()

    def eof_received(self) -> bool | None:
        cycle = self._cycle
        if self._lingering or cycle is None or cycle.response_complete:
            return None
        # A half-close after a request still gets its response; h11 then sees the end.
        if not self._peer_eof:
            self._peer_eof = True
            self._h11.receive_data(b"")
            self._handle_events()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._disarm()
        if self._cycle is not None:
            self._cycle.disconnect()
        self._writable.set()
        self._server._forget(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- HTTP events ------------------------------------------------------------------------

    def _handle_events(self) -> None:
        while not self._closing:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                logger.debug("malformed request from %s: %s", self._client, exc)
                self._reject(exc.error_status_hint, "malformed HTTP request")
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:  # a pipelined request waits for the current response
                self._pause_reading()
                return
            if isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end_of_body()
            elif isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.ConnectionClosed):
                self._close()

    def _on_request(self, request: h11.Request) -> None:
        self._disarm()
        if _head_size(request) > self._server.max_header_bytes:
            # h11 bounds only heads that arrive in pieces; one that came whole is checked here.
            self._reject(431, "request head too large")
            return
        limit = self._server.max_body_bytes
        if (_content_length(request.headers) or 0) > limit:
            self._reject(413, f"request body exceeds {limit} bytes")
            return
        cycle = _Cycle(self, head=request.method == b"HEAD")
        self._cycle = cycle
        if self._h11.their_state is h11.SEND_BODY:
            self._arm(self._server.idle_timeout)  # a stalled body times out like an idle line
        self._server._spawn(self._run_app(cycle, self._scope(request)))

    def _on_data(self, data: bytes) -> None:
        cycle = cast(_Cycle, self._cycle)
        cycle.received += len(data)
        if cycle.received > self._server.max_body_bytes:
            if self._h11.our_state is h11.SEND_RESPONSE:
                self._reject(413, f"request body exceeds {self._server.max_body_bytes} bytes")
            else:  # the response is under way: nothing can be said any more
                self._close()
        elif not cycle.response_complete:  # else: dropping a body the app did not read
            cycle.feed(data)

    def _on_end_of_body(self) -> None:
        cycle = cast(_Cycle, self._cycle)
        if cycle.response_complete:
            self._next_cycle()
        else:
            self._disarm()
            cycle.end_body()

    def _on_response_complete(self) -> None:
        if self._closing:
            return
        if self._h11.our_state is h11.MUST_CLOSE:
            self._close(linger=self._h11.their_state is h11.SEND_BODY)
        elif self._h11.their_state is h11.DONE:
            self._next_cycle()
            self._handle_events()
        else:  # drop the rest of a body the app did not read, then serve the next request
            self._resume_reading()

    def _next_cycle(self) -> None:
        self._h11.start_next_cycle()
        self._cycle = None
        self._resume_reading()
        self._wait_for_request()

    def _wait_for_request(self) -> None:
        if self._shutting_down:
            self._close()
        else:
            # Not re-armed per byte: a request head must arrive whole within idle_timeout.
            self._arm(self._server.idle_timeout)

    def _scope(self, request: h11.Request) -> Scope:
        raw_path, _, query = request.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "https",
            "path": unquote(raw_path.decode("ascii")),  # h11 admits only ASCII targets
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),  # h11 lowercases the names
            "client": self._client,
            "server": self._local,
            "state": self._server._state(),
            "extensions": {"tls": dict(self._tls_extension)},
        }

    # --- the app ----------------------------------------------------------------------------

    async def _run_app(self, cycle: _Cycle, scope: Scope) -> None:
        try:
            await self._server.app(scope, cycle.receive, cycle.send)
        except Exception:
            if cycle.disconnected:
                logger.debug("ASGI app raised after its client went away", exc_info=True)
            else:
                logger.exception("ASGI app raised on %s %r", scope["method"], scope["path"])
            self._app_failed(cycle)
            return
        if not cycle.response_complete and not cycle.disconnected:
            logger.error("ASGI app returned without completing its response")
            self._app_failed(cycle)

    def _app_failed(self, cycle: _Cycle) -> None:
        if cycle is not self._cycle or self._closing:
            return
        if self._h11.our_state is h11.SEND_RESPONSE:
            self._reject(500, "internal server error")
        else:
            cycle.disconnect()
            self._close()

    async def write_response(self, cycle: _Cycle, start: Message, body: bytes, more: bool) -> None:
        """Send the head on the first call, then ``body``; the end too unless ``more``."""
        events: list[h11.Event] = []
        if not cycle.head_sent:
            events.append(self._response_head(start, body, more, cycle.head))
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

    def _response_head(self, start: Message, body: bytes, more: bool, head: bool) -> h11.Response:
        status = int(start["status"])
        headers: list[tuple[bytes, bytes]] = [
            (bytes(k), bytes(v)) for k, v in start.get("headers", ())
        ]
        names = {name.lower() for name, _ in headers}
        framed = b"content-length" in names or b"transfer-encoding" in names
        if not (more or head or framed) and status >= 200 and status not in (204, 304):
            # Whole body known: frame it by length rather than let h11 pick chunked.
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        # A client still waiting for 100 may never send its body (RFC 9110 10.1.1): close.
        if self._shutting_down or self._h11.they_are_waiting_for_100_continue:
            headers.append((b"connection", b"close"))
        return h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))

    def send_continue(self) -> None:
        """The app wants the body: answer ``Expect: 100-continue`` if the client waits."""
        if self._h11.they_are_waiting_for_100_continue and not self._closing:
            continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            self._send_plaintext(self._serialize([continue_]))
        self._resume_reading()

    # --- writing and closing ----------------------------------------------------------------

    def _reject(self, status: int, message: str) -> None:
        """Answer without (or instead of) the app, then close."""
        if self._cycle is not None:
            self._cycle.disconnect()
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = _error_body(status, message)
            response = h11.Response(
                status_code=status,
                reason=_REASONS.get(status, b""),
                headers=[
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"),
                ],
            )
            self._send_plaintext(
                self._serialize([response, h11.Data(data=body), h11.EndOfMessage()])
            )
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
            self._lingering = True
            transport.write_eof()
            self._resume_reading()
            self._timer = self._loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def shut_down(self) -> None:
        """Server closing: close now if idle or lingering, else after the current response."""
        self._shutting_down = True
        if self._lingering:
            self._transport.close()
        elif self._cycle is None:
            self._close(notify=self._tls.handshake_complete)

    def abort(self) -> None:
        self._transport.abort()

    # --- timers and flow control ------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if not self._tls.handshake_complete:
            logger.debug("TLS handshake from %s timed out", self._client)
            self._close(notify=False)
            return
        if self._cycle is not None and self._h11.their_state is h11.SEND_BODY:
            # While a body is read the limit is on silence, not on the whole body.
            quiet = 0.0 if self._read_paused else self._loop.time() - self._last_read
            if quiet < self._server.idle_timeout:
                self._arm(self._server.idle_timeout - quiet)
                return
            logger.debug("request body from %s stalled", self._client)
        self._close()

    def _pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()


class _Cycle:
    """One request and its response, as the app sees them through receive() and send()."""

    __slots__ = (
        "_body",
        "_buffered",
        "_connection",
        "_event",
        "_finished",
        "_more_body",
        "_start",
        "disconnected",
        "head",
        "head_sent",
        "received",
        "response_complete",
    )

    def __init__(self, connection: _Connection, *, head: bool) -> None:
        self._connection = connection
        self._body: list[bytes] = []
        self._buffered = 0
        self._more_body = True
        self._finished = False
        self._event = asyncio.Event()
        self._start: Message | None = None
        self.head = head
        self.head_sent = self.response_complete = self.disconnected = False
        self.received = 0

    def feed(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        self._event.set()
        if self._buffered > BODY_HIGH_WATER:
            self._connection._pause_reading()

    def end_body(self) -> None:
        self._more_body = False
        self._event.set()

    def disconnect(self) -> None:
        self.disconnected = True
        self._event.set()

    def complete(self) -> None:
        self.response_complete = True
        self._event.set()

    async def receive(self) -> Message:
        while not (self.disconnected or self.response_complete):
            if self._body or not (self._more_body or self._finished):
                body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body = []
                self._buffered = 0
                self._finished = not self._more_body
                self._connection._resume_reading()
                return {"type": "http.request", "body": body, "more_body": self._more_body}
            if self._more_body:
                self._connection.send_continue()
            self._event.clear()
            await self._event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        kind = message["type"]
        if kind == "http.response.start" and self._start is None:
            self._start = message  # sent with the first body part: one record, one write
        elif kind == "http.response.body" and self._start is not None:
            if self.response_complete:
                raise RuntimeError("the response is already complete")
            await self._connection.write_response(
                self, self._start, message.get("body", b""), message.get("more_body", False)
            )
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")


class _Lifespan:
    """The app's lifespan protocol. An app that raises instead is taken not to support it."""

    def __init__(self, app: AsgiApp) -> None:
        self.state: dict[str, Any] = {}
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._started.wait()
        if self._failure is not None:
            raise LifespanStartupFailed(self._failure)

    async def shutdown(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            await self._inbox.put({"type": "lifespan.shutdown"})
            await self._stopped.wait()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self._app(scope, self._inbox.get, self._send)
        except Exception:
            if self._started.is_set():
                logger.exception("ASGI lifespan failed")
            else:  # as uvicorn's lifespan "auto": an app without lifespan raises on the scope
                logger.info("ASGI lifespan protocol appears unsupported")
                logger.debug("the app's answer to the lifespan scope", exc_info=True)
        finally:
            self._started.set()
            self._stopped.set()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            logger.error("%s: %s", kind, message.get("message", ""))
        if kind == "lifespan.startup.failed":
            self._failure = str(message.get("message", "")) or "lifespan startup failed"
        if kind.startswith("lifespan.startup."):
            self._started.set()
        elif kind.startswith("lifespan.shutdown."):
            self._stopped.set()


def _address(info: object) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is one run of digits
    return None


def _head_size(request: h11.Request) -> int:
    # The request line and header lines as sent, give or take optional whitespace.
    size = len(request.method) + len(request.target) + 12
    return size + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())


def _error_body(status: int, message: str) -> bytes:
    """DPS's error body (errorCode, trackingId, message, timestampUtc); devices see no detail."""
    now = datetime.now(UTC)
    return json.dumps(
        {
            "errorCode": _ERROR_NUMBERS.get(status, status * 1000),
            "trackingId": str(uuid.uuid4()),
            "message": message,
            "timestampUtc": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        },
        separators=(",", ":"),
    ).encode("utf-8")
