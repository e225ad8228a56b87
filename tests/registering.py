"""Registering devices with an in-process devprov server (tests/mqtt/conftest.py LocalServer) the
way the hub tests need: a symmetric-key group device over HTTPS (`devprov device register`) or
over MQTT (a raw client, which the register answers with the outcome, and a poll of its operation
with the same), and an X.509 device over either, each returning the final operation.

A register that carries a CSR (docs/operational-certificates.md#the-wire) goes over HTTPS or MQTT
to any devprov's listeners (an :class:`Endpoint`: a LocalServer's or a ``devprov serve``
process's), authenticated by a token, an onboarding certificate or an operational one."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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


# --- registers with a CSR -------------------------------------------------------------------

CSR_API_VERSION = "2025-07-01-preview"  # the first api-version whose register carries a csr
POLLS = 50  # polls of an operation still assigning before giving up: a failure, not a measure


@dataclass(frozen=True)
class Endpoint:
    """Where devices register: devprov's service scope and device listeners."""

    scope: str
    https_port: int
    mqtt_port: int
    ca_file: Path  # the CA of devprov's server certificate


def endpoint_of(server: LocalServer) -> Endpoint:
    return Endpoint(server.scope, server.https_port, server.mqtt_port, server.ca_file)


def csr_over_https(
    endpoint: Endpoint,
    device: str,
    csr: str,
    *,
    authorization: str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> Any:
    """Register ``device`` with ``csr`` over HTTPS (a SAS ``authorization``, or the client
    certificate chain ``cert`` and its ``key``); the final operation, polled while assigning."""
    base = f"https://localhost:{endpoint.https_port}/{endpoint.scope}/registrations/{device}"
    query = f"api-version={CSR_API_VERSION}"
    headers = {"Authorization": authorization} if authorization else {}
    context = tls_context(endpoint.ca_file, cert, key)
    with httpx.Client(verify=context, headers=headers) as client:
        answer = client.put(f"{base}/register?{query}", json={"registrationId": device, "csr": csr})
        for _ in range(POLLS):
            if answer.status_code != 202:
                break
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            operation = answer.json()["operationId"]
            answer = client.get(f"{base}/operations/{operation}?{query}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def csr_over_mqtt(
    endpoint: Endpoint,
    device: str,
    csr: str,
    *,
    password: str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> Any:
    """Register ``device`` with ``csr`` over MQTT (a SAS token as ``password``, or the client
    certificate chain ``cert`` and its ``key``); the final operation."""
    context = tls_context(endpoint.ca_file, cert, key)
    username = (
        f"{endpoint.scope}/registrations/{device}/api-version={CSR_API_VERSION}"
        "&ClientVersion=tests%2F1"
    )
    with RawClient(endpoint.mqtt_port, context) as client:
        connack = client.connect(endpoint.scope, device, password=password, username=username)
        assert connack.return_code == 0
        client.subscribe()
        document = json.dumps({"registrationId": device, "csr": csr}).encode()
        answer = client.request("$dps/registrations/PUT/iotdps-register/?$rid=1", document)
        for n in range(POLLS):
            if status(answer) != 202:
                break
            time.sleep(1)
            answer = client.poll(body(answer)["operationId"], rid=str(n + 2))
        assert status(answer) == 200, body(answer)
        return body(answer)
