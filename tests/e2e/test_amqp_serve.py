"""``devprov serve`` with AMQP over TLS: the port it prints and a TLS handshake on it, and
``--amqp-port 0`` turning it off. Devices registering over AMQP end to end are tested with the
AMQP engine's client (tests/amqp)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.instances import free_port
from tests.server import running_server

pytestmark = pytest.mark.e2e


def listening_line(output: list[str]) -> str:
    return next(line for line in output if "devprov is listening" in line)


def test_amqp_listens_on_the_port_it_prints(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path / "data", "--amqp-port", str(port)) as server:
        assert server.amqp_port == port
        assert f" and amqps://localhost:{port} (" in listening_line(server.output)
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with (
            socket.create_connection(("localhost", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_amqp_off(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--amqp-port", "0") as server:
        assert server.amqp_port is None
        assert "amqps://" not in listening_line(server.output)
