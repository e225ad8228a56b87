"""Memory of the TLS session cache: the server's RSS before and after N connections whose clients
present large certificate chains, with the cache bounded (what ``devprov serve`` runs) beside
the unbounded cache of one SSL context (what it ran before the bound), in the same run.

Each client connection is a full mutual-TLS handshake presenting a chain of about ``--chain-kb``
KB (device certificate and intermediate, each padded with a non-critical private extension,
under OpenSSL's 100 KB limit on a peer's certificate list), then one request, then the server's
close_notify, which keeps the session in the cache. The server is devprov's HttpsServer with an
empty app, in a child process; its RSS is read from /proc.

    python bench/session_cache.py [--connections 2000] [--chain-kb 90] [--budget-mib 64]

:func:`build_large_chain`, :func:`server_process`, :func:`rss_kib` and :func:`connect_many`
serve tests/http/test_tls_session_cache.py too.
"""

from __future__ import annotations

import argparse
import asyncio
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from devprov.core.issuance import Issuer, build_root_certificate, build_server_certificate
from devprov.http.server import HttpsServer, Receive, Scope, Send
from devprov.transport.tls import build_server_context, server_contexts

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
PADDING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")  # a private arc, never recognised


@dataclass(frozen=True)
class LargeChain:
    directory: Path
    root: Path
    chain: Path  # device certificate, then intermediate
    key: Path
    chain_der_bytes: int


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _padding(size: int) -> x509.UnrecognizedExtension:
    # DER OCTET STRING of ``size`` random bytes (long-form length), as the extension's value.
    value = secrets.token_bytes(size)
    length = len(value).to_bytes(3, "big")
    return x509.UnrecognizedExtension(PADDING_OID, b"\x04\x83" + length + value)


def _pem(*items: x509.Certificate) -> bytes:
    return b"".join(item.public_bytes(serialization.Encoding.PEM) for item in items)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def build_large_chain(directory: Path, chain_kb: int) -> LargeChain:
    """A server certificate and a client chain of about ``chain_kb`` KB of DER, in ``directory``.

    Also writes ``server.pem`` and ``server.key`` there for :func:`server_process`.
    """
    now = datetime.now(UTC)
    root_key, inter_key, device_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    root = build_root_certificate(root_key, "Large Chain Root", serial=1, now=now, days=2)
    server = build_server_certificate(
        server_key.public_key(), [HOST], Issuer(root, root_key), serial=2, now=now, days=2
    )
    pad = chain_kb * 1024 // 2
    inter = (
        x509.CertificateBuilder()
        .subject_name(_name("Large Chain Intermediate"))
        .issuer_name(root.subject)
        .public_key(inter_key.public_key())
        .serial_number(3)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_padding(pad), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    device = (
        x509.CertificateBuilder()
        .subject_name(_name("large-chain-device"))
        .issuer_name(inter.subject)
        .public_key(device_key.public_key())
        .serial_number(4)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(_padding(pad), critical=False)
        .sign(inter_key, hashes.SHA256())
    )
    (directory / "root.pem").write_bytes(_pem(root))
    (directory / "server.pem").write_bytes(_pem(server))
    (directory / "server.key").write_bytes(_key_pem(server_key))
    (directory / "chain.pem").write_bytes(_pem(device, inter))
    (directory / "chain.key").write_bytes(_key_pem(device_key))
    der = sum(len(c.public_bytes(serialization.Encoding.DER)) for c in (device, inter))
    return LargeChain(
        directory, directory / "root.pem", directory / "chain.pem", directory / "chain.key", der
    )


def client_context(chain: LargeChain) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=chain.root)
    context.load_cert_chain(chain.chain, chain.key)
    return context


def one_connection(port: int, context: ssl.SSLContext) -> None:
    with socket.create_connection((HOST, port)) as raw:
        # Without TCP_NODELAY the client's last handshake record waits for the ACK of its large
        # certificate message, which the server delays: 40 ms per connection, all of it idle.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(REQUEST)
            while tls.recv(65536):  # to the server's close_notify: the session stays cached
                pass


def connect_many(port: int, context: ssl.SSLContext, count: int) -> float:
    """``count`` sequential connections; returns the seconds they took."""
    start = time.perf_counter()
    for _ in range(count):
        one_connection(port, context)
    return time.perf_counter() - start


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@contextmanager
def server_process(directory: Path, budget_mib: int | None) -> Iterator[tuple[int, int]]:
    """HttpsServer with an empty app in a child process: yields (port, pid).

    ``budget_mib`` bounds the session cache as ``devprov serve`` does (tls.server_contexts);
    None runs one SSL context with OpenSSL's cache alone, as before the bound.
    """
    budget = "unbounded" if budget_mib is None else str(budget_mib)
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(directory), budget],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield port, process.pid
    finally:
        process.terminate()  # by pid: only the child this function started
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _serve(directory: Path, budget: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        chain, key = directory / "server.pem", directory / "server.key"
        if budget == "unbounded":
            server = HttpsServer(app, build_server_context(chain, key))
        else:
            contexts = server_contexts(chain, key, session_cache_bytes=int(budget) * 1024 * 1024)
            server = HttpsServer(app, contexts)
        print(await server.start(HOST, 0), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def measure(chain: LargeChain, budget_mib: int | None, connections: int) -> tuple[int, int, float]:
    """RSS (KiB) before and after ``connections``, and the seconds they took."""
    context = client_context(chain)
    with server_process(chain.directory, budget_mib) as (port, pid):
        connect_many(port, context, 5)  # warm-up: first allocations, imports, the loop
        before = rss_kib(pid)
        seconds = connect_many(port, context, connections)
        time.sleep(0.2)  # the last connections close
        return before, rss_kib(pid), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--chain-kb", type=int, default=90, help="client chain size (KB of DER)")
    parser.add_argument("--budget-mib", type=int, default=64, help="the bounded cache's budget")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(Path(args.serve[0]), args.serve[1])
        return 0
    directory = Path(tempfile.mkdtemp(prefix="devprov-bench-"))
    try:
        chain = build_large_chain(directory, args.chain_kb)
        print(
            f"{args.connections} connections, each a full mutual-TLS handshake presenting a "
            f"{chain.chain_der_bytes:,}-byte chain, one request, close_notify"
        )
        print(f"{'session cache':<34} {'RSS before':>11} {'RSS after':>11} {'growth':>10} "
              f"{'per connection':>15} {'conn/s':>8}")  # fmt: skip
        for label, budget in (
            ("one SSL context (unbounded)", None),
            (f"bounded, {args.budget_mib} MiB (devprov serve)", args.budget_mib),
        ):
            before, after, seconds = measure(chain, budget, args.connections)
            growth = after - before
            print(f"{label:<34} {before / 1024:>8.1f} MiB {after / 1024:>7.1f} MiB "
                  f"{growth / 1024:>6.1f} MiB {growth / args.connections:>11.1f} KiB "
                  f"{args.connections / seconds:>8.0f}")  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
