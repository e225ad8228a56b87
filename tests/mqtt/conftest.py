"""A real devprov server in this process (HTTPS, MQTT over TLS and AMQP over TLS on loopback, a
real SQLite file), run on an event loop in a thread so that tests can set short timeouts, plus the demo PKI
and enrollments the MQTT tests register against."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devprov.bootstrap import Container, open_container
from devprov.cli.endpoints import Endpoints, build_endpoints
from devprov.cli.main import main
from devprov.http.listener import bind_listeners
from devprov.transport.policy import ConnectionPolicy

HUB = "hub-mqtt.azure-devices.net"

# Short, so that the timeout tests are quick; everything else as in production.
TEST_POLICY = ConnectionPolicy(
    max_connections=200, handshake_timeout=2.0, head_timeout=1.0, evict_after=0.5
)


@dataclass
class LocalServer:
    data_dir: Path
    container: Container
    https_port: int
    mqtt_port: int
    amqp_port: int
    loop: asyncio.AbstractEventLoop
    endpoints: Endpoints
    thread: threading.Thread

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def scope(self) -> str:
        return self.container.directory.get("default").id_scope

    def cli(self, *args: str) -> int:
        return main([*args, "--data-dir", str(self.data_dir)])


def start_local_server(root: Path, policy: ConnectionPolicy = TEST_POLICY) -> LocalServer:
    """Serve ``root`` on loopback from an event loop in a daemon thread."""
    container = open_container(root, initialize=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Endpoints, int, int, int]:
        endpoints = build_endpoints(container, policy, mqtt=True, amqp=True)
        https = bind_listeners("127.0.0.1", 0)
        mqtt = bind_listeners("127.0.0.1", 0)
        amqp = bind_listeners("127.0.0.1", 0)
        https_port = int(https[0].getsockname()[1])
        container.data.write_endpoint("127.0.0.1", https_port)
        await endpoints.serve_on(https, mqtt, amqp)
        return endpoints, https_port, *(int(x[0].getsockname()[1]) for x in (mqtt, amqp))

    started = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    endpoints, https_port, mqtt_port, amqp_port = started
    return LocalServer(root, container, https_port, mqtt_port, amqp_port, loop, endpoints, thread)


def stop_local_server(server: LocalServer) -> None:
    asyncio.run_coroutine_threadsafe(server.endpoints.close(), server.loop).result(30)
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(10)
    server.loop.close()
    server.container.engine.dispose()


@pytest.fixture(scope="package")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = start_local_server(tmp_path_factory.mktemp("mqtt") / "data")
    try:
        assert server.cli("hub", "add", HUB) == 0
        yield server
    finally:
        stop_local_server(server)


@pytest.fixture(scope="package")
def demo_pki(local_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo PKI (root, intermediate, device 'my-device'), its root proven and trusted by the
    group 'mqtt-group'; a stranger's PKI beside it."""
    directory = tmp_path_factory.mktemp("mqtt-pki")
    assert main(["ca", "demo", str(directory)]) == 0
    assert main(["ca", "demo", str(directory / "stranger"), "--device-name", "stranger"]) == 0
    root = str(directory / "root")
    assert (
        local_server.cli(
            "certificate", "prove", "mqtt-root", "--cert", f"{root}.pem", "--key", f"{root}.key"
        )
        == 0
    )
    assert (
        local_server.cli("enrollment-group", "create", "mqtt-group", "--ca-name", "mqtt-root") == 0
    )
    return directory
