"""tests/interop/ports.py: the SDK tests skip, naming the process in the way, when 8883 or 443
is taken or may not be bound, and tell a server with MQTT over WebSocket from one without."""

from __future__ import annotations

import errno
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.http.conftest import Pki, build_pki
from tests.interop import ports

SDK = "the Python device SDK"

# Holds a TCP port the way a broker would, until its standard input closes.
_HOLDER = """
import socket, sys
listener = socket.socket()
try:
    listener.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    print("refused", exc.errno, flush=True)
    raise SystemExit(1)
listener.listen()
print("holding", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_by_another_process(port: int) -> Iterator[subprocess.Popen[str]]:
    """A child process listening on 127.0.0.1:``port``; skips when it cannot."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        first = child.stdout.readline().strip()
        if first != "holding":
            pytest.skip(f"port {port} cannot be held for this test ({first}): in use already?")
        yield child
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()


def test_a_taken_8883_skips_and_names_the_holder() -> None:
    with held_by_another_process(8883) as holder:
        name = Path(sys.executable).name[:15]  # what /proc/<pid>/comm keeps of it
        expected = (
            f"port 8883 is taken by pid {holder.pid} ({name}): the Python device SDK connects "
            "to no other port; stop it to run these tests"
        )
        assert ports.holder_of(8883) == f"pid {holder.pid} ({name})"
        assert ports.port_refusal(8883, SDK) == expected
        with pytest.raises(pytest.skip.Exception, match=r"^port 8883 is taken by pid") as skipped:
            ports.skip_unless_free([8883, 443], SDK)
        assert skipped.value.msg == expected
    # Its twin: the holder gone, the port is free again.
    assert ports.port_refusal(8883, SDK) is None
    ports.skip_unless_free([8883], SDK)  # returns: nothing to skip


def test_a_port_this_user_may_not_bind_skips_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: these tests may run as root, which may bind 443.
    def refuse(family: int, address: tuple[str, int]) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(ports, "probe_bind", refuse)
    with pytest.raises(pytest.skip.Exception) as skipped:
        ports.skip_unless_free([443], SDK)
    assert skipped.value.msg == (
        "port 443 cannot be bound by this user (Permission denied): the Python device SDK "
        "connects to no other port; run these tests as root, with CAP_NET_BIND_SERVICE, or with "
        "a lower net.ipv4.ip_unprivileged_port_start"
    )


# --- the WebSocket probe ----------------------------------------------------------------------


@contextmanager
def https_answering(pki: Pki, status: int) -> Iterator[tuple[int, list[dict[str, str]]]]:
    """An HTTPS server on localhost that answers every GET with ``status``: its port and the
    headers of the requests it received."""
    seen: list[dict[str, str]] = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(status)
            if status != 101:
                self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_chain_file, pki.server_key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("ports-pki"))


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        pytest.param(101, False, id="ok/switching-protocols"),
        pytest.param(426, False, id="ok/upgrade-required"),
        pytest.param(404, True, id="skip/not-found"),
        pytest.param(400, True, id="skip/bad-request"),
    ],
)
def test_websocket_probe(pki: Pki, status: int, refused: bool) -> None:
    with https_answering(pki, status) as (port, seen):
        reason = ports.websocket_refusal(port, pki.root_file)
    if refused:
        assert reason == (
            "this devprov has no MQTT over WebSocket endpoint yet: GET /$iothub/websocket with an "
            f"upgrade was answered {status}"
        )
    else:
        assert reason is None
    (request,) = seen
    assert request["path"] == "/$iothub/websocket"
    assert request["upgrade"] == "websocket" and request["sec-websocket-protocol"] == "mqtt"
