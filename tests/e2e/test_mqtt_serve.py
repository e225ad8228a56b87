"""``devprov serve`` with MQTT over TLS: the port it prints, a device that registers over it, and
a stop while devices are connected."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.server import running_server

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_device_registers_over_mqtt_and_a_stop_closes_connections(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path / "data", "--mqtt-port", str(port)) as server:
        assert server.mqtt_port == port
        listening = next(line for line in server.output if "devprov is listening" in line)
        assert f"mqtts://localhost:{port}" in listening
        assert main(["hub", "add", "hub-e2e.azure-devices.net", *server.cli_args()]) == 0
        assert (
            main(["enrollment-group", "create", "keys", "--symmetric-key", *server.cli_args()]) == 0
        )
        c = open_container(server.data_dir)
        try:
            scope = c.directory.get("default").id_scope
            group = c.enrollments.attestation_mechanism("default", EnrollmentKind.GROUP, "keys")
        finally:
            c.engine.dispose()
        assert group.primary_key is not None
        key = derive_device_key(group.primary_key, "e2e-sensor")
        token = build_sas_token(key, f"{scope}/registrations/e2e-sensor", int(time.time()) + 600)
        with RawClient(port, tls_context(server.ca_file)) as client:
            assert client.connect(scope, "e2e-sensor", password=token).return_code == 0
            client.subscribe()
            answer = client.register("e2e-sensor")
            assert status(answer) == 200  # decided during the call: the outcome
            assert body(answer)["status"] == "assigned"
            assert body(answer)["registrationState"]["assignedHub"] == "hub-e2e.azure-devices.net"
            final = client.poll(body(answer)["operationId"])
            assert status(final) == 200 and body(final) == body(answer)
            idle = RawClient(port, tls_context(server.ca_file))
            assert idle.connect(scope, "e2e-sensor", password=token).return_code == 0
            server.process.send_signal(signal.SIGTERM)
            assert idle.closed_by_server(timeout=15)
            idle.close()
            assert server.process.wait(timeout=30) == 0
    # The output reader has ended here (running_server joins it).
    assert any("devprov stopped" in line for line in server.output)


def test_mqtt_off(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--mqtt-port", "0") as server:
        assert server.mqtt_port is None
        listening = next(line for line in server.output if "devprov is listening" in line)
        assert "mqtts://" not in listening
