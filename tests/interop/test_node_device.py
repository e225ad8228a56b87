"""Microsoft's Node device provisioning SDK (azure-iot-provisioning-device) registering against a
real devprov server over TLS. With its HTTP transport: an X.509 device of an enrollment group, a
self-signed individual enrollment and a symmetric-key group device, each with a negative control
(an unknown CA, a wrong key, a disabled group). With its MQTT transports (``Mqtt`` over TLS,
``MqttWs`` over WebSocket): an X.509 group device and a symmetric-key group device, with an
unknown CA and a wrong key as their negative controls.

The SDK runs in a child ``node`` process (``tests/interop/node/register.js``) with the packages
pinned by ``tests/interop/node/package-lock.json``. The HTTP transport reaches the server's port
through a test-only ``https.Agent``
(docs/sdk-clients.md#node-device-another-port-for-the-http-transport), ``Mqtt`` is given
``localhost:<port>``; a real device talks to 443 and 8883. ``MqttWs`` connects to 443 and nothing
else, so its cases run against a second server on 443, and skip, saying why, when that port
cannot be had here or the server has no MQTT over WebSocket endpoint (tests/interop/ports.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devprov.core.sas import derive_device_key
from tests.interop.node_dps import (
    HUB,
    Dps,
    assert_assigned,
    create_x509_group,
    leaf_and_intermediate,
    quiet,
    symmetric_group,
)

pytestmark = pytest.mark.interop


# Named by dps_on_443's skip (tests/interop/conftest.py).
WEBSOCKET_CLIENT = "Node's MqttWs transport"

# Over Mqtt (the server's MQTT port) and MqttWs (443).
OVER_MQTT = pytest.mark.parametrize("over", ["mqtt", "mqttws"], indirect=True)


@pytest.fixture(scope="module")
def x509_group(dps: Dps) -> str:
    return create_x509_group(dps)


# --- devices that register -------------------------------------------------------------------


def test_x509_group_device_with_its_chain(dps: Dps, x509_group: str) -> None:
    chain = leaf_and_intermediate(dps.pki, "my-device")
    outcome = dps.register(
        "my-device",
        cert=chain,
        key=dps.pki / "my-device.key",
        payload={"modelId": "dtmi:devprov:test;1"},
    )
    state = assert_assigned(outcome, "my-device")
    assert state["x509"]["enrollmentGroupId"] == x509_group
    assert state["x509"]["certificateInfo"]["subjectName"] == "CN=my-device"
    assert state["x509"]["signingCertificateInfo"]["subjectName"] == "CN=devprov Test Root CA"

    # The service API sees the same registration.
    service = dps.service()
    recorded = service.device_registration_state.get(id="my-device")
    assert recorded["etag"] == state["etag"] and recorded["assignedHub"] == HUB
    group_states = list(service.device_registration_state.query(id=x509_group))
    assert [s["registrationId"] for s in group_states] == ["my-device"]


def test_self_signed_individual_enrollment(dps: Dps) -> None:
    quiet("ca", "device", "node-self-signed", "--self-signed", "--dir", str(dps.pki))
    cert = dps.pki / "node-self-signed.pem"
    dps.service().enrollment.create_or_update(
        id="node-self-signed",
        enrollment={
            "registrationId": "node-self-signed",
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": cert.read_text()}}},
            },
        },
    )
    outcome = dps.register("node-self-signed", cert=cert, key=dps.pki / "node-self-signed.key")
    state = assert_assigned(outcome, "node-self-signed")
    assert "enrollmentGroupId" not in state["x509"]
    assert state["x509"]["certificateInfo"]["issuerName"] == "CN=node-self-signed"
    enrollment = dps.service().enrollment.get(id="node-self-signed")
    assert enrollment["registrationState"]["etag"] == state["etag"]


def test_symmetric_key_group_device(dps: Dps) -> None:
    group_key = symmetric_group(dps, "node-sym-group")
    device_key = derive_device_key(group_key, "node-sym-1")
    outcome = dps.register("node-sym-1", symmetricKey=device_key)
    state = assert_assigned(outcome, "node-sym-1")
    assert state["symmetricKey"] == {"enrollmentGroupId": "node-sym-group"}

    # Registering again changes nothing: same enrollment, same hub, so the current assignment
    # comes back as stored (devprov.core.registration.decide_assignment).
    again = assert_assigned(dps.register("node-sym-1", symmetricKey=device_key), "node-sym-1")
    assert again == state


# --- negative controls --------------------------------------------------------------------------


def test_device_of_an_unknown_ca_is_refused(dps: Dps, x509_group: str, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue"
    quiet("ca", "demo", str(rogue))
    quiet("ca", "device", "node-rogue", "--issuer", "intermediate", "--dir", str(rogue))
    outcome = dps.register(
        "node-rogue", cert=leaf_and_intermediate(rogue, "node-rogue"), key=rogue / "node-rogue.key"
    )
    assert not outcome.ok
    assert outcome.name == "UnauthorizedError" and outcome.status_code == 401
    assert outcome.response_body["errorCode"] // 1000 == 401
    assert outcome.response_body["message"] == "Invalid certificate"  # nothing more for a device
    states = dps.service().device_registration_state.query(id=x509_group)
    assert "node-rogue" not in {s["registrationId"] for s in states}


def test_wrong_symmetric_key_is_refused(dps: Dps) -> None:
    group_key = symmetric_group(dps, "node-sym-wrong")
    wrong = derive_device_key(group_key, "someone-else")
    outcome = dps.register("node-sym-wrong-1", symmetricKey=wrong)
    assert not outcome.ok
    assert outcome.name == "UnauthorizedError" and outcome.status_code == 401
    assert outcome.response_body["errorCode"] // 1000 == 401
    # Its twin with the right key gets in.
    right = derive_device_key(group_key, "node-sym-wrong-1")
    assert_assigned(dps.register("node-sym-wrong-1", symmetricKey=right), "node-sym-wrong-1")


def test_disabled_group_is_reported(dps: Dps) -> None:
    group_key = symmetric_group(dps, "node-sym-disabled", enabled=False)
    outcome = dps.register(
        "node-disabled-1", symmetricKey=derive_device_key(group_key, "node-disabled-1")
    )
    assert not outcome.ok
    # The server answers the poll with status "disabled" (DPS's DeviceRegistrationResult
    # status); the SDK knows only assigned/assigning/failed and fails with a SyntaxError.
    assert outcome.name == "SyntaxError", outcome
    assert outcome.result["status"] == "disabled"
    assert outcome.result["registrationState"]["registrationId"] == "node-disabled-1"
    assert "assignedHub" not in outcome.result["registrationState"]
    state = dps.service().device_registration_state.get(id="node-disabled-1")
    assert state["status"] == "disabled" and "assignedHub" not in state


# --- the MQTT transports: Mqtt over TLS, MqttWs over WebSocket ---------------------------------


@OVER_MQTT
def test_x509_group_device_over_mqtt(over: tuple[Dps, str]) -> None:
    dps, transport = over
    group = create_x509_group(dps)
    device = f"node-{transport}-x509"
    quiet("ca", "device", device, "--issuer", "intermediate", "--dir", str(dps.pki))
    outcome = dps.register(
        device,
        transport,
        cert=leaf_and_intermediate(dps.pki, device),
        key=dps.pki / f"{device}.key",
        payload={"modelId": "dtmi:devprov:test;1"},
    )
    state = assert_assigned(outcome, device)
    assert state["x509"]["enrollmentGroupId"] == group
    assert state["x509"]["certificateInfo"]["subjectName"] == f"CN={device}"
    assert dps.service().device_registration_state.get(id=device)["etag"] == state["etag"]


@OVER_MQTT
def test_symmetric_key_group_device_over_mqtt(over: tuple[Dps, str]) -> None:
    dps, transport = over
    group_key = symmetric_group(dps, f"node-{transport}-sym-group")
    device = f"node-{transport}-sym-1"
    outcome = dps.register(device, transport, symmetricKey=derive_device_key(group_key, device))
    state = assert_assigned(outcome, device)
    assert state["symmetricKey"] == {"enrollmentGroupId": f"node-{transport}-sym-group"}


# The Node SDK hands on mqtt.js's error for a CONNACK refused with return code 5, not authorized
# (docs/mqtt.md#connect-return-codes), as a plain Error.
NOT_AUTHORIZED = ("Error", "Connection refused: Not authorized")


@OVER_MQTT
def test_device_of_an_unknown_ca_is_refused_over_mqtt(
    over: tuple[Dps, str], tmp_path: Path
) -> None:
    dps, transport = over
    create_x509_group(dps)
    rogue = tmp_path / "rogue"
    quiet("ca", "demo", str(rogue))
    device = f"node-{transport}-rogue"
    quiet("ca", "device", device, "--issuer", "intermediate", "--dir", str(rogue))
    outcome = dps.register(
        device, transport, cert=leaf_and_intermediate(rogue, device), key=rogue / f"{device}.key"
    )
    assert not outcome.ok
    assert (outcome.name, outcome.message) == NOT_AUTHORIZED
    states = dps.service().device_registration_state.query(id="node-x509-group")
    assert device not in {s["registrationId"] for s in states}


@OVER_MQTT
def test_wrong_symmetric_key_is_refused_over_mqtt(over: tuple[Dps, str]) -> None:
    dps, transport = over
    group_key = symmetric_group(dps, f"node-{transport}-sym-wrong")
    device = f"node-{transport}-sym-wrong-1"
    outcome = dps.register(
        device, transport, symmetricKey=derive_device_key(group_key, "someone-else")
    )
    assert not outcome.ok
    assert (outcome.name, outcome.message) == NOT_AUTHORIZED
