"""HTTP/1.1 strictness over real TLS on 127.0.0.1 (http.response.decide_refusal,
http.cycle.split_target): Content-Length with Transfer-Encoding is refused and the connection
closed (RFC 9112 6.1); a request target in absolute form is routed as its path (RFC 9112 3.2.2),
other forms are refused. Every accept has its reject twin.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.http.conftest import (
    EchoApp,
    Pki,
    client_context,
    connect,
    exchange,
    parse_reply,
    read_all,
    run,
    serving,
)

SMUGGLED = (
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n"
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
)
CHUNKED_ONLY = (
    b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "statuses", "calls"),
    [(CHUNKED_ONLY, [200, 200], 2), (SMUGGLED, [400], 0)],
    ids=["ok/transfer-encoding-alone", "fail/content-length-and-transfer-encoding"],
)
def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    pki: Pki, request_bytes: bytes, statuses: list[int], calls: int
) -> None:
    app = EchoApp()

    def send(port: int) -> bytes:
        with connect(port, client_context(pki)) as tls:
            tls.sendall(request_bytes)
            return read_all(tls)  # until the server closes

    async def scenario() -> Any:
        async with serving(pki, app) as (_, port):
            return await asyncio.to_thread(send, port)

    data = run(scenario)
    assert [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)] == statuses
    assert app.calls == calls
    if statuses == [400]:
        error = parse_reply(data).json()
        assert error["errorCode"] == 400001
        assert "both Content-Length and Transfer-Encoding" in error["message"]


@pytest.mark.parametrize(
    ("target", "path", "query", "host"),
    [
        (b"/hello?x=1", "/hello", "x=1", "x"),
        (b"https://devprov.example:8443/hello?x=1", "/hello", "x=1", "devprov.example:8443"),
        (b"HTTP://devprov.example/a%20b", "/a b", "", "devprov.example"),
        (b"https://devprov.example", "/", "", "devprov.example"),
        (b"https://devprov.example?q=2", "/", "q=2", "devprov.example"),
    ],
    ids=["ok/origin-form", "ok/absolute-https", "ok/absolute-http", "ok/no-path", "ok/query-only"],
)
def test_an_absolute_form_target_is_routed_as_its_path(
    pki: Pki, target: bytes, path: str, query: str, host: str
) -> None:
    app = EchoApp()
    request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def scenario() -> Any:
        async with serving(pki, app) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), request)

    reply = run(scenario)
    assert reply.status == 200
    assert (reply.json()["path"], reply.json()["query"]) == (path, query)
    assert dict(app.scopes[0]["headers"])[b"host"] == host.encode()


@pytest.mark.parametrize(
    "request_line",
    [
        b"CONNECT devprov.example:443 HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"GET ftp://devprov.example/file HTTP/1.1",
        b"GET https:///no-authority HTTP/1.1",
        b"GET hello HTTP/1.1",
    ],
    ids=[
        "fail/authority-form",
        "fail/asterisk-form",
        "fail/other-scheme",
        "fail/no-authority",
        "fail/relative",
    ],
)
def test_other_target_forms_are_refused(pki: Pki, request_line: bytes) -> None:
    app = EchoApp()
    request = request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def scenario() -> Any:
        async with serving(pki, app) as (_, port):
            return await asyncio.to_thread(exchange, port, client_context(pki), request)

    reply = run(scenario)
    assert reply.status == 400
    assert reply.json()["message"] == "the request target must be a path or an absolute http(s) URI"
    assert app.calls == 0
