"""The PROXY protocol, versions 1 and 2: the header a TCP load balancer sends before the client's
own bytes, to say whom it is relaying (docs/operations.md#the-proxy-protocol).

A sans-I/O parser: :class:`ProxyHeaderParser` is fed bytes as they arrive, split anywhere, and
answers ``None`` until it has the whole header, then a :class:`ProxyHeader` with the
client's address (``None`` when the header says to keep the socket's: v1 ``UNKNOWN``, v2
``LOCAL``, or a v2 address family that is not TCP over IPv4 or IPv6) and the bytes that followed
the header (the start of the TLS handshake). Anything that is not a well-formed header raises
:class:`MalformedProxyHeader` as soon as the bytes received show it; the connection is then
closed. v2's TLVs are skipped: devprov needs only the source address.

Which peers may send a header at all is :func:`is_trusted_proxy`'s question; from those the
header is required, from everyone else it is not looked for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]

# v1: "PROXY " then the protocol, addresses and ports, then CRLF; the longest legal line
# ("PROXY UNKNOWN" with two IPv6 addresses and ports) is 107 bytes with its CRLF (the
# specification's section 2.1).
V1_PREFIX: Final = b"PROXY "
V1_MAX_BYTES: Final = 107

# v2: a 12-byte signature, a version and command byte, a family and transport byte, and the
# length of what follows (addresses, then TLVs), big-endian (section 2.2).
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES: Final = 16
# The length field allows 65,535 bytes; devprov accepts at most this many. The largest address
# block (two UNIX paths) is 216 bytes, and HAProxy's TLVs (unique id up to 128 bytes, TLS facts,
# the SNI name up to 255) stay well inside 2 KiB. A longer header is refused as soon as its
# length field arrives, so a peer cannot make devprov buffer 64 KiB before the handshake.
V2_MAX_LENGTH: Final = 2048

_V2_VERSION: Final = 0x2
_V2_LOCAL: Final = 0x0
_V2_PROXY: Final = 0x1
# Family and transport byte: TCP over IPv4 and over IPv6, with their address block sizes
# (source address, destination address, source port, destination port).
_V2_TCP4: Final = 0x11
_V2_TCP6: Final = 0x21
_V2_ADDRESS_BYTES: Final = {_V2_TCP4: 12, _V2_TCP6: 36}
_V2_KNOWN_FAMILIES: Final = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})

_MAX_PORT: Final = 65535


class MalformedProxyHeader(ValueError):
    """The bytes are not a PROXY protocol header devprov accepts; the connection is closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """A whole header: the client it names (None: keep the socket's) and the bytes after it."""

    source: Address | None
    rest: bytes


class ProxyHeaderParser:
    """Collects one PROXY header from the start of a connection (module docstring)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._done = False

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add ``data``; the header once whole, else None. Raises
        :class:`MalformedProxyHeader` as soon as the bytes cannot start a valid header."""
        if self._done:
            raise RuntimeError("the header was parsed already")
        self._buffer += data
        buffer = self._buffer
        if _could_start(buffer, V2_SIGNATURE):
            result = _parse_v2(buffer)
        elif _could_start(buffer, V1_PREFIX):
            result = _parse_v1(buffer)
        else:
            raise MalformedProxyHeader("the connection does not start with a PROXY header")
        if isinstance(result, ProxyHeader):
            self._done = True
            self._buffer = b""
        return result


class ProxyPreamble:
    """What a listener's connection reads before TLS: the PROXY header a peer in ``trusted``
    owes (nothing from any other peer), and the client's address it names. The one place both
    listeners (``http.connection``, ``transport.stream_server``) read it."""

    def __init__(self, address: Address | None, trusted: Iterable[Network]) -> None:
        self.address = address  # the socket's peer, then the client the header names
        owed = address is not None and is_trusted_proxy(address[0], trusted)
        self._parser = ProxyHeaderParser() if owed else None

    @property
    def pending(self) -> bool:
        """True while the header is owed and not yet whole."""
        return self._parser is not None

    def feed(self, data: bytes) -> bytes:
        """Take ``data`` while the header is pending; the bytes after it (b"" while it is still
        arriving). Raises :class:`MalformedProxyHeader` (close the connection)."""
        if self._parser is None:
            return data
        header = self._parser.feed(data)
        if header is None:
            return b""
        self._parser = None
        if header.source is not None:
            self.address = header.source
        return header.rest


def _could_start(buffer: bytes, prefix: bytes) -> bool:
    """True if ``buffer`` begins with ``prefix``, or is a beginning of it."""
    n = min(len(buffer), len(prefix))
    return buffer[:n] == prefix[:n]


def _parse_v1(buffer: bytes) -> ProxyHeader | None:
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) >= V1_MAX_BYTES:
            raise MalformedProxyHeader(f"a v1 header longer than {V1_MAX_BYTES} bytes")
        return None
    if end + 2 > V1_MAX_BYTES:
        raise MalformedProxyHeader(f"a v1 header longer than {V1_MAX_BYTES} bytes")
    line = buffer[len(V1_PREFIX) : end]
    rest = buffer[end + 2 :]
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedProxyHeader("a v1 header with bytes outside ASCII") from exc
    if text == "UNKNOWN" or text.startswith("UNKNOWN "):
        # The proxy does not know the client (a health check of its own): the receiver must
        # ignore whatever else the line holds and keep the socket's address.
        return ProxyHeader(None, rest)
    parts = text.split(" ")
    if len(parts) != 5:
        raise MalformedProxyHeader("a v1 header needs protocol, two addresses and two ports")
    protocol, source, destination, source_port, destination_port = parts
    version = {"TCP4": 4, "TCP6": 6}.get(protocol)
    if version is None:
        raise MalformedProxyHeader("a v1 header's protocol must be TCP4, TCP6 or UNKNOWN")
    address = _v1_address(source, version)
    _v1_address(destination, version)
    port = _v1_port(source_port)
    _v1_port(destination_port)
    return ProxyHeader((address, port), rest)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise MalformedProxyHeader("a v1 header with an address that is not an IP") from exc
    if address.version != version:
        raise MalformedProxyHeader("a v1 header whose address does not match its protocol")
    return str(address)


def _v1_port(text: str) -> int:
    # Decimal digits, no sign, no leading zero (the specification's "0..65535" in plain digits).
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise MalformedProxyHeader("a v1 header with a port that is not a plain number")
    port = int(text)
    if port > _MAX_PORT:
        raise MalformedProxyHeader("a v1 header with a port over 65535")
    return port


def _parse_v2(buffer: bytes) -> ProxyHeader | None:
    if len(buffer) < V2_FIXED_BYTES:
        return None
    version, command = buffer[12] >> 4, buffer[12] & 0x0F
    family = buffer[13]
    length = int.from_bytes(buffer[14:16], "big")
    if version != _V2_VERSION:
        raise MalformedProxyHeader("a v2 header with a version other than 2")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise MalformedProxyHeader("a v2 header with a command other than LOCAL or PROXY")
    if family not in _V2_KNOWN_FAMILIES:
        raise MalformedProxyHeader("a v2 header with an unknown address family")
    if length > V2_MAX_LENGTH:
        raise MalformedProxyHeader(f"a v2 header longer than {V2_MAX_LENGTH} bytes")
    end = V2_FIXED_BYTES + length
    if len(buffer) < end:
        return None
    block, rest = buffer[V2_FIXED_BYTES:end], buffer[end:]
    needed = _V2_ADDRESS_BYTES.get(family)
    if needed is not None and length < needed:
        raise MalformedProxyHeader("a v2 header too short for its address family")
    if command == _V2_LOCAL or needed is None:
        # LOCAL: the proxy speaks for itself (its health checks); other families (UNSPEC, UDP,
        # UNIX) name no TCP client. Either way the socket's address stands.
        return ProxyHeader(None, rest)
    if family == _V2_TCP4:
        host = str(ipaddress.IPv4Address(block[0:4]))
        port = int.from_bytes(block[8:10], "big")
    else:
        host = str(ipaddress.IPv6Address(block[0:16]))
        port = int.from_bytes(block[32:34], "big")
    return ProxyHeader((host, port), rest)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``--proxy-from`` values as networks; raises ValueError for one that is not a CIDR."""
    return tuple(ipaddress.ip_network(value) for value in values)


def is_trusted_proxy(address: str | None, networks: Iterable[Network]) -> bool:
    """True if a peer at ``address`` must send a PROXY header (it is in one of ``networks``).

    An IPv4 peer seen on a dual-stack socket as ``::ffff:a.b.c.d`` is matched as IPv4.
    """
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
