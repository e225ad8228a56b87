"""What an idle TLS connection costs the server: devprov's server context hands OpenSSL's record
buffers back between records (docs/performance.md#memory-per-idle-connection), measured in a
fresh process holding real TLS 1.3 sessions over memory BIOs, beside the same context with
only that mode cleared.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from OpenSSL import SSL
from OpenSSL._util import lib

from devprov.transport.tls import TlsSession, build_server_context
from tests.http.conftest import Pki, build_pki

REPO = Path(__file__).resolve().parents[2]
SESSIONS = 400


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _client_context(chain: str, key: str) -> SSL.Context:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.use_certificate_chain_file(chain)
    context.use_privatekey_file(key)
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)  # the client's own buffers out of the figure
    return context


def _idle_pair(
    server_context: SSL.Context, client_context: SSL.Context
) -> tuple[TlsSession, SSL.Connection]:
    """A full handshake, one request and one answer, then nothing: an idle device."""
    server = TlsSession(server_context)
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    for _ in range(10):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        _to_server(client, server)
        done = server.handshake()
        client.bio_write(server.outgoing() or b"")
        if done:
            break
    client.do_handshake()
    _round_trip(server, client)
    return server, client


def _to_server(client: SSL.Connection, server: TlsSession) -> None:
    while True:
        try:
            data = client.bio_read(65536)
        except SSL.WantReadError:
            return
        server.receive(data)


def _round_trip(server: TlsSession, client: SSL.Connection) -> None:
    """The client sends a CONNECT's worth of bytes, the server answers a CONNACK's worth."""
    client.sendall(b"C" * 200)
    _to_server(client, server)
    plaintext, _ = server.read()
    assert plaintext == b"C" * 200
    server.write(b"A" * 4)
    client.bio_write(server.outgoing())
    assert client.recv(65536) == b"A" * 4


def hold_idle_sessions(argv: list[str]) -> None:
    """In a fresh process: print the RSS growth, KiB per session, of SESSIONS idle sessions."""
    chain, key, device_chain, device_key, variant = argv
    server_context = build_server_context(Path(chain), Path(key))
    if variant == "buffers-kept":
        # pyOpenSSL can set a mode but not clear one: OpenSSL's own call does.
        lib.SSL_CTX_clear_mode(server_context._context, SSL.MODE_RELEASE_BUFFERS)
    client_context = _client_context(device_chain, device_key)
    held = [_idle_pair(server_context, client_context) for _ in range(8)]  # warm-up
    before = _rss_kib()
    held += [_idle_pair(server_context, client_context) for _ in range(SESSIONS)]
    growth = (_rss_kib() - before) / SESSIONS
    for server, client in held:  # and every one still talks, its buffers taken again
        _round_trip(server, client)
    print(growth)


def _growth_kib(pki: Pki, variant: str) -> float:
    files = (pki.server_chain_file, pki.server_key_file, pki.device_chain_file, pki.device_key_file)
    code = (
        "import sys; from tests.transport.test_tls import hold_idle_sessions as h; h(sys.argv[1:])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, files), variant],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"))


def test_the_server_context_releases_record_buffers_of_idle_connections(pki: Pki) -> None:
    released = _growth_kib(pki, "devprov")
    kept = _growth_kib(pki, "buffers-kept")
    # A read buffer alone is over 16 KiB (one TLS record and its header).
    assert kept - released > 12, f"{released:.1f} KiB per idle session, {kept:.1f} with buffers"
