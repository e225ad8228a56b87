"""The PROXY protocol parser: v1 and v2 headers whole and split, every way one is refused."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.transport.proxy import (
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    MalformedProxyHeader,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyPreamble,
    is_trusted_proxy,
    parse_networks,
)

TLS_START = b"\x16\x03\x01\x02\x00"  # what follows the header: a ClientHello's record head


def v2(
    command: int = 1, family: int = 0x11, block: bytes | None = None, *, tlvs: bytes = b""
) -> bytes:
    """A v2 header; the default block is 203.0.113.7:50000 -> 10.0.0.1:8883 (or IPv6)."""
    if block is None:
        if family == 0x21:
            src = ipaddress.IPv6Address("2001:db8::7").packed
            dst = ipaddress.IPv6Address("2001:db8::1").packed
            block = src + dst + struct.pack("!HH", 50000, 8883)
        else:
            src = ipaddress.IPv4Address("203.0.113.7").packed
            block = src + bytes([10, 0, 0, 1]) + struct.pack("!HH", 50000, 8883)
    body = block + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def parse(data: bytes) -> ProxyHeader | None:
    return ProxyHeaderParser().feed(data)


ACCEPTED = [
    pytest.param(
        b"PROXY TCP4 203.0.113.7 10.0.0.1 50000 443\r\n", ("203.0.113.7", 50000), id="ok/v1-tcp4"
    ),
    pytest.param(
        b"PROXY TCP6 2001:db8::7 2001:db8::1 50000 443\r\n", ("2001:db8::7", 50000), id="ok/v1-tcp6"
    ),
    pytest.param(
        b"PROXY TCP4 203.0.113.7 10.0.0.1 0 65535\r\n", ("203.0.113.7", 0), id="ok/v1-port-bounds"
    ),
    pytest.param(b"PROXY UNKNOWN\r\n", None, id="ok/v1-unknown"),
    pytest.param(
        b"PROXY UNKNOWN ffff:: ffff:: 65535 65535\r\n", None, id="ok/v1-unknown-with-addresses"
    ),
    pytest.param(v2(), ("203.0.113.7", 50000), id="ok/v2-tcp4"),
    pytest.param(v2(family=0x21), ("2001:db8::7", 50000), id="ok/v2-tcp6"),
    pytest.param(
        v2(tlvs=b"\x05\x00\x03abc\x20\x00\x00"), ("203.0.113.7", 50000), id="ok/v2-tlvs-skipped"
    ),
    pytest.param(v2(command=0, family=0x00, block=b""), None, id="ok/v2-local"),
    pytest.param(v2(command=0), None, id="ok/v2-local-with-addresses"),
    pytest.param(v2(family=0x00, block=b""), None, id="ok/v2-proxy-unspec"),
    pytest.param(v2(family=0x31, block=bytes(216)), None, id="ok/v2-unix"),
    pytest.param(v2(family=0x12), None, id="ok/v2-udp"),
]


@pytest.mark.parametrize(("header", "source"), ACCEPTED)
def test_a_header_gives_the_client_and_the_bytes_after_it(
    header: bytes, source: tuple[str, int] | None
) -> None:
    result = parse(header + TLS_START)
    assert result == ProxyHeader(source, TLS_START)


@pytest.mark.parametrize(("header", "source"), ACCEPTED)
def test_a_header_split_anywhere_gives_the_same(
    header: bytes, source: tuple[str, int] | None
) -> None:
    data = header + TLS_START
    for cut in range(1, len(data)):
        parser = ProxyHeaderParser()
        first = parser.feed(data[:cut])
        if cut < len(header):
            assert first is None
            assert parser.feed(data[cut:]) == ProxyHeader(source, TLS_START)
        else:
            assert first == ProxyHeader(source, data[len(header) : cut])


def test_byte_by_byte_arrival_gives_the_header_at_its_last_byte() -> None:
    parser = ProxyHeaderParser()
    header = v2(family=0x21)
    for byte in header[:-1]:
        assert parser.feed(bytes([byte])) is None
    assert parser.feed(header[-1:]) == ProxyHeader(("2001:db8::7", 50000), b"")


def test_a_parser_parses_one_header_only() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"PROXY UNKNOWN\r\n")


REFUSED = [
    pytest.param(TLS_START, id="fail/tls-without-header"),
    pytest.param(b"GET / HTTP/1.1\r\n", id="fail/http-without-header"),
    pytest.param(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", id="fail/v1-lowercase"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", id="fail/v1-bare-lf-then-more"),
    pytest.param(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", id="fail/v1-double-space"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", id="fail/v1-missing-port"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", id="fail/v1-extra-field"),
    pytest.param(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", id="fail/v1-udp"),
    pytest.param(b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", id="fail/v1-ipv6-as-tcp4"),
    pytest.param(b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", id="fail/v1-ipv4-as-tcp6"),
    pytest.param(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", id="fail/v1-short-address"),
    pytest.param(b"PROXY TCP4 host 5.6.7.8 1 2\r\n", id="fail/v1-name-for-address"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", id="fail/v1-port-too-big"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", id="fail/v1-negative-port"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", id="fail/v1-leading-zero"),
    pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", id="fail/v1-non-ascii"),
    pytest.param(b"PROXY UNKNOWN" + b" " * 100 + b"\r\n", id="fail/v1-over-107-bytes"),
    pytest.param(b"PROXY " + b"9" * 101, id="fail/v1-no-crlf-within-107-bytes"),
    pytest.param(V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), id="fail/v2-version-1"),
    pytest.param(V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), id="fail/v2-command-2"),
    pytest.param(V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), id="fail/v2-family-4"),
    pytest.param(V2_SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12), id="fail/v2-transport-3"),
    pytest.param(v2(block=bytes(11)), id="fail/v2-tcp4-block-short"),
    pytest.param(v2(family=0x21, block=bytes(35)), id="fail/v2-tcp6-block-short"),
    pytest.param(
        V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_LENGTH + 1), id="fail/v2-too-long"
    ),
    pytest.param(V2_SIGNATURE[:6] + b"X", id="fail/v2-signature-broken"),
]


@pytest.mark.parametrize("data", REFUSED)
def test_anything_but_a_well_formed_header_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedProxyHeader):
        parse(data + b"\r\n" + TLS_START)


def test_a_v2_header_over_the_bound_is_refused_on_its_length_field() -> None:
    """The bound is enforced before the body arrives: nothing large is ever buffered."""
    with pytest.raises(MalformedProxyHeader, match="longer than"):
        parse(V2_SIGNATURE + b"\x21\x11\xff\xff")


def test_a_v2_header_at_the_bound_is_accepted() -> None:
    header = v2(tlvs=b"\x04" + struct.pack("!H", V2_MAX_LENGTH - 15) + bytes(V2_MAX_LENGTH - 15))
    assert parse(header) == ProxyHeader(("203.0.113.7", 50000), b"")


def test_a_v1_line_of_exactly_107_bytes_is_accepted() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (107 - 16) + b"\r\n"
    assert len(line) == 107
    assert parse(line) == ProxyHeader(None, b"")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_the_parsers_error(data: bytes) -> None:
    parser = ProxyHeaderParser()
    with contextlib.suppress(MalformedProxyHeader):
        parser.feed(data)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_after_a_v1_prefix_raise_only_the_parsers_error(data: bytes) -> None:
    with contextlib.suppress(MalformedProxyHeader):
        parse(b"PROXY " + data)


@given(st.binary(min_size=4, max_size=120))
def test_arbitrary_bytes_after_the_v2_signature_raise_only_the_parsers_error(data: bytes) -> None:
    with contextlib.suppress(MalformedProxyHeader):
        parse(V2_SIGNATURE + data)


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        pytest.param("10.1.2.3", True, id="ok/in-network"),
        pytest.param("::ffff:10.1.2.3", True, id="ok/ipv4-mapped"),
        pytest.param("fd00::5", True, id="ok/ipv6-network"),
        pytest.param("10.2.0.1", False, id="fail/outside"),
        pytest.param("127.0.0.1", False, id="fail/loopback-not-listed"),
        pytest.param(None, False, id="fail/no-address"),
        pytest.param("not-an-ip", False, id="fail/not-an-address"),
    ],
)
def test_only_listed_peers_are_proxies(address: str | None, trusted: bool) -> None:
    networks = parse_networks(["10.1.0.0/16", "fd00::/64"])
    assert is_trusted_proxy(address, networks) is trusted


def test_nothing_is_trusted_by_default() -> None:
    assert not is_trusted_proxy("10.1.2.3", ())


def test_the_preamble_is_owed_by_trusted_peers_only() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    other = ProxyPreamble(("192.0.2.7", 5000), trusted)
    assert not other.pending
    assert other.feed(b"\x16\x03\x01") == b"\x16\x03\x01"  # TLS passes untouched
    assert other.address == ("192.0.2.7", 5000)


def test_the_preamble_names_the_client_and_hands_on_the_rest() -> None:
    preamble = ProxyPreamble(("10.0.0.1", 40000), parse_networks(["10.0.0.0/8"]))
    assert preamble.pending
    assert preamble.feed(b"PROXY TCP4 198.51.100.9 10.0.0.1 51000 ") == b""  # not whole yet
    assert preamble.address == ("10.0.0.1", 40000)
    assert preamble.feed(b"8443\r\n\x16\x03") == b"\x16\x03"
    assert not preamble.pending
    assert preamble.address == ("198.51.100.9", 51000)


def test_a_malformed_preamble_is_refused() -> None:
    preamble = ProxyPreamble(("10.0.0.1", 40000), parse_networks(["10.0.0.0/8"]))
    with pytest.raises(MalformedProxyHeader):
        preamble.feed(b"\x16\x03\x01 a TLS hello, no header")
