"""DPS's device API over MQTT against a real server (TLS on loopback, a real SQLite file): CONNECT
authentication with X.509 and SAS tokens, the register and poll topics, DPS's answers and every
refusal, with a raw client that sends exactly DPS's packets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devprov.cli.main import main
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.mqtt.codec import (
    ACCEPTED,
    BAD_USERNAME_OR_PASSWORD,
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    UNACCEPTABLE_PROTOCOL,
    ConnAck,
    Connect,
    SubAck,
)
from devprov.service.device_answer import RETRY_AFTER_SECONDS
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.mqtt.conftest import HUB, LocalServer


@pytest.fixture(params=["tls", "websocket"])
def transport(request: pytest.FixtureRequest) -> str:
    """MQTT over TLS on the MQTT port, or inside a WebSocket on the HTTPS port."""
    return str(request.param)


def client_for(server: LocalServer, context, transport: str) -> RawClient:
    if transport == "websocket":
        return RawClient(server.https_port, context, websocket=True)
    return RawClient(server.mqtt_port, context)


def device_context(server: LocalServer, pki: Path, name: str = "my-device"):
    return tls_context(server.ca_file, pki / f"{name}-full-chain.pem", pki / f"{name}.key")


def sas_password(scope: str, registration_id: str, key: str) -> str:
    return build_sas_token(
        key, f"{scope}/registrations/{registration_id}", int(time.time()) + 600, None
    )


def registered(client: RawClient, registration_id: str, payload=None) -> dict:
    """Register: decided during the call, its answer is the outcome
    (docs/dps-wire.md#one-round-trip); a poll of its operation, as a device that polls anyway
    sends, reads the same."""
    answer = client.register(registration_id, payload=payload)
    assert answer.topic == "$dps/registrations/res/200/?$rid=1", body(answer)
    assert body(answer)["status"] != "assigning"
    final = client.poll(body(answer)["operationId"])
    assert final.topic == "$dps/registrations/res/200/?$rid=2"
    assert body(final) == body(answer)
    return body(final)


def test_x509_group_device_is_assigned(
    local_server: LocalServer, demo_pki: Path, transport: str
) -> None:
    context = device_context(local_server, demo_pki)
    with client_for(local_server, context, transport) as client:
        assert client.connect(local_server.scope, "my-device") == ConnAck(False, ACCEPTED)
        assert client.subscribe() == SubAck(1, (1,))
        result = registered(client, "my-device")
    assert result["status"] == "assigned"
    state = result["registrationState"]
    assert (state["deviceId"], state["assignedHub"]) == ("my-device", HUB)
    assert state["substatus"] in ("initialAssignment", "reprovisionedToInitialAssignment")


def test_symmetric_key_group_device(local_server: LocalServer, transport: str) -> None:
    group = f"mqtt-keys-{transport}"
    assert local_server.cli("enrollment-group", "create", group, "--symmetric-key") == 0
    mechanism = local_server.container.enrollments.attestation_mechanism(
        "default", EnrollmentKind.GROUP, group
    )
    assert mechanism.primary_key is not None
    key = derive_device_key(mechanism.primary_key, "mqtt-sensor-1")
    password = sas_password(local_server.scope, "mqtt-sensor-1", key)
    with RawClient(local_server.mqtt_port, tls_context(local_server.ca_file)) as client:
        assert (
            client.connect(local_server.scope, "mqtt-sensor-1", password=password).return_code == 0
        )
        client.subscribe()
        result = registered(client, "mqtt-sensor-1", payload={"modelId": "dtmi:test:x;1"})
    assert result["registrationState"]["deviceId"] == "mqtt-sensor-1"


def test_always_poll_answers_assigning_and_the_poll_the_outcome(
    local_server: LocalServer, demo_pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``devprov serve --always-poll``: DPS's own sequence, a register answered 202 ``assigning``
    with a retry-after in the topic, then the outcome at the poll."""
    monkeypatch.setattr(local_server.container, "always_poll", True)
    with RawClient(local_server.mqtt_port, device_context(local_server, demo_pki)) as client:
        assert client.connect(local_server.scope, "my-device").return_code == ACCEPTED
        client.subscribe()
        answer = client.register("my-device")
        assert answer.topic == (
            f"$dps/registrations/res/202/?$rid=1&retry-after={RETRY_AFTER_SECONDS}"
        )
        operation = body(answer)["operationId"]
        assert body(answer) == {"operationId": operation, "status": "assigning"}
        final = client.poll(operation)
    assert final.topic == "$dps/registrations/res/200/?$rid=2"
    result = body(final)
    assert (result["operationId"], result["status"]) == (operation, "assigned")
    state = result["registrationState"]
    assert (state["deviceId"], state["assignedHub"]) == ("my-device", HUB)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_answers_follow_the_granted_qos(local_server: LocalServer, demo_pki: Path, qos: int):
    with RawClient(local_server.mqtt_port, device_context(local_server, demo_pki)) as client:
        client.connect(local_server.scope, "my-device")
        assert client.subscribe(qos=qos) == SubAck(1, (min(qos, 1),))
        answer = client.register("my-device")
    assert answer.qos == min(qos, 1)


def test_other_filters_are_refused_in_the_suback(local_server: LocalServer, demo_pki: Path):
    with RawClient(local_server.mqtt_port, device_context(local_server, demo_pki)) as client:
        client.connect(local_server.scope, "my-device")
        assert client.subscribe("devices/#") == SubAck(1, (0x80,))
        # Without a subscription, answers go nowhere; the connection stays usable.
        assert client.subscribe() == SubAck(2, (1,))


def test_unknown_certificate_is_not_authorized(
    local_server: LocalServer, demo_pki: Path, transport: str
) -> None:
    context = device_context(local_server, demo_pki / "stranger", "stranger")
    with client_for(local_server, context, transport) as client:
        assert client.connect(local_server.scope, "stranger").return_code == NOT_AUTHORIZED
        assert client.closed_by_server()
    events = local_server.container.audit.events(registration_id="stranger")
    assert any(e.action == "connect" and e.reason for e in events), events


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no credentials", NOT_AUTHORIZED),
        ("wrong key", NOT_AUTHORIZED),
        ("client id differs", IDENTIFIER_REJECTED),
        ("unknown scope", BAD_USERNAME_OR_PASSWORD),
        ("no api-version", BAD_USERNAME_OR_PASSWORD),
        ("unknown field", BAD_USERNAME_OR_PASSWORD),
        ("not DPS's form", BAD_USERNAME_OR_PASSWORD),
        ("certificate CN differs", NOT_AUTHORIZED),
    ],
)
def test_connect_refusals(
    local_server: LocalServer, demo_pki: Path, case: str, expected: int
) -> None:
    scope = local_server.scope
    context = tls_context(local_server.ca_file)
    kwargs: dict = {}
    registration_id = "mqtt-refused"
    if case == "wrong key":
        kwargs["password"] = sas_password(
            scope, registration_id, "d3Jvbmcga2V5IGZvciB0aGlzIGRldmljZQ=="
        )
    elif case == "client id differs":
        kwargs["client_id"] = "someone-else"
    elif case == "unknown scope":
        scope = "0ne00000000"
    elif case == "no api-version":
        kwargs["username"] = f"{scope}/registrations/{registration_id}/ClientVersion=x"
    elif case == "unknown field":
        kwargs["username"] = f"{scope}/registrations/{registration_id}/api-version=1&x=y"
    elif case == "not DPS's form":
        kwargs["username"] = f"{scope}/devices/{registration_id}/api-version=1"
    elif case == "certificate CN differs":
        context = device_context(local_server, demo_pki)  # CN my-device
    with RawClient(local_server.mqtt_port, context) as client:
        assert client.connect(scope, registration_id, **kwargs).return_code == expected
        assert client.closed_by_server()


def test_other_protocol_levels_are_unacceptable(local_server: LocalServer) -> None:
    with RawClient(local_server.mqtt_port, tls_context(local_server.ca_file)) as client:
        client.send(Connect("MQTT", 5, True, 60, "x"))
        assert client.read() == ConnAck(False, UNACCEPTABLE_PROTOCOL)
        assert client.closed_by_server()


def test_disabled_group_is_answered_disabled(local_server: LocalServer, demo_pki: Path) -> None:
    assert main(["ca", "device", "mqtt-solo", "--self-signed", "--dir", str(demo_pki)]) == 0
    assert (
        local_server.cli(
            "enrollment",
            "create",
            "mqtt-solo",
            "--cert",
            str(demo_pki / "mqtt-solo.pem"),
            "--disabled",
        )
        == 0
    )
    context = tls_context(
        local_server.ca_file, demo_pki / "mqtt-solo.pem", demo_pki / "mqtt-solo.key"
    )
    with RawClient(local_server.mqtt_port, context) as client:
        assert client.connect(local_server.scope, "mqtt-solo").return_code == ACCEPTED
        client.subscribe()
        answer = client.register("mqtt-solo")
        final = client.poll(body(answer)["operationId"])
    assert body(final)["status"] == "disabled"


def test_request_errors_are_answered_with_dps_bodies(
    local_server: LocalServer, demo_pki: Path, transport: str
) -> None:
    context = device_context(local_server, demo_pki)
    with client_for(local_server, context, transport) as client:
        client.connect(local_server.scope, "my-device")
        client.subscribe()
        bad = client.request("$dps/registrations/PUT/iotdps-register/?$rid=7", b"{not json")
        assert bad.topic == "$dps/registrations/res/400/?$rid=7"
        assert body(bad)["errorCode"] == 400001 and body(bad)["trackingId"]
        other = client.request(
            "$dps/registrations/PUT/iotdps-register/?$rid=8",
            json.dumps({"registrationId": "someone-else"}).encode(),
        )
        assert status(other) == 400
        unknown = client.poll("4.0000000000000000.00000000-0000-0000-0000-000000000000", rid="9")
        assert unknown.topic == "$dps/registrations/res/404/?$rid=9"
        assert set(body(unknown)) == {"errorCode", "trackingId", "message", "timestampUtc"}
        # The connection still serves.
        assert registered(client, "my-device")["status"] == "assigned"


def test_trust_withdrawn_after_connect_is_refused_on_the_next_request(
    local_server: LocalServer, tmp_path: Path
) -> None:
    assert main(["ca", "device", "mqtt-later", "--self-signed", "--dir", str(tmp_path)]) == 0
    assert (
        local_server.cli(
            "enrollment", "create", "mqtt-later", "--cert", str(tmp_path / "mqtt-later.pem")
        )
        == 0
    )
    context = tls_context(
        local_server.ca_file, tmp_path / "mqtt-later.pem", tmp_path / "mqtt-later.key"
    )
    with RawClient(local_server.mqtt_port, context) as client:
        assert client.connect(local_server.scope, "mqtt-later").return_code == ACCEPTED
        client.subscribe()
        assert local_server.cli("enrollment", "delete", "mqtt-later") == 0
        answer = client.register("mqtt-later")
    assert status(answer) == 401
    assert body(answer)["message"] == "Invalid certificate"
