"""An asyncio HTTPS server for ASGI 3 apps: HTTP/1.1 by h11, TLS by pyOpenSSL over memory BIOs.

Owns the listeners, the set of open connections and the order in which the server closes:
stop listening, let requests in flight finish, close connections, run the app's shutdown.
Each connection is a ``devprov.http.connection.HttpsConnection`` (TLS pumping, HTTP/1.1
framing, keep-alive, timeouts, the request body limit, the answers given without the app); a
request as the app sees it is ``devprov.http.cycle``; the ASGI lifespan is
``devprov.http.lifespan``. TLS, and why client certificates are collected rather than verified
during the handshake, is ``devprov.transport.tls``; the chain reaches the app in
``scope["extensions"]["tls"]``.

Limits and timeouts come from one :class:`devprov.transport.policy.ConnectionPolicy`, and each
new connection is admitted by a :class:`devprov.transport.gate.ConnectionGate` before anything
is spent on it: past the cap it is closed at once, without a TLS handshake and without a log
line of its own (the gate logs counts, once per interval).

The public names are here: :class:`HttpsServer`, the exceptions it and its apps meet and the
ASGI type aliases.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, cast

from OpenSSL import SSL

from devprov.core.error import DevprovError
from devprov.http.asgi import AsgiApp, Message, Receive, Scope, Send
from devprov.http.connection import HttpsConnection
from devprov.http.cycle import ClientDisconnected
from devprov.http.lifespan import Lifespan, LifespanStartupFailed
from devprov.http.listener import CannotListenError, PortInUseError, bind_listeners
from devprov.http.websocket import WebSocketRoute
from devprov.transport.accept import ACCEPT_FAILED, Listening, start_serving
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.tls import TlsContexts

__all__ = [
    "AsgiApp",
    "CannotListenError",
    "ClientDisconnected",
    "HttpsServer",
    "LifespanStartupFailed",
    "Message",
    "PortInUseError",
    "Receive",
    "Scope",
    "Send",
    "WebSocketRoute",
]

# The server's one logger: operators configure it by this name, whichever module logs.
logger = logging.getLogger("devprov.http.server")

# close(): how long requests in flight get before their connections are cut.
SHUTDOWN_GRACE_SECONDS = 10.0

# What asyncio's accept loop reports when accept() fails for want of descriptors or memory
# (transport.accept.ACCEPT_FAILED, devprov's own acceptor on uvloop too). It logs it with a
# traceback, once per pending connection and again after each 1 s pause (measured: about 700 KiB
# of log a second); the server counts these in its gate instead.
_ACCEPT_FAILED = ACCEPT_FAILED
# After such a failure asyncio retries accepting a second later (BaseSelectorEventLoop's
# _start_serving, a private name); a retry that outlives the listener fails on its closed socket
# and would be logged with a traceback too. It is noise: the listener is gone on purpose.
_ACCEPT_RETRY = "_start_serving"


class HttpsServer:
    """Serves one ASGI 3 app over HTTPS on any number of listeners, without threads.

    ``context`` is a :class:`devprov.transport.tls.TlsContexts` (from
    :func:`devprov.transport.tls.server_contexts`, whose session cache is bounded) or one context from
    :func:`devprov.transport.tls.build_server_context`. ``policy`` holds the connection cap and the
    timeouts of every phase (its defaults without one); ``gate`` admits its connections, shared
    with the process's other endpoints (a gate of its own without one). Request bodies over ``max_body_bytes``
    get 413, request heads over ``max_header_bytes`` get 431. ``upgrades`` maps request paths
    (percent-decoded, without the query) to their WebSocket routes, one per subprotocol: a
    request for one is upgraded or refused, never given to the app (``devprov.http.websocket``).
    """

    def __init__(
        self,
        app: AsgiApp,
        context: SSL.Context | TlsContexts,
        *,
        policy: ConnectionPolicy | None = None,
        gate: ConnectionGate | None = None,
        max_body_bytes: int = 96 * 1024,
        max_header_bytes: int = 16 * 1024,
        upgrades: Mapping[str, Sequence[WebSocketRoute]] | None = None,
    ) -> None:
        self.app = app
        self.contexts = context if isinstance(context, TlsContexts) else TlsContexts.fixed(context)
        self.policy = policy or ConnectionPolicy()
        # One gate per process: the MQTT endpoint's connections count against the same cap.
        self.gate = gate or ConnectionGate(self.policy)
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.upgrades: Mapping[str, Sequence[WebSocketRoute]] = dict(upgrades or {})
        self._servers: list[Listening] = []
        self._connections: set[HttpsConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifespan: Lifespan | None = None
        self._drained = asyncio.Event()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0 picks a port) and return the port bound.

        May be called again for more listeners. The first call runs the app's lifespan startup
        and raises :class:`LifespanStartupFailed` if the app reports a failure. Raises
        :class:`PortInUseError` or :class:`CannotListenError` when the address cannot be bound.
        """
        await self._start_lifespan()
        try:
            listeners = bind_listeners(host, port)
        except DevprovError:
            if not self._servers and self._lifespan is not None:
                # Nothing listens: end the startup just run, as close() would have.
                await self._lifespan.shutdown()
                self._lifespan = None
            raise
        await self.serve_on(listeners)
        return int(listeners[0].getsockname()[1])

    async def serve_on(self, listeners: list[socket.socket]) -> None:
        """Accept on sockets that already listen: bound by :func:`bind_listeners` in this process
        or in the one that passed them on (``devprov serve --workers``). The server owns them
        from now on and closes them in close()."""
        await self._start_lifespan()
        loop = asyncio.get_running_loop()
        self._watch_accept_failures(loop)
        for listener in listeners:
            self._servers.append(await start_serving(self._accept, listener))

    async def _start_lifespan(self) -> None:
        if self._closed:
            raise RuntimeError("the server is closed")
        if self._lifespan is None:
            self._lifespan = Lifespan(self.app)
            await self._lifespan.startup()

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
        self.gate.close()

    # --- admission ----------------------------------------------------------------------------

    def _accept(self) -> asyncio.Protocol:
        """The protocol for a connection just accepted: refused at once past the cap."""
        if not self.gate.make_room():
            return _Refused()
        connection = HttpsConnection(self)
        self.gate.add(connection)
        return connection

    def _watch_accept_failures(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count failed accepts instead of letting asyncio log each; hand on everything else.

        The handler stays on the loop after close(): asyncio's retries may still fire then.
        """
        if self._loop is loop:
            return
        self._loop = loop
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            message = str(context.get("message", ""))
            if message == _ACCEPT_FAILED:
                self.gate.accept_failed()
            elif _ACCEPT_RETRY in message and self._closed:
                logger.debug("an accept retry outlived its listener: %s", context.get("exception"))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

    # --- for its connections (connection.Server) ----------------------------------------------

    @property
    def closed(self) -> bool:
        """True once close() has begun."""
        return self._closed

    def track(self, connection: HttpsConnection) -> None:
        """A connection opened: close() will wait for it."""
        self._connections.add(connection)

    def forget(self, connection: HttpsConnection) -> None:
        """A connection closed."""
        self.gate.release(connection)
        self._connections.discard(connection)
        if self._closed and not self._connections:
            self._drained.set()

    def handshake_done(self, connection: HttpsConnection, chain_bytes: int) -> None:
        """A handshake finished: charge its session to the cache, retire an old generation."""
        if self.contexts.charge(connection.generation, chain_bytes):
            current = self.contexts.generation
            for other in list(self._connections):
                if other.generation < current:
                    other.retire()

    def spawn(self, coroutine: Awaitable[None]) -> None:
        """Run a request's app call as a task; close() cancels those still running at the end."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request_state(self) -> dict[str, Any]:
        """ASGI lifespan state: each request gets a shallow copy of what startup left there."""
        return dict(self._lifespan.state) if self._lifespan is not None else {}


class _Refused(asyncio.Protocol):
    """A connection past the cap: closed as soon as it is made, before any TLS."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()
