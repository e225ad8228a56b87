"""An asyncio HTTPS server for ASGI 3 apps: HTTP/1.1 by h11, TLS by pyOpenSSL over memory BIOs.

Owns the listeners, the set of open connections and the order in which the server closes:
stop listening, let requests in flight finish, close connections, run the app's shutdown.
Each connection is a ``devprov.http.connection.HttpsConnection`` (TLS pumping, HTTP/1.1
framing, keep-alive, timeouts, the request body limit, the answers given without the app); a
request as the app sees it is ``devprov.http.cycle``; the ASGI lifespan is
``devprov.http.lifespan``. TLS, and why client certificates are collected rather than verified
during the handshake, is ``devprov.http.tls``; the chain reaches the app in
``scope["extensions"]["tls"]``.

The public names are here: :class:`HttpsServer`, the exceptions it and its apps meet and the
ASGI type aliases.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any

from OpenSSL import SSL

from devprov.core.error import DevprovError
from devprov.http.asgi import AsgiApp, Message, Receive, Scope, Send
from devprov.http.connection import HttpsConnection
from devprov.http.cycle import ClientDisconnected
from devprov.http.lifespan import Lifespan, LifespanStartupFailed
from devprov.http.listener import CannotListenError, PortInUseError, bind_listeners

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
]

# close(): how long requests in flight get before their connections are cut.
SHUTDOWN_GRACE_SECONDS = 10.0


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
        self._connections: set[HttpsConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifespan: Lifespan | None = None
        self._drained = asyncio.Event()
        self._closed = False

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
        for listener in listeners:
            server = await loop.create_server(lambda: HttpsConnection(self), sock=listener)
            self._servers.append(server)

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
        self._connections.discard(connection)
        if self._closed and not self._connections:
            self._drained.set()

    def spawn(self, coroutine: Awaitable[None]) -> None:
        """Run a request's app call as a task; close() cancels those still running at the end."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request_state(self) -> dict[str, Any]:
        """ASGI lifespan state: each request gets a shallow copy of what startup left there."""
        return dict(self._lifespan.state) if self._lifespan is not None else {}
