"""The TLS stream server (MQTT's listener) behind a load balancer: the PROXY header's client is
the session's peer; without a header, a bad one, or from an unlisted peer, no session opens."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from devprov.http.listener import bind_listeners
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Carrier, Peer, StreamSession
from devprov.transport.stream_server import TlsStreamServer
from devprov.transport.tls import TlsContexts, build_server_context
from tests.http.conftest import HOST, Pki, build_pki, client_context
from tests.http.test_proxy_header import v2_header

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
ELSEWHERE = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"))


class _SayPeer:
    """A session that answers any bytes with the peer's address and port."""

    def __init__(self, carrier: Carrier, peer: Peer) -> None:
        self.carrier, self.peer = carrier, peer

    def data_received(self, data: bytes) -> None:
        self.carrier.send(repr(self.peer.address).encode())

    def eof_received(self) -> None: ...
    def connection_lost(self) -> None: ...
    def shut_down(self) -> None:
        self.carrier.close()


@asynccontextmanager
async def serving(pki: Pki, proxy_from: tuple[ipaddress.IPv4Network, ...]) -> AsyncIterator[int]:
    policy = ConnectionPolicy(max_connections=20, handshake_timeout=1.0, proxy_from=proxy_from)
    contexts = TlsContexts.fixed(build_server_context(pki.server_chain_file, pki.server_key_file))

    def opener(carrier: Carrier, peer: Peer) -> StreamSession:
        return _SayPeer(carrier, peer)

    server = TlsStreamServer(opener, contexts, policy=policy, gate=ConnectionGate(policy))
    listeners = bind_listeners(HOST, 0)
    await server.serve_on(listeners)
    try:
        yield int(listeners[0].getsockname()[1])
    finally:
        await server.close()


def _peer_seen(port: int, pki: Pki, prefix: bytes) -> str | None:
    """The peer the session reports after ``prefix`` and TLS, or None if no session opened."""
    raw = socket.create_connection((HOST, port), timeout=5)
    raw.sendall(prefix)
    try:
        with client_context(pki).wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(b"?")
            return tls.recv(200).decode() or None
    except (ssl.SSLError, ConnectionError):
        return None


@pytest.mark.parametrize(
    ("proxy_from", "prefix", "seen"),
    [
        pytest.param(
            LOOPBACK,
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40001 8883\r\n",
            "('203.0.113.7', 40001)",
            id="ok/v1-ipv4",
        ),
        pytest.param(
            LOOPBACK, v2_header("2001:db8::9", 40004), "('2001:db8::9', 40004)", id="ok/v2-ipv6"
        ),
        pytest.param(
            LOOPBACK,
            v2_header("2001:db8::9", 40004, command=0),
            "('127.0.0.1',",
            id="ok/v2-local-keeps-socket",
        ),
        pytest.param((), b"", "('127.0.0.1',", id="ok/no-proxy-from"),
        pytest.param(LOOPBACK, b"", None, id="fail/listed-without-header"),
        pytest.param(LOOPBACK, b"PROXY TCP4 203.0.113.7\r\n", None, id="fail/malformed"),
        pytest.param(ELSEWHERE, v2_header("198.51.100.9", 40003), None, id="fail/from-unlisted"),
    ],
)
def test_the_session_peer_comes_from_the_header_of_a_listed_peer_only(
    pki: Pki, proxy_from: tuple[ipaddress.IPv4Network, ...], prefix: bytes, seen: str | None
) -> None:
    async def scenario() -> str | None:
        async with serving(pki, proxy_from) as port:
            return await asyncio.to_thread(_peer_seen, port, pki, prefix)

    answer = asyncio.run(scenario())
    if seen is None:
        assert answer is None
    else:
        assert answer is not None and answer.startswith(seen)
