"""A TLS server whose connections each carry one byte-stream session (MQTT on 8883).

Each accepted connection is admitted by the process's :class:`ConnectionGate` before anything is
spent on it, runs its TLS handshake over memory BIOs (:class:`devprov.transport.tls.TlsSession`,
client certificates collected, not verified) within ``policy.handshake_timeout``, and then
becomes the :class:`devprov.transport.stream.Carrier` of the session its
:data:`devprov.transport.stream.StreamOpener` makes, with the presented chain in the
:class:`devprov.transport.stream.Peer`. From then on the session owns timing (its own protocol's
timeouts); the connection only carries bytes, tells the gate what the session says, and ends
cleanly: close_notify whenever the server closes and TLS has not failed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from devprov.transport.accept import Listening, start_serving
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.proxy import (
    MalformedProxyHeader,
    ProxyPreamble,
)
from devprov.transport.stream import Peer, StreamOpener, StreamSession
from devprov.transport.tls import TlsContexts, TlsError, TlsSession

logger = logging.getLogger("devprov.transport")

# close(): how long sessions at work get to finish before their connections are cut.
SHUTDOWN_GRACE_SECONDS = 10.0


class TlsStreamServer:
    """Serves a :data:`StreamOpener` over TLS on listening sockets it is given."""

    def __init__(
        self,
        opener: StreamOpener,
        contexts: TlsContexts,
        *,
        policy: ConnectionPolicy,
        gate: ConnectionGate,
    ) -> None:
        self.opener = opener
        self.contexts = contexts
        self.policy = policy
        self.gate = gate
        self._servers: list[Listening] = []
        self._connections: set[TlsStreamConnection] = set()
        self._drained = asyncio.Event()
        self.closed = False

    async def serve_on(self, listeners: list[socket.socket]) -> None:
        """Accept on sockets that already listen (``devprov.http.listener.bind_listeners``);
        the server owns them from now on and closes them in close()."""
        for listener in listeners:
            self._servers.append(await start_serving(self._accept, listener))

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for server in self._servers for s in server.sockets]

    @property
    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for s in self.sockets]

    @property
    def connections(self) -> int:
        """Connections open now, in their handshake or carrying a session."""
        return len(self._connections)

    async def close(self) -> None:
        """Stop listening, let sessions finish what they are doing, close every connection."""
        self.closed = True
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
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _accept(self) -> asyncio.Protocol:
        if not self.gate.make_room():
            return _Refused()
        connection = TlsStreamConnection(self)
        self.gate.add(connection)
        return connection

    # --- for its connections --------------------------------------------------------------

    def track(self, connection: TlsStreamConnection) -> None:
        self._connections.add(connection)

    def forget(self, connection: TlsStreamConnection) -> None:
        self.gate.release(connection)
        self._connections.discard(connection)
        if self.closed and not self._connections:
            self._drained.set()

    def handshake_done(self, connection: TlsStreamConnection, chain_bytes: int) -> None:
        """Charge the session cache; a fresh TLS context needs no retiring here: a stream
        connection holds its session for as long as the session lasts."""
        self.contexts.charge(connection.generation, chain_bytes)


class TlsStreamConnection(asyncio.Protocol):
    """One connection: the TLS handshake, then the carrier of one stream session."""

    def __init__(self, server: TlsStreamServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._tls = TlsSession(server.contexts.context)
        self.generation = server.contexts.generation
        self._transport = cast(asyncio.Transport, None)
        self._address: tuple[str, int] | None = None
        self._session: StreamSession | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = self._flush_pending = self._lost = False
        # The PROXY protocol header to read before TLS, from a --proxy-from peer only.
        self._proxy = ProxyPreamble(None, ())

    # --- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._address = (str(peer[0]), int(peer[1]))
        # Read within the handshake's timeout, like TLS.
        self._proxy = ProxyPreamble(self._address, self._server.policy.proxy_from)
        self._server.track(self)
        self._timer = self._loop.call_later(
            self._server.policy.handshake_timeout, self._handshake_timed_out
        )
        if self._server.closed:
            self.shut_down()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._proxy.pending:
            try:
                data = self._proxy.feed(data)
            except MalformedProxyHeader as exc:
                logger.debug("bad PROXY header from %s: %s", self._address, exc)
                self._close(notify=False)
                return
            self._address = self._proxy.address
            if not data:
                return
        tls = self._tls
        tls.receive(data)
        try:
            if not tls.handshake_complete:
                if not tls.handshake():
                    self._flush()
                    return
                self._opened()
            plaintext, closed = tls.read()
        except TlsError as exc:
            logger.debug("TLS failure from %s: %s", self._address, exc)
            self._flush()
            self._close(notify=False)
            return
        session = self._session
        if session is not None:
            if plaintext:
                session.data_received(plaintext)
            if closed and not self._closing:
                session.eof_received()
                self.close()
        self._flush_soon()

    def eof_received(self) -> bool | None:
        if self._session is not None and not self._closing:
            self._session.eof_received()
        return None  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._session is not None and not self._lost:
            self._lost = True
            self._session.connection_lost()
            self._session = None  # the session refers back to this carrier: free both now
        self._server.forget(self)

    # --- Carrier ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._tls.write(data)
        except TlsError:
            logger.debug("TLS write to %s failed", self._address, exc_info=True)
            self._close(notify=False)
            return
        self._flush_soon()

    def close(self) -> None:
        self._close(notify=True)

    def idle(self) -> None:
        self._server.gate.idle(self)

    def busy(self) -> None:
        self._server.gate.busy(self)

    # --- the server's requests --------------------------------------------------------------

    def evict(self) -> None:
        """The gate gave this slot to a newer connection."""
        self._close(notify=self._tls.handshake_complete)

    def shut_down(self) -> None:
        """The server stops: the session finishes its request, or the handshake is cut."""
        if self._session is not None:
            self._session.shut_down()
        else:
            self._close(notify=False)

    def abort(self) -> None:
        self._transport.abort()

    # --- internals --------------------------------------------------------------------------

    def _opened(self) -> None:
        self._cancel_timer()
        chain = tuple(self._tls.extension()["devprov.client_chain_der"])
        self._server.handshake_done(self, sum(len(der) for der in chain))
        self._session = self._server.opener(self, Peer(self._address, chain, "tls"))

    def _handshake_timed_out(self) -> None:
        self._timer = None
        logger.debug("TLS handshake of %s timed out", self._address)
        self._close(notify=False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush_soon(self) -> None:
        # One socket write per turn of the loop (devprov.http.connection says why).
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self._tls.outgoing()
        if data and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self, *, notify: bool) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if notify and self._tls.handshake_complete:
            self._tls.close()
        self._flush()
        self._transport.close()


class _Refused(asyncio.Protocol):
    """A connection past the cap: closed as soon as it is made, before any TLS."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()
