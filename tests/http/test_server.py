"""The HTTPS server over real TLS on 127.0.0.1: handshakes, client chains, HTTP/1.1, limits.

Every positive case has its negative control next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import time
import warnings
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from devprov.http.server import (
    CannotListenError,
    HttpsServer,
    LifespanStartupFailed,
    PortInUseError,
)
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.tls import build_server_context
from tests.http.conftest import (
    HOST,
    EchoApp,
    Pki,
    Reply,
    client_context,
    connect,
    exchange,
    get,
    parse_reply,
    read_all,
    run,
    serving,
)

LIMIT = 1000  # a small body limit keeps the tests quick


# --- TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [(ssl.TLSVersion.TLSv1_2, 0x303), (ssl.TLSVersion.TLSv1_3, 0x304)],
    ids=["tls1.2", "tls1.3"],
)
@pytest.mark.parametrize("hostname", [HOST, "localhost"])
def test_tls_versions_both_served(pki: Pki, version: ssl.TLSVersion, expected: int, hostname: str):
    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            context = client_context(pki, version=version)
            return await asyncio.to_thread(
                exchange, port, context, get("/hello"), server_hostname=hostname
            )

    reply = run(scenario)
    assert reply.status == 200
    assert reply.json()["tls_version"] == expected
    assert reply.json()["path"] == "/hello"


def test_tls11_refused(pki: Pki):
    context = client_context(pki)
    with warnings.catch_warnings():  # the stdlib deprecates what this client must offer
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer it; the server says no

    async def scenario() -> None:
        async with serving(pki, EchoApp()) as (_, port):
            with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|protocol version"):
                await asyncio.to_thread(exchange, port, context, get())

    run(scenario)


@pytest.mark.parametrize(
    ("hostname", "other_ca"),
    [("example.com", False), (HOST, True)],
    ids=["fail/wrong-hostname", "fail/unknown-ca"],
)
def test_server_certificate_checked_by_client(pki: Pki, hostname: str, other_ca: bool):
    context = client_context(pki, cafile=pki.other_root_file if other_ca else None)

    async def scenario() -> None:
        async with serving(pki, EchoApp()) as (_, port):
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.to_thread(exchange, port, context, get(), server_hostname=hostname)

    run(scenario)


def test_context_offers_ecdsa_and_rsa_tls12_suites_and_nothing_weaker(pki: Pki):
    context = build_server_context(pki.server_chain_file, pki.server_key_file)
    offered = SSL.Connection(context, None).get_cipher_list()
    tls12 = [name for name in offered if not name.startswith("TLS_")]
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in tls12
    assert "ECDHE-RSA-AES128-GCM-SHA256" in tls12
    assert all(name.startswith("ECDHE-") for name in tls12)
    assert all("GCM" in name or "CHACHA20" in name for name in tls12)


def test_mismatched_key_is_refused(pki: Pki):
    with pytest.raises(SSL.Error):
        build_server_context(pki.server_chain_file, pki.device_key_file)


@pytest.mark.parametrize(
    ("offered", "selected"),
    [(["h2", "http/1.1"], "http/1.1"), (["h2"], None)],
    ids=["ok/http1.1", "none/h2-only"],
)
def test_alpn_selects_http11_only(pki: Pki, offered: list[str], selected: str | None):
    context = client_context(pki)
    context.set_alpn_protocols(offered)

    def negotiate(port: int) -> str | None:
        with connect(port, context) as tls:
            return tls.selected_alpn_protocol()

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            return await asyncio.to_thread(negotiate, port)

    assert run(scenario) == selected


@pytest.mark.parametrize("request_certificate", [True, False])
def test_client_certificate_only_when_requested(pki: Pki, request_certificate: bool):
    identity = (pki.device_chain_file, pki.device_key_file)

    async def scenario() -> Any:
        context = build_server_context(
            pki.server_chain_file,
            pki.server_key_file,
            request_client_certificate=request_certificate,
        )
        server = HttpsServer(EchoApp(), context)
        port = await server.start(HOST, 0)
        try:
            client = client_context(pki, identity=identity)
            return await asyncio.to_thread(exchange, port, client, get())
        finally:
            await server.close()

    chain = run(scenario).json()["chain_der"]
    assert len(chain) == (2 if request_certificate else 0)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("identity", ["none", "chain", "self-signed"])
def test_client_chain_reaches_the_app(pki: Pki, version: ssl.TLSVersion, identity: str):
    files = {
        "none": None,
        "chain": (pki.device_chain_file, pki.device_key_file),
        "self-signed": (pki.self_signed_file, pki.self_signed_key_file),
    }[identity]
    expected = {
        "none": [],
        "chain": [pki.device_der.hex(), pki.intermediate_der.hex()],
        "self-signed": [pki.self_signed_der.hex()],
    }[identity]
    names = {"none": None, "chain": "CN=device-1", "self-signed": "CN=device-self"}

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            context = client_context(pki, identity=files, version=version)
            return await asyncio.to_thread(exchange, port, context, get())

    seen = run(scenario).json()
    assert seen["chain_der"] == expected
    assert seen["name"] == names[identity]
    assert len(seen["chain_pem"]) == len(expected)
    assert all(pem.startswith("-----BEGIN CERTIFICATE-----") for pem in seen["chain_pem"])


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_resumed_session_still_carries_the_chain(pki: Pki, version: ssl.TLSVersion):
    # Tickets would lose the intermediates (tls.py): resumption must come from the cache.
    context = client_context(
        pki, identity=(pki.device_chain_file, pki.device_key_file), version=version
    )

    def twice(port: int) -> list[tuple[bool, Any]]:
        seen, session = [], None
        for _ in range(2):
            with connect(port, context, session=session) as tls:
                tls.sendall(get())
                reply = parse_reply(read_all(tls))
                seen.append((tls.session_reused, reply.json()["chain_der"]))
                session = tls.session
        return seen

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            return await asyncio.to_thread(twice, port)

    chain = [pki.device_der.hex(), pki.intermediate_der.hex()]
    assert run(scenario) == [(False, chain), (True, chain)]


KEEP_ALIVE = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def read_reply(sock: socket.socket) -> Reply:
    """One response on a connection that stays open (the server frames EchoApp's by length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    reply = parse_reply(data)
    body = reply.body
    while len(body) < int(reply.headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        body += chunk
    return Reply(reply.status, reply.headers, body)


def close_first(tls: ssl.SSLSocket, how: str) -> None:
    """End a keep-alive connection from the client's side; the caller closes the socket."""
    if how == "close-notify":  # unwrap() sends close_notify and waits for the server's
        tls.unwrap()
    elif how == "close-notify-without-waiting":  # an incomplete close (RFC 9112 9.8)
        tls.setblocking(False)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()
    # "tcp-only": closing the socket sends no close_notify, a premature close


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
@pytest.mark.parametrize(
    ("how", "resumed"),
    [("close-notify", True), ("close-notify-without-waiting", True), ("tcp-only", False)],
    ids=["ok/close-notify", "ok/close-notify-without-waiting", "fail/tcp-only"],
)
def test_client_closing_first_resumes_only_after_close_notify(
    pki: Pki, version: ssl.TLSVersion, how: str, resumed: bool
):
    # The server answers the client's close_notify with its own, so OpenSSL keeps the session
    # in its cache; a client that drops TCP without close_notify loses it (tls.py says why).
    identity = (pki.device_chain_file, pki.device_key_file)
    context = client_context(pki, identity=identity, version=version)

    def twice(port: int) -> tuple[Reply, bool, Reply]:
        with connect(port, context) as tls:
            tls.sendall(KEEP_ALIVE)
            first = read_reply(tls)
            session = tls.session
            close_first(tls, how)
        with connect(port, context, session=session) as tls:
            reused = tls.session_reused
            tls.sendall(get())
            return first, reused, parse_reply(read_all(tls))

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            return await asyncio.to_thread(twice, port)

    first, reused, second = run(scenario)
    assert first.status == 200
    assert "connection" not in first.headers  # the server kept it open: the client closed first
    assert reused is resumed
    assert second.json()["chain_der"] == [pki.device_der.hex(), pki.intermediate_der.hex()]


def test_plaintext_client_is_dropped_and_the_next_tls_client_served(pki: Pki):
    def plaintext(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=5) as raw:
            raw.sendall(get())
            try:
                return read_all(raw)
            except ConnectionResetError:
                return b""

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            answer = await asyncio.to_thread(plaintext, port)
            assert b"HTTP/1.1" not in answer
            return await asyncio.to_thread(exchange, port, client_context(pki), get())

    assert run(scenario).status == 200


def test_handshake_timeout_closes_a_silent_client(pki: Pki):
    def silent(port: int) -> tuple[bytes, float]:
        with socket.create_connection((HOST, port), timeout=5) as raw:
            start = time.monotonic()
            return read_all(raw), time.monotonic() - start

    policy = ConnectionPolicy(handshake_timeout=0.2)

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), policy=policy) as (_, port):
            return await asyncio.to_thread(silent, port)

    answer, waited = run(scenario)
    assert answer == b""
    assert 0.15 < waited < 2


# --- HTTP/1.1 --------------------------------------------------------------------------------


def test_keep_alive_serves_three_requests_on_one_connection(pki: Pki):
    def three(port: int) -> list[tuple[int, int, str | None]]:
        connection = http.client.HTTPSConnection(HOST, port, context=client_context(pki))
        try:
            out = []
            for n in range(3):
                connection.request("POST", f"/n/{n}?q=1", body=b"x" * n)
                response = connection.getresponse()
                seen = response.read()
                out.append((response.status, parse_port(seen), response.getheader("connection")))
            return out
        finally:
            connection.close()

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            return await asyncio.to_thread(three, port)

    replies = run(scenario)
    assert [status for status, _, _ in replies] == [200, 200, 200]
    assert len({port for _, port, _ in replies}) == 1
    assert all(connection is None for _, _, connection in replies)


def parse_port(body: bytes) -> int:
    return int(json.loads(body)["client_port"])


def test_connection_close_is_honoured(pki: Pki):
    def once(port: int) -> tuple[bytes, bytes]:
        with connect(port, client_context(pki)) as tls:
            tls.sendall(get())
            data = read_all(tls)  # returns only because the server closed
            return data, tls.recv(10)

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            return await asyncio.to_thread(once, port)

    data, after = run(scenario)
    reply = parse_reply(data)
    assert reply.status == 200
    assert reply.headers["connection"] == "close"
    assert after == b""


def test_idle_connection_times_out(pki: Pki):
    def idle(port: int) -> tuple[bytes, float]:
        with connect(port, client_context(pki)) as tls:
            start = time.monotonic()
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return read_all(tls), time.monotonic() - start  # the answer, EOF at the timeout

    policy = ConnectionPolicy(keep_alive_timeout=0.3)

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), policy=policy) as (_, port):
            return await asyncio.to_thread(idle, port)

    answer, waited = run(scenario)
    assert parse_reply(answer).status == 200
    assert 0.25 < waited < 2


def test_pipelined_requests_are_answered_in_order(pki: Pki):
    request = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + get("/second")

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            with_close = await asyncio.to_thread(exchange, port, client_context(pki), request)
            return with_close

    reply = run(scenario)
    first, _, rest = reply.body.partition(b"HTTP/1.1 200")
    assert b'"/first"' in first
    assert b'"/second"' in rest


def test_head_request_gets_no_body(pki: Pki):
    request = b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), request)

    reply = run(scenario)
    assert reply.status == 200
    assert reply.body == b""


def test_malformed_request_line_gets_400(pki: Pki):
    app = EchoApp()

    async def scenario() -> Any:
        async with serving(pki, app) as (_, port):
            request = b"GARBAGE\r\n\r\n"
            return await asyncio.to_thread(exchange, port, client_context(pki), request)

    reply = run(scenario)
    assert reply.status == 400
    assert reply.json()["errorCode"] == 400001
    assert reply.headers["content-type"].startswith("application/json")
    assert app.calls == 0


def test_oversized_request_head_gets_431(pki: Pki):
    request = get(extra=b"x-big: " + b"a" * 4000 + b"\r\n")

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), max_header_bytes=1024) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), request)

    assert run(scenario).status == 431


def test_scope_follows_asgi_http_and_tls_extension(pki: Pki):
    app = EchoApp()
    identity = (pki.device_chain_file, pki.device_key_file)
    request = get("/a%20b/%C3%A9?x=1&y=%20", extra=b"X-Mixed-Case: v\r\n")

    async def scenario() -> Any:
        async with serving(pki, app) as (_, port):
            context = client_context(pki, identity=identity)
            return await asyncio.to_thread(exchange, port, context, request), port

    reply, port = run(scenario)
    assert reply.status == 200
    scope = app.scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("1.1", "GET", "https")
    assert scope["path"] == "/a b/\u00e9"
    assert scope["raw_path"] == b"/a%20b/%C3%A9"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert (b"x-mixed-case", b"v") in scope["headers"]
    assert scope["client"][0] == HOST
    assert scope["server"] == (HOST, port)
    assert scope["state"] == {}
    tls = scope["extensions"]["tls"]
    assert set(tls) == {
        "server_cert",
        "client_cert_chain",
        "client_cert_name",
        "client_cert_error",
        "tls_version",
        "cipher_suite",
        "devprov.client_chain_der",
    }
    assert tls["devprov.client_chain_der"] == [pki.device_der, pki.intermediate_der]
    assert tls["client_cert_name"] == "CN=device-1"
    assert (tls["server_cert"], tls["client_cert_error"]) == (None, None)
    assert isinstance(tls["cipher_suite"], str)


def test_stalled_body_times_out_and_the_app_sees_a_disconnect(pki: Pki):
    seen: list[Any] = []

    async def reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(await receive())
        seen.append(await receive())

    def stall(port: int) -> bytes:
        with connect(port, client_context(pki)) as tls:
            tls.sendall(post(b"", declared=100) + b"0123456789")
            return read_all(tls)

    async def scenario() -> Any:
        async with serving(pki, reader, policy=ConnectionPolicy(body_timeout=0.3)) as (_, port):
            return await asyncio.to_thread(stall, port)

    reply = parse_reply(run(scenario))
    assert reply.status == 408
    assert reply.json()["message"] == "the request body did not arrive within 0.3 s"
    assert seen == [
        {"type": "http.request", "body": b"0123456789", "more_body": True},
        {"type": "http.disconnect"},
    ]


# --- request bodies --------------------------------------------------------------------------


def post(body: bytes, *, declared: int | None = None, extra: bytes = b"") -> bytes:
    length = len(body) if declared is None else declared
    head = f"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {length}\r\n"
    return head.encode() + extra + b"\r\n" + body


def chunked(body: bytes, size: int = 300) -> bytes:
    head = (
        b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    )
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return head + b"\r\n" + framed + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "calls"),
    [
        (post(b"a" * LIMIT), 200, 1),
        (post(b"a" * (LIMIT + 1)), 413, 0),
        (post(b"", declared=10**9), 413, 0),
        (chunked(b"c" * LIMIT), 200, 1),
        (chunked(b"c" * (LIMIT + 1)), 413, 1),
    ],
    ids=[
        "ok/length-at-limit",
        "fail/length-over-limit",
        "fail/huge-declared-length",
        "ok/chunked-at-limit",
        "fail/chunked-over-limit",
    ],
)
def test_body_limit(pki: Pki, request_bytes: bytes, status: int, calls: int):
    app = EchoApp()

    async def scenario() -> Any:
        async with serving(pki, app, max_body_bytes=LIMIT) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), request_bytes)

    reply = run(scenario)
    assert reply.status == status
    assert app.calls == calls  # a chunked body is streamed to the app until it crosses the limit
    if status == 200:
        assert reply.json()["body_length"] == LIMIT
    else:
        error = reply.json()
        assert error["errorCode"] == 413001
        assert error["message"] == f"request body exceeds {LIMIT} bytes"
        assert error["timestampUtc"].endswith("Z")
        assert len(error["trackingId"]) == 36


@pytest.mark.parametrize(
    ("size", "status"), [(LIMIT, 200), (LIMIT + 1, 413)], ids=["ok/continue", "fail/too-large"]
)
def test_expect_100_continue(pki: Pki, size: int, status: int):
    def converse(port: int) -> tuple[bytes, bytes]:
        with connect(port, client_context(pki)) as tls:
            tls.sendall(post(b"", declared=size, extra=b"Expect: 100-continue\r\n"))
            interim = tls.recv(65536)
            if interim.startswith(b"HTTP/1.1 100"):
                tls.sendall(b"b" * size)
            return interim, read_all(tls)

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), max_body_bytes=LIMIT) as (_, port):
            return await asyncio.to_thread(converse, port)

    interim, rest = run(scenario)
    reply = parse_reply(interim + rest)
    assert reply.status == status
    assert interim.startswith(b"HTTP/1.1 100 Continue") is (status == 200)
    if status == 200:
        assert reply.json()["body_length"] == size


# --- the app ---------------------------------------------------------------------------------


async def failing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/boom":
        raise RuntimeError("boom")
    await EchoApp()(scope, receive, send)


def test_app_exception_gives_500_and_the_server_keeps_serving(
    pki: Pki, caplog: pytest.LogCaptureFixture
):
    async def scenario() -> Any:
        async with serving(pki, failing_app) as (_, port):
            failed = await asyncio.to_thread(exchange, port, client_context(pki), get("/boom"))
            fine = await asyncio.to_thread(exchange, port, client_context(pki), get("/fine"))
            return failed, fine

    with caplog.at_level(logging.ERROR, logger="devprov.http.server"):
        failed, fine = run(scenario, server_errors=True)
    assert failed.status == 500
    assert failed.json()["errorCode"] == 500000
    assert fine.status == 200
    assert any("boom" in str(record.exc_info) for record in caplog.records)


async def half_then_fail(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("after the head")


def test_app_exception_after_the_head_closes_the_connection(pki: Pki):
    async def scenario() -> Any:
        async with serving(pki, half_then_fail) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), get())

    reply = run(scenario, server_errors=True)
    assert reply.status == 200
    assert reply.headers["transfer-encoding"] == "chunked"
    assert not reply.body.endswith(b"0\r\n\r\n")  # the chunked body was cut, not finished


def starlette_app(events: list[str]) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    async def whoami(request: Request) -> JSONResponse:
        tls = request.scope["extensions"]["tls"]
        return JSONResponse({"greeting": request.state.greeting, "name": tls["client_cert_name"]})

    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> Any:
            for n in range(3):
                yield f"part{n};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    return Starlette(routes=[Route("/whoami", whoami), Route("/stream", stream)], lifespan=lifespan)


def test_starlette_app_with_lifespan_and_streaming(pki: Pki):
    events: list[str] = []
    identity = (pki.device_chain_file, pki.device_key_file)

    def two(port: int) -> tuple[Any, Any]:
        connection = http.client.HTTPSConnection(
            HOST, port, context=client_context(pki, identity=identity)
        )
        try:
            connection.request("GET", "/whoami")
            who = connection.getresponse()
            who_body = who.read()
            connection.request("GET", "/stream")
            streamed = connection.getresponse()
            return (who.status, who_body), (streamed.status, streamed.read())
        finally:
            connection.close()

    async def scenario() -> Any:
        async with serving(pki, starlette_app(events)) as (_, port):
            assert events == ["startup"]
            return await asyncio.to_thread(two, port)

    (status, who), streamed = run(scenario)
    assert status == 200
    assert who == b'{"greeting":"hello","name":"CN=device-1"}'
    assert streamed == (200, b"part0;part1;part2;")
    assert events == ["startup", "shutdown"]


def test_lifespan_startup_failure_stops_start(pki: Pki):
    async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def scenario() -> None:
        context = build_server_context(pki.server_chain_file, pki.server_key_file)
        server = HttpsServer(refuses, context)
        try:
            with pytest.raises(LifespanStartupFailed, match="no database"):
                await server.start(HOST, 0)
            assert server.sockets == []
        finally:
            await server.close()

    run(scenario, server_errors=True)


def test_a_port_in_use_is_refused_and_the_startup_undone(pki: Pki):
    events: list[str] = []

    async def scenario() -> int:
        context = build_server_context(pki.server_chain_file, pki.server_key_file)
        server = HttpsServer(starlette_app(events), context)
        with socket.socket() as taken:
            taken.bind((HOST, 0))
            taken.listen()
            port = int(taken.getsockname()[1])
            with pytest.raises(PortInUseError, match=f"{HOST}:{port} is already in use"):
                await server.start(HOST, port)
        assert server.sockets == []
        assert events == ["startup", "shutdown"]  # ended at once, not cancelled at exit
        # the twin: the same server listens on a free port, with a fresh startup
        free = await server.start(HOST, 0)
        await server.close()
        return free

    assert run(scenario) > 0  # and nothing was logged as an error
    assert events == ["startup", "shutdown", "startup", "shutdown"]


def test_a_host_that_is_not_local_cannot_be_listened_on(pki: Pki):
    async def scenario() -> None:
        context = build_server_context(pki.server_chain_file, pki.server_key_file)
        server = HttpsServer(EchoApp(), context)
        with pytest.raises(CannotListenError, match="is not an address of this machine"):
            await server.start("192.0.2.1", 0)  # TEST-NET-1 (RFC 5737)
        await server.close()

    run(scenario)


# --- listeners -------------------------------------------------------------------------------


def test_two_listeners_then_close_stops_accepting(pki: Pki):
    async def scenario() -> None:
        context = build_server_context(pki.server_chain_file, pki.server_key_file)
        server = HttpsServer(EchoApp(), context)
        ports = [await server.start(HOST, 0), await server.start(HOST, 0)]
        try:
            assert ports == server.ports
            assert len(server.sockets) == 2
            for port in ports:
                reply = await asyncio.to_thread(exchange, port, client_context(pki), get())
                assert reply.status == 200
        finally:
            await server.close()
        for port in ports:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((HOST, port), timeout=5).close()

    run(scenario)


def test_close_lets_a_request_in_flight_finish(pki: Pki):
    release = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        release.set()
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async def scenario() -> Any:
        async with serving(pki, slow) as (server, port):
            pending = asyncio.ensure_future(
                asyncio.to_thread(exchange, port, client_context(pki), get())
            )
            await release.wait()
            await server.close()
            return await pending

    reply = run(scenario)
    assert (reply.status, reply.body) == (200, b"done")


# --- robustness ------------------------------------------------------------------------------


def send_then_close(port: int, pki: Pki, data: bytes, encrypted: bool) -> None:
    with connect(port, client_context(pki)) as tls:
        if encrypted:
            tls.sendall(data)
        else:  # raw bytes on the socket, where TLS records belong
            super(ssl.SSLSocket, tls).sendall(data)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda tail: b"POST / HTTP/1.1\r\nHost: x\r\n" + tail),
        st.binary(max_size=512).map(lambda tail: get() + tail),
    ),
    encrypted=st.booleans(),
)
def test_arbitrary_bytes_after_the_handshake_never_break_the_server(
    pki: Pki, data: bytes, encrypted: bool
):
    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (_, port):
            await asyncio.to_thread(send_then_close, port, pki, data, encrypted)
            return await asyncio.to_thread(exchange, port, client_context(pki), get())

    assert run(scenario).status == 200


async def slow_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    await receive()
    await asyncio.sleep(0.3)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    "half_close", [True, False], ids=["ok/half-close-then-read", "ok/keep-open-then-read"]
)
def test_a_client_that_stops_sending_still_gets_its_answer(pki: Pki, half_close: bool) -> None:
    async def scenario() -> bytes:
        async with serving(pki, slow_answer) as (_, port):

            def client() -> bytes:
                with connect(port, client_context(pki)) as tls:
                    tls.sendall(get())
                    if half_close:  # TCP FIN, no close_notify; the TLS layer keeps reading
                        with socket.socket(fileno=os.dup(tls.fileno())) as raw:
                            raw.shutdown(socket.SHUT_WR)
                    return read_all(tls)

            return await asyncio.to_thread(client)

    reply = parse_reply(run(scenario))
    assert reply.status == 200 and reply.body == b"ok"
