"""The fixed ports of Microsoft's MQTT device SDKs, for the interop tests that need them: whether
a test server may listen on them here, who holds one that is taken, and whether the server
under test serves MQTT over WebSocket at all.

The Python device SDK connects to 8883, or to 443 with ``websockets=True``, and Node's ``MqttWs``
to 443 (docs/sdk-clients.md#summary-host-port-and-trust): a test that cannot have those ports
skips and says why, naming the process in the way when it can be found.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

import pytest

WEBSOCKET_PATH = "/$iothub/websocket"
PROBE_TIMEOUT_SECONDS = 10
_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def skip_unless_free(ports: Iterable[int], client: str) -> None:
    """Skip the test (or the module, from a module fixture) unless a server may listen on every
    one of ``ports``; the reason names the first port refused and why."""
    for port in ports:
        reason = port_refusal(port, client)
        if reason is not None:
            pytest.skip(reason)


def port_refusal(port: int, client: str, host: str = "localhost") -> str | None:
    """Why a server cannot listen on ``port`` at every address of ``host``, in a sentence that
    says what ``client`` (the SDK that needs the port) loses; None when it can."""
    for family, address in _addresses(host, port):
        try:
            probe_bind(family, address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} is taken by {holder_of(port)}: {client} connects to no other "
                    "port; stop it to run these tests"
                )
            if exc.errno in (errno.EACCES, errno.EPERM):
                return (
                    f"port {port} cannot be bound by this user ({exc.strerror}): {client} "
                    "connects to no other port; run these tests as root, with "
                    "CAP_NET_BIND_SERVICE, or with a lower net.ipv4.ip_unprivileged_port_start"
                )
            return f"port {port} cannot be bound at {address[0]} ({exc}): {client} needs it"
    return None


def probe_bind(family: int, address: tuple[str, int]) -> None:
    """Bind and listen as ``devprov serve`` does (SO_REUSEADDR), then let the port go."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        probe.listen()


def holder_of(port: int) -> str:
    """``pid N (name)`` of the process listening on TCP ``port``, read from /proc; less when
    /proc does not show it (another user's or another namespace's process)."""
    inodes = set(_listening_inodes(port))
    if not inodes:
        return "another process"
    for pid in _pids():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return f"pid {pid} ({_name(pid)})"
    return "another process (its pid is not visible to this user)"


def websocket_refusal(port: int, ca_file: Path, host: str = "localhost") -> str | None:
    """Why the server on ``port`` cannot carry MQTT over WebSocket, or None when it serves it:
    an upgrade of DPS's path is answered 101 (or 426) where the endpoint exists, 404 where not.
    """
    context = ssl.create_default_context(cafile=str(ca_file))
    connection = http.client.HTTPSConnection(
        host, port, context=context, timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        connection.request(
            "GET",
            WEBSOCKET_PATH,
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                "Sec-WebSocket-Protocol": "mqtt",
            },
        )
        status = connection.getresponse().status
    finally:
        connection.close()
    if status in (101, 426):
        return None
    return (
        f"this devprov has no MQTT over WebSocket endpoint yet: GET {WEBSOCKET_PATH} with an "
        f"upgrade was answered {status}"
    )


def _addresses(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys((family, (a[0], a[1])) for family, _, _, _, a in found))


def _listening_inodes(port: int) -> Iterable[str]:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    yield inode


def _pids() -> list[int]:
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "name unknown"
