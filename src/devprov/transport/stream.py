"""Byte-stream sessions and what carries them: the seam between a protocol spoken over a
connection (MQTT) and the connection that carries its bytes.

Two carriers exist: a TLS connection of its own (:mod:`devprov.transport.stream_server`, MQTT
on 8883) and the binary messages of a WebSocket inside an HTTPS connection
(:mod:`devprov.http.websocket`, MQTT at ``/$iothub/websocket`` on the HTTPS port). A protocol
implements :class:`StreamSession` once and runs over either; a :data:`StreamOpener` makes one
session per connection, once the carrier knows who its peer is.

Nothing here knows of DPS or of MQTT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Peer:
    """Who is at the other end, as the carrier saw it when the session was opened."""

    address: tuple[str, int] | None  # the client's IP address and port
    chain_der: tuple[bytes, ...] = ()  # the TLS client chain as presented, leaf first
    transport: str = "tls"  # "tls", or "websocket" for a session inside a WebSocket


class Carrier(Protocol):
    """What a session may ask of the connection that carries it."""

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the peer, in order; it leaves within this turn of the event loop.
        Ignored once the carrier is closing."""

    def close(self) -> None:
        """End the connection cleanly (TLS close_notify; WebSocket close frame, code 1000) after
        what was sent so far; the session's :meth:`StreamSession.connection_lost` follows."""

    def idle(self) -> None:
        """The session waits on its peer: the connection gate may evict it to make room."""

    def busy(self) -> None:
        """The session works on its peer's request: the gate leaves it alone."""


class StreamSession(Protocol):
    """One connection's protocol, fed the bytes its carrier received."""

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer, in order, split anywhere."""

    def eof_received(self) -> None:
        """The peer will send nothing more (TCP FIN, TLS close_notify, WebSocket close)."""

    def connection_lost(self) -> None:
        """The carrier is closed, whoever closed it; nothing may be sent any more."""

    def shut_down(self) -> None:
        """The server is stopping: finish the request at work, if any, then close the carrier."""


# Makes the session of a new connection; the carrier then feeds it.
StreamOpener = Callable[[Carrier, Peer], StreamSession]
