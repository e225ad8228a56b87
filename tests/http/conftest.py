"""Fixtures for real-TLS tests of the HTTPS server: a PKI on disk, contexts, a blocking client.

Certificates are made with the real clock (the stdlib client checks the server certificate's
validity against it) by ``devprov.core.issuance``; nothing is committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devprov.core.issuance import (
    Issuer,
    build_device_certificate,
    build_intermediate_certificate,
    build_root_certificate,
    build_self_signed_device_certificate,
    build_server_certificate,
)
from devprov.http.server import HttpsServer
from devprov.transport.tls import build_server_context

T = TypeVar("T")
HOST = "127.0.0.1"


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _write(path: Path, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    parts = []
    for item in items:
        if isinstance(item, x509.Certificate):
            parts.append(item.public_bytes(serialization.Encoding.PEM))
        else:
            parts.append(
                item.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    path.write_bytes(b"".join(parts))
    return path


@dataclass(frozen=True)
class Pki:
    """Files and DER of: root -> server; root -> intermediate -> device; a self-signed device."""

    root_file: Path
    other_root_file: Path
    server_chain_file: Path
    server_key_file: Path
    device_chain_file: Path  # leaf, then intermediate
    device_key_file: Path
    self_signed_file: Path
    self_signed_key_file: Path
    device_der: bytes
    intermediate_der: bytes
    self_signed_der: bytes


def build_pki(directory: Path) -> Pki:
    now = datetime.now(UTC)

    def serial() -> int:
        return secrets.randbits(120) + 1

    root_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = build_root_certificate(root_key, "Test Root", serial=serial(), now=now, days=2)
    other = build_root_certificate(other_key, "Other Root", serial=serial(), now=now, days=2)
    server_key, inter_key, device_key, self_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    root_issuer = Issuer(root, root_key)
    server = build_server_certificate(
        server_key.public_key(), [HOST, "localhost"], root_issuer, serial=serial(), now=now, days=2
    )
    inter = build_intermediate_certificate(
        inter_key.public_key(), "Test Intermediate", root_issuer, serial=serial(), now=now, days=2
    )
    device = build_device_certificate(
        device_key.public_key(),
        "device-1",
        Issuer(inter, inter_key),
        serial=serial(),
        now=now,
        days=2,
    )
    self_signed = build_self_signed_device_certificate(
        self_key, "device-self", serial=serial(), now=now, days=2
    )
    return Pki(
        root_file=_write(directory / "root.pem", root),
        other_root_file=_write(directory / "other-root.pem", other),
        server_chain_file=_write(directory / "server.pem", server),
        server_key_file=_write(directory / "server.key", server_key),
        device_chain_file=_write(directory / "device.pem", device, inter),
        device_key_file=_write(directory / "device.key", device_key),
        self_signed_file=_write(directory / "self.pem", self_signed),
        self_signed_key_file=_write(directory / "self.key", self_key),
        device_der=_der(device),
        intermediate_der=_der(inter),
        self_signed_der=_der(self_signed),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"))


def client_context(
    pki: Pki,
    *,
    identity: tuple[Path, Path] | None = None,
    version: ssl.TLSVersion | None = None,
    cafile: Path | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile or pki.root_file)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if identity is not None:
        context.load_cert_chain(*identity)
    return context


# --- an app that echoes what it saw ---------------------------------------------------------


@dataclass
class EchoApp:
    """A raw ASGI app: reads the whole body, answers JSON describing the request it saw."""

    calls: int = 0
    scopes: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")  # the server must carry on without
        self.calls += 1
        self.scopes.append(scope)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        tls = scope["extensions"]["tls"]
        payload = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "client_port": scope["client"][1],
            "body_length": len(body),
            "body": body[:64].decode("latin-1"),
            "chain_der": [der.hex() for der in tls["devprov.client_chain_der"]],
            "chain_pem": tls["client_cert_chain"],
            "name": tls["client_cert_name"],
            "tls_version": tls["tls_version"],
        }
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})


# --- running a server in the test's event loop ------------------------------------------------


@asynccontextmanager
async def serving(
    pki: Pki, app: Any, *, context: Any = None, **limits: Any
) -> AsyncIterator[tuple[HttpsServer, int]]:
    """``app`` on an HttpsServer on 127.0.0.1; ``limits`` are its keyword arguments (``policy``,
    ``max_body_bytes``...), ``context`` its TLS context(s) (one context by default)."""
    context = context or build_server_context(pki.server_chain_file, pki.server_key_file)
    server = HttpsServer(app, context, **limits)
    port = await server.start(HOST, 0)
    try:
        yield server, port
    finally:
        await server.close()


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run(scenario: Callable[[], Awaitable[T]], *, server_errors: bool = False) -> T:
    """Run ``scenario`` in a fresh loop.

    Fails on anything the loop had to catch itself (an exception escaping a protocol callback,
    a task never awaited) and, unless ``server_errors``, on errors the server logged.
    """
    caught: list[dict[str, Any]] = []
    errors = _Errors()
    log = logging.getLogger("devprov.http")

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: caught.append(ctx))
        return await scenario()

    log.addHandler(errors)
    try:
        result = asyncio.run(main())
    finally:
        log.removeHandler(errors)
    assert not caught, caught
    assert server_errors or not errors.records, [r.getMessage() for r in errors.records]
    return result


# --- a blocking client, run with asyncio.to_thread -------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_reply(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    while lines[0].startswith("HTTP/1.1 1"):  # skip informational responses
        head, _, body = body.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split(" ")[1]), headers, body)


def connect(
    port: int, context: ssl.SSLContext, *, server_hostname: str = HOST, session: Any = None
) -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except BaseException:
        raw.close()
        raise


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, context: ssl.SSLContext, request: bytes, **options: Any) -> Reply:
    """Send ``request`` on a new connection and read until the server closes it."""
    with connect(port, context, **options) as tls:
        tls.sendall(request)
        return parse_reply(read_all(tls))


def get(path: str = "/", *, extra: bytes = b"") -> bytes:
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n"
    )
