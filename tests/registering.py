"""Registering devices with an in-process devprov server (tests/mqtt/conftest.py LocalServer) the
way the hub tests need: a symmetric-key group device over HTTPS (`devprov device register`) or
over MQTT (a raw client, which the register answers with the outcome, and a poll of its operation
with the same), and an X.509 device over either, each returning the final operation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import derive_device_key
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.mqtt.conftest import LocalServer
from tests.mqtt.test_dps import sas_password


def group_key(server: LocalServer, group: str) -> str:
    """The primary key of a symmetric-key enrollment group."""
    mechanism = server.container.enrollments.attestation_mechanism(
        "default", EnrollmentKind.GROUP, group
    )
    assert mechanism.primary_key is not None
    return mechanism.primary_key


def _cli(server: LocalServer, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    server.cli("device", "register", *args, "--json")
    printed = capsys.readouterr()
    assert printed.out, printed.err
    return json.loads(printed.out)


def _mqtt(server: LocalServer, device: str, context: Any, password: str | None) -> Any:
    with RawClient(server.mqtt_port, context) as client:
        assert client.connect(server.scope, device, password=password).return_code == 0
        client.subscribe()
        answer = client.register(device)
        # Decided during the call: the outcome, with no retry-after; a poll reads the same.
        assert answer.topic == "$dps/registrations/res/200/?$rid=1", body(answer)
        assert body(answer)["status"] != "assigning"
        polled = client.poll(body(answer)["operationId"])
        assert (status(polled), body(polled)) == (200, body(answer))
        return body(answer)


def key_over_https(
    server: LocalServer, capsys: pytest.CaptureFixture[str], group: str, device: str
) -> Any:
    return _cli(server, capsys, device, "--group-key", group_key(server, group))


def key_over_mqtt(
    server: LocalServer, capsys: pytest.CaptureFixture[str], group: str, device: str
) -> Any:
    key = derive_device_key(group_key(server, group), device)
    password = sas_password(server.scope, device, key)
    return _mqtt(server, device, tls_context(server.ca_file), password)


def x509_over_https(
    server: LocalServer, capsys: pytest.CaptureFixture[str], device: str, chain: Path, key: Path
) -> Any:
    return _cli(server, capsys, device, "--cert", str(chain), "--key", str(key))


def x509_over_mqtt(
    server: LocalServer, capsys: pytest.CaptureFixture[str], device: str, chain: Path, key: Path
) -> Any:
    return _mqtt(server, device, tls_context(server.ca_file, chain, key), None)
