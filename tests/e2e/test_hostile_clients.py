"""A real ``devprov serve`` under hostile clients: an operator still reaches the management API
while devices fill the connection cap, connections past the cap are refused without a
traceback, and client values reach the server's log escaped."""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
from pathlib import Path

import pytest

from devprov.cli.main import main
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

CAP = 8


def tls_keep_alive(server: ServerProcess) -> ssl.SSLSocket:
    """A device-like connection: handshake, one request, then it stays open and says nothing."""
    context = ssl.create_default_context(cafile=server.ca_file)
    tls = context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=10),
        server_hostname="localhost",
    )
    tls.sendall(b"GET /nothing-here HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    assert data.startswith(b"HTTP/1.1 404")
    return tls


def refused_without_tls(server: ServerProcess) -> bool:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        try:
            return raw.recv(1) == b""
        except ConnectionResetError:
            return True


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def test_an_operator_reaches_the_management_api_while_devices_fill_the_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_server(tmp_path / "data", "--max-connections", str(CAP)) as server:
        # Devices fill the cap: half of them silent in their handshake, half idle after a request.
        holders: list[socket.socket] = [
            socket.create_connection(("127.0.0.1", server.port)) for _ in range(CAP // 2)
        ]
        holders += [tls_keep_alive(server) for _ in range(CAP - CAP // 2)]
        # Negative control: while every device began waiting less than 2 s ago, newcomers are
        # refused at once, before any TLS, and many of them cost one log line, not one each.
        start = time.monotonic()
        assert all(refused_without_tls(server) for _ in range(20))
        assert time.monotonic() - start < 1.5  # all within the devices' first 2 s
        time.sleep(2.5)  # the devices have now waited on their clients for 2 s: evictable
        assert main(["certificate", "list", *server.cli_args(), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []
        evicted = [closed_by_server(holder) for holder in holders]
        for holder in holders:
            holder.close()
    output = "".join(server.output)
    assert any(evicted) and not all(evicted)  # the operator took the oldest slot(s), no more
    assert "Traceback" not in output and "ERROR" not in output
    (line,) = [line for line in server.output if "refused" in line]
    assert "connections: refused 20 new connections at the cap" in line
    assert f"(cap {CAP}, --max-connections;" in line
    assert "evicted" in "".join(server.output)


def test_client_values_reach_the_server_log_escaped(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--log-level", "DEBUG") as server:
        context = ssl.create_default_context(cafile=server.ca_file)
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=10),
            server_hostname="localhost",
        ) as tls:
            tls.sendall(
                b"PUT /0ne00000000/registrations/evil%1B]0;owned%07%1B[2J%C2%9B/register HTTP/1.1\r\n"
                b"Host: localhost\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
            )
            while tls.recv(65536):
                pass
        time.sleep(0.3)
    output = "".join(server.output)
    assert "evil\\x1b]0;owned\\x07\\x1b[2J\\x9b" in output
    assert "\x1b" not in output and "\x07" not in output and "\x9b" not in output


def hold_connections(
    server: ServerProcess, count: int, *, connect_timeout: float = 5
) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections; returns those the server kept open and how many it closed
    at once. A connection the server could not accept yet counts as neither."""
    opened: list[socket.socket] = []
    timeouts = 0
    for _ in range(count):
        try:
            address = ("127.0.0.1", server.port)
            opened.append(socket.create_connection(address, timeout=connect_timeout))
        except TimeoutError:  # the listen backlog is full: nothing is being accepted now
            timeouts += 1
            if timeouts == 3:
                break
    time.sleep(0.5)
    closed = set(select.select(opened, [], [], 0)[0])  # readable at once: EOF or reset
    for sock in closed:
        sock.close()
    return [sock for sock in opened if sock not in closed], len(closed)


def test_the_default_cap_stays_below_the_descriptor_limit(tmp_path: Path) -> None:
    # 200 descriptors: the default cap is 50 (a quarter, since the limit is small), so accept()
    # never runs out of descriptors and nothing is logged per connection.
    with running_server(tmp_path / "data", open_files=200) as server:
        kept, refused = hold_connections(server, 150)
        for sock in kept:
            sock.close()
    output = "".join(server.output)
    assert (len(kept), refused) == (50, 100)
    assert "Traceback" not in output and "out of system resource" not in output
    (line,) = [line for line in server.output if "refused" in line]
    assert "refused 100 new connections at the cap" in line and "(cap 50," in line


def test_running_out_of_descriptors_is_counted_not_logged_per_attempt(tmp_path: Path) -> None:
    # A cap set above the descriptor limit: accept() itself fails with EMFILE, which asyncio
    # would log with a traceback for every attempt (about 700 KiB of log a second). The server
    # is stopped while that goes on, so that asyncio's pending retries outlive the listener.
    kept: list[socket.socket] = []
    try:
        with running_server(
            tmp_path / "data", "--max-connections", "1000", open_files=200
        ) as server:
            # 200 descriptors, about 190 for connections; 60 more wait in the listen backlog.
            kept, _ = hold_connections(server, 250, connect_timeout=3)
            time.sleep(2.5)  # asyncio retries accept() every second
    finally:
        for sock in kept:
            sock.close()
    output = "".join(server.output)
    assert "Traceback" not in output and "out of system resource" not in output
    assert len(output) < 20_000
    assert "accepts for want of file descriptors" in output
