"""Full mutual-TLS handshakes plus one GET per connection: devprov's HTTPS server beside
``openssl s_server -www`` on the same certificates, measured in the same run.

Certificates are EC P-256 and made fresh in a temporary directory: root -> intermediate -> device
(the device presents its leaf and the intermediate) and root -> server. Each server runs in its
own process; one stdlib-ssl client opens a new connection per request, for ``--seconds`` each.
The figures are connections per second and the server process's CPU time per connection (from
/proc), the latter being what a handshake costs the server.

    python bench/tls_handshake.py [--seconds 5] [--tls 1.3|1.2]

Other benches can reuse :func:`build_pki`, :func:`devprov_server`, :func:`openssl_server` and
:func:`measure_handshakes`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devprov.cli import event_loop
from devprov.core.issuance import (
    Issuer,
    build_device_certificate,
    build_intermediate_certificate,
    build_root_certificate,
    build_server_certificate,
)
from devprov.http.server import HttpsServer, Receive, Scope, Send
from devprov.storage.executor import StorageExecutor
from devprov.transport.tls import build_server_context

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Pki:
    directory: Path
    root: Path
    server_chain: Path
    server_key: Path
    device_chain: Path  # leaf then intermediate
    device_key: Path


@dataclass(frozen=True)
class Measurement:
    connections: int
    seconds: float
    server_cpu_seconds: float | None

    @property
    def per_second(self) -> float:
        return self.connections / self.seconds

    @property
    def server_cpu_per_connection_us(self) -> float | None:
        if self.server_cpu_seconds is None or not self.connections:
            return None
        return self.server_cpu_seconds / self.connections * 1e6


def build_pki(directory: Path) -> Pki:
    """Write the benchmark's certificates and keys (PEM) into ``directory``."""
    now = datetime.now(UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def serial() -> int:
        return secrets.randbits(120) + 1

    def write(name: str, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
        out = b""
        for item in items:
            if isinstance(item, x509.Certificate):
                out += item.public_bytes(serialization.Encoding.PEM)
            else:
                out += item.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
        (directory / name).write_bytes(out)
        return directory / name

    root_key, inter_key, device_key, server_key = key(), key(), key(), key()
    root = build_root_certificate(root_key, "Bench Root", serial=serial(), now=now, days=2)
    issuer = Issuer(root, root_key)
    inter = build_intermediate_certificate(
        inter_key.public_key(), "Bench Intermediate", issuer, serial=serial(), now=now, days=2
    )
    device = build_device_certificate(
        device_key.public_key(),
        "bench-device",
        Issuer(inter, inter_key),
        serial=serial(),
        now=now,
        days=2,
    )
    server = build_server_certificate(
        server_key.public_key(), [HOST], issuer, serial=serial(), now=now, days=2
    )
    return Pki(
        directory=directory,
        root=write("root.pem", root),
        server_chain=write("server.pem", server),
        server_key=write("server.key", server_key),
        device_chain=write("device.pem", device, inter),
        device_key=write("device.key", device_key),
    )


def client_context(pki: Pki, tls_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.root)
    context.load_cert_chain(pki.device_chain, pki.device_key)
    if tls_version is not None:
        context.minimum_version = context.maximum_version = tls_version
    return context


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_connection(port: int, context: ssl.SSLContext, request: bytes = REQUEST) -> bytes:
    """A new TCP connection, a full mutual-TLS handshake, one request, read until the close."""
    chunks = []
    with (
        socket.create_connection((HOST, port)) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        tls.sendall(request)
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def measure_handshakes(
    port: int,
    context: ssl.SSLContext,
    *,
    seconds: float = 5.0,
    server_pid: int | None = None,
    request: bytes = REQUEST,
) -> Measurement:
    """Sequential connections to ``port`` for ``seconds``; each must answer HTTP 200."""
    reply = one_connection(port, context, request)  # warm-up, and a check
    if b" 200 " not in reply.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"unexpected reply: {reply[:80]!r}")
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        one_connection(port, context, request)
        count += 1
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Measurement(count, elapsed, cpu)


def _wait_until_listening(port: int, process: subprocess.Popen[Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(f"nothing listens on {port}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()  # by pid: only the process this script started
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def devprov_server(pki: Pki, *, hop: bool = False) -> Iterator[tuple[int, int]]:
    """devprov's HttpsServer with a trivial app in a child process: yields (port, pid). With
    ``hop`` the app first awaits a no-op on devprov's storage threads (``StorageExecutor``), the
    hop every device request makes to reach its use case."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(pki.directory), *(["--hop"] if hop else [])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        _wait_until_listening(port, process)
        yield port, process.pid
    finally:
        _stop(process)


@contextmanager
def openssl_server(pki: Pki, openssl: str = "openssl") -> Iterator[tuple[int, int]]:
    """``openssl s_server -www``, requiring a client certificate: yields (port, pid)."""
    port = _free_port()
    command = [
        openssl, "s_server", "-accept", f"{HOST}:{port}", "-cert", str(pki.server_chain),
        "-key", str(pki.server_key), "-www", "-Verify", "1", "-verify_quiet", "-quiet",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_listening(port, process)
        yield port, process.pid
    finally:
        _stop(process)


def _serve(directory: Path, *, hop: bool) -> None:
    """The child process: HttpsServer on a free port, printed on stdout, until terminated; on
    the event loop ``devprov serve`` runs on (uvloop's where installed)."""
    storage = StorageExecutor()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if hop:
            await storage.run(int)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        context = build_server_context(directory / "server.pem", directory / "server.key")
        server = HttpsServer(app, context)
        print(await server.start(HOST, 0), flush=True)
        await asyncio.Event().wait()

    event_loop.run(main())


def _report(name: str, result: Measurement) -> None:
    cpu = result.server_cpu_per_connection_us
    cpu_text = f"{cpu:8.0f} us server CPU/conn" if cpu is not None else "server CPU n/a"
    print(f"{name:<28} {result.per_second:8.1f} conn/s  ({result.connections} in "
          f"{result.seconds:.1f} s)  {cpu_text}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    parser.add_argument("--openssl", default="openssl")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, hop=args.hop)
        return 0
    version = ssl.TLSVersion.TLSv1_3 if args.tls == "1.3" else ssl.TLSVersion.TLSv1_2
    directory = Path(tempfile.mkdtemp(prefix="devprov-bench-"))
    try:
        pki = build_pki(directory)
        context = client_context(pki, version)
        print(f"TLS {args.tls}, EC P-256, client chain leaf+intermediate, {args.seconds:g} s each")
        with devprov_server(pki) as (port, pid):
            ours = measure_handshakes(port, context, seconds=args.seconds, server_pid=pid)
        _report("devprov HttpsServer", ours)
        if shutil.which(args.openssl) is None:
            print(f"{args.openssl} not found: no baseline")
            return 0
        with openssl_server(pki, args.openssl) as (port, pid):
            baseline = measure_handshakes(port, context, seconds=args.seconds, server_pid=pid)
        _report("openssl s_server -www", baseline)
        ratio = f"devprov / s_server: {ours.per_second / baseline.per_second:.2f}x conn/s"
        ours_cpu = ours.server_cpu_per_connection_us
        base_cpu = baseline.server_cpu_per_connection_us
        if ours_cpu and base_cpu:
            ratio += f", {ours_cpu / base_cpu:.2f}x server CPU per connection"
        print(ratio)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
