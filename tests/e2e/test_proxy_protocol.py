"""Behind a load balancer, against a real ``devprov serve --proxy-from``: the address a PROXY
header names is the one the audit trail and the log record for a refused device, over HTTPS
(v1 header) and MQTT over TLS (v2 header); a device with the right key registers through it."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.model import Outcome
from tests.e2e.test_mqtt_serve import free_port
from tests.http.test_proxy_header import v2_header
from tests.mqtt.client import RawClient, tls_context
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

API = "api-version=2021-06-01"
# The load balancer's address: loopback too, but not the 127.0.0.1 the CLI connects from, which
# is not listed and so is served without a header.
BALANCER = "127.0.0.2"
WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc="


def _https_register(server: ServerProcess, header: bytes, scope: str, rid: str, token: str) -> int:
    raw = socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(BALANCER, 0)
    )
    raw.sendall(header)
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        body = b'{"registrationId": "' + rid.encode() + b'"}'
        tls.sendall(
            f"PUT /{scope}/registrations/{rid}/register?{API} HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_the_audit_trail_shows_the_address_from_the_proxy_header(tmp_path: Path) -> None:
    mqtt_port = free_port()
    with running_server(
        tmp_path / "data", "--mqtt-port", str(mqtt_port), "--proxy-from", f"{BALANCER}/32"
    ) as server:
        args = server.cli_args()
        assert main(["hub", "add", "hub-proxy.azure-devices.net", *args]) == 0
        assert main(["enrollment-group", "create", "keys", "--symmetric-key", *args]) == 0
        c = open_container(server.data_dir)
        try:
            scope = c.directory.get("default").id_scope
            group = c.enrollments.attestation_mechanism("default", EnrollmentKind.GROUP, "keys")
        finally:
            c.engine.dispose()
        assert group.primary_key is not None
        expiry = int(time.time()) + 600

        def token(rid: str, key: str) -> str:
            device_key = derive_device_key(key, rid)
            return build_sas_token(device_key, f"{scope}/registrations/{rid}", expiry)

        v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 443\r\n"
        assert (
            _https_register(server, v1, scope, "impostor-https", token("impostor-https", WRONG_KEY))
            == 401
        )
        good = token("sensor-https", group.primary_key)
        assert _https_register(server, v1, scope, "sensor-https", good) == 200

        header = v2_header("2001:db8::42", 40002)
        with RawClient(
            mqtt_port, tls_context(server.ca_file), prefix=header, source=BALANCER
        ) as client:
            refused = client.connect(
                scope, "impostor-mqtt", password=token("impostor-mqtt", WRONG_KEY)
            )
            assert refused.return_code != 0

        c = open_container(server.data_dir)
        try:
            failed = {
                e.registration_id: e.actor
                for e in c.audit.events(limit=100)
                if e.outcome is Outcome.FAILED
            }
        finally:
            c.engine.dispose()
        assert failed["impostor-https"] == "device:impostor-https from 203.0.113.7"
        assert failed["impostor-mqtt"] == "device:impostor-mqtt from 2001:db8::42"
        log = "".join(server.output)
        assert "from 203.0.113.7" in log and "from 2001:db8::42" in log
        assert f"from {BALANCER}" not in log
        # From the balancer's address the header is required: a plain TLS client gets nothing.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _https_register(server, b"", scope, "sensor-https", good)
