"""The HTTPS server behind a load balancer: a PROXY header from a --proxy-from peer replaces the
client address the app sees; without one, malformed, late, or from anyone else, no request."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct
import time

import pytest

from devprov.transport.policy import ConnectionPolicy
from devprov.transport.proxy import V2_SIGNATURE
from tests.http.conftest import (
    HOST,
    EchoApp,
    Pki,
    client_context,
    get,
    parse_reply,
    read_all,
    run,
    serving,
)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
ELSEWHERE = (ipaddress.ip_network("10.0.0.0/8"),)


def _policy(proxy_from: tuple[ipaddress.IPv4Network, ...]) -> ConnectionPolicy:
    return ConnectionPolicy(max_connections=50, handshake_timeout=1.0, proxy_from=proxy_from)


def v2_header(address: str, port: int, *, command: int = 1) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        family, dst = 0x11, ipaddress.IPv4Address("10.0.0.1").packed
    else:
        family, dst = 0x21, ipaddress.IPv6Address("2001:db8::1").packed
    block = ip.packed + dst + struct.pack("!HH", port, 443)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def _request(port: int, pki: Pki, header: bytes, *, pieces: int = 1) -> tuple[int, bytes]:
    """Send ``header`` (in ``pieces`` writes), then a GET over TLS; the status and the body."""
    raw = socket.create_connection((HOST, port), timeout=5)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    step = max(1, -(-len(header) // pieces))
    for start in range(0, len(header), step):
        raw.sendall(header[start : start + step])
        time.sleep(0.05)  # a separate read for each piece, most likely; the parser is split-proof
    with client_context(pki).wrap_socket(raw, server_hostname=HOST) as tls:
        tls.sendall(get())
        reply = parse_reply(read_all(tls))
    return reply.status, reply.body


def _closed_without_tls(port: int, pki: Pki, prefix: bytes) -> bool:
    """True if, after ``prefix``, the server ends the connection instead of completing TLS."""
    raw = socket.create_connection((HOST, port), timeout=5)
    raw.sendall(prefix)
    try:
        with client_context(pki).wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(get())
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


@pytest.mark.parametrize(
    ("header", "client"),
    [
        pytest.param(
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40001 443\r\n",
            ("203.0.113.7", 40001),
            id="ok/v1-ipv4",
        ),
        pytest.param(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40002 443\r\n",
            ("2001:db8::7", 40002),
            id="ok/v1-ipv6",
        ),
        pytest.param(v2_header("198.51.100.9", 40003), ("198.51.100.9", 40003), id="ok/v2-ipv4"),
        pytest.param(v2_header("2001:db8::9", 40004), ("2001:db8::9", 40004), id="ok/v2-ipv6"),
    ],
)
@pytest.mark.parametrize("pieces", [1, 3], ids=["whole", "split"])
def test_the_header_names_the_client_the_app_sees(
    pki: Pki, header: bytes, client: tuple[str, int], pieces: int
) -> None:
    app = EchoApp()

    async def scenario() -> None:
        async with serving(pki, app, policy=_policy(LOOPBACK)) as (_server, port):
            status, _ = await asyncio.to_thread(_request, port, pki, header, pieces=pieces)
            assert status == 200

    run(scenario)
    assert tuple(app.scopes[-1]["client"]) == client


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(v2_header("198.51.100.9", 40005, command=0), id="ok/v2-local"),
        pytest.param(b"PROXY UNKNOWN\r\n", id="ok/v1-unknown"),
    ],
)
def test_a_local_header_keeps_the_sockets_address(pki: Pki, header: bytes) -> None:
    app = EchoApp()

    async def scenario() -> None:
        async with serving(pki, app, policy=_policy(LOOPBACK)) as (_server, port):
            status, _ = await asyncio.to_thread(_request, port, pki, header)
            assert status == 200

    run(scenario)
    assert app.scopes[-1]["client"][0] == "127.0.0.1"


def test_without_proxy_from_the_socket_address_stands(pki: Pki) -> None:
    """The control: no --proxy-from, a plain TLS client, its own address."""
    app = EchoApp()

    async def scenario() -> None:
        async with serving(pki, app, policy=_policy(())) as (_server, port):
            status, _ = await asyncio.to_thread(_request, port, pki, b"")
            assert status == 200

    run(scenario)
    assert app.scopes[-1]["client"][0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("proxy_from", "prefix"),
    [
        pytest.param(
            ELSEWHERE, b"PROXY TCP4 203.0.113.7 10.0.0.1 40001 443\r\n", id="fail/v1-from-unlisted"
        ),
        pytest.param(ELSEWHERE, v2_header("203.0.113.7", 40001), id="fail/v2-from-unlisted"),
        pytest.param(LOOPBACK, b"", id="fail/listed-without-header"),
        pytest.param(
            LOOPBACK, b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 443\r\n", id="fail/malformed-v1"
        ),
        pytest.param(LOOPBACK, V2_SIGNATURE + b"\x21\x11\xff\xff", id="fail/v2-over-bound"),
    ],
)
def test_no_request_is_served_without_a_valid_header_from_a_listed_peer(
    pki: Pki, proxy_from: tuple[ipaddress.IPv4Network, ...], prefix: bytes
) -> None:
    app = EchoApp()

    async def scenario() -> None:
        async with serving(pki, app, policy=_policy(proxy_from)) as (_server, port):
            assert await asyncio.to_thread(_closed_without_tls, port, pki, prefix)

    run(scenario)
    assert app.calls == 0


def test_a_header_that_stops_half_way_is_closed_at_the_handshake_timeout(pki: Pki) -> None:
    app = EchoApp()

    def half_a_header(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=5) as raw:
            raw.sendall(b"PROXY TCP4 203.0.113.7 ")
            return raw.recv(1)  # b"" once the server gives up

    async def scenario() -> None:
        async with serving(pki, app, policy=_policy(LOOPBACK)) as (server, port):
            assert await asyncio.to_thread(half_a_header, port) == b""
            assert server.gate.open == 0

    run(scenario)
    assert app.calls == 0
