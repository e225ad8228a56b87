"""Microsoft's Node device provisioning SDK over AMQP against a real devprov server: ``Amqp``
(AMQP 1.0 over TLS on the server's ``--amqp-port``) and ``AmqpWs`` (AMQP over a WebSocket at
``/$iothub/websocket``, subprotocol AMQPWSB10, on 443). Each registers an X.509 group device with
its chain, a self-signed individual enrollment and a symmetric-key group device, and is refused
for an unknown certificate, an unverified CA, a disabled enrollment and a wrong key
(docs/amqp.md). ``AmqpWs`` connects to 443 and nothing else: its cases skip, saying why, when
that port cannot be had here (tests/interop/node_dps.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devprov.core.sas import derive_device_key
from tests.interop.node_dps import (
    Dps,
    Outcome,
    assert_assigned,
    create_x509_group,
    leaf_and_intermediate,
    quiet,
    symmetric_group,
)

# Every test runs over Amqp (the server's AMQP port) and AmqpWs (443).
pytestmark = [
    pytest.mark.interop,
    pytest.mark.parametrize("over", ["amqp", "amqpws"], indirect=True),
]

# Named by dps_on_443's skip (tests/interop/conftest.py).
WEBSOCKET_CLIENT = "Node's AmqpWs transport"


def assert_unauthorized(outcome: Outcome, message: str) -> None:
    """The request is rejected with amqp:unauthorized-access and DPS's error body as the
    description, which the SDK hands on as its registration's error (docs/amqp.md#refusals)."""
    assert not outcome.ok
    assert (outcome.name, outcome.condition) == ("AmqpError", "amqp:unauthorized-access"), outcome
    assert outcome.response_body["errorCode"] // 1000 == 401
    assert outcome.response_body["message"] == message


def registration_ids(dps: Dps, group: str) -> set[str]:
    return {s["registrationId"] for s in dps.service().device_registration_state.query(id=group)}


# --- devices that register -------------------------------------------------------------------


def test_x509_group_device_with_its_chain(over: tuple[Dps, str]) -> None:
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
    assert state["x509"]["signingCertificateInfo"]["subjectName"] == "CN=devprov Test Root CA"
    assert dps.service().device_registration_state.get(id=device)["etag"] == state["etag"]


def test_self_signed_individual_enrollment(over: tuple[Dps, str]) -> None:
    dps, transport = over
    device = f"node-{transport}-self-signed"
    quiet("ca", "device", device, "--self-signed", "--dir", str(dps.pki))
    cert = dps.pki / f"{device}.pem"
    dps.service().enrollment.create_or_update(
        id=device,
        enrollment={
            "registrationId": device,
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": cert.read_text()}}},
            },
        },
    )
    outcome = dps.register(device, transport, cert=cert, key=dps.pki / f"{device}.key")
    state = assert_assigned(outcome, device)
    assert "enrollmentGroupId" not in state["x509"]
    assert state["x509"]["certificateInfo"]["issuerName"] == f"CN={device}"
    enrollment = dps.service().enrollment.get(id=device)
    assert enrollment["registrationState"]["etag"] == state["etag"]


def test_symmetric_key_group_device(over: tuple[Dps, str]) -> None:
    dps, transport = over
    group = f"node-{transport}-sym-group"
    group_key = symmetric_group(dps, group)
    device = f"node-{transport}-sym-1"
    device_key = derive_device_key(group_key, device)
    state = assert_assigned(dps.register(device, transport, symmetricKey=device_key), device)
    assert state["symmetricKey"] == {"enrollmentGroupId": group}
    # Registering again changes nothing: the stored assignment comes back.
    again = dps.register(device, transport, symmetricKey=device_key)
    assert assert_assigned(again, device) == state


# --- refusals -----------------------------------------------------------------------------------


def test_device_of_an_unknown_ca_is_refused(over: tuple[Dps, str], tmp_path: Path) -> None:
    dps, transport = over
    group = create_x509_group(dps)
    rogue = tmp_path / "rogue"
    quiet("ca", "demo", str(rogue))
    device = f"node-{transport}-rogue"
    quiet("ca", "device", device, "--issuer", "intermediate", "--dir", str(rogue))
    outcome = dps.register(
        device, transport, cert=leaf_and_intermediate(rogue, device), key=rogue / f"{device}.key"
    )
    assert_unauthorized(outcome, "Invalid certificate")
    assert device not in registration_ids(dps, group)


def test_device_of_an_unverified_ca_is_refused(over: tuple[Dps, str], tmp_path: Path) -> None:
    dps, transport = over
    pki = tmp_path / "unproven"
    quiet("ca", "demo", str(pki))
    name, group = f"node-{transport}-unproven", f"node-{transport}-unproven-group"
    quiet("certificate", "upload", name, "--cert", str(pki / "root.pem"), *dps.server.cli_args())
    dps.service().enrollment_group.create_or_update(
        id=group,
        enrollment_group={
            "enrollmentGroupId": group,
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": name}}},
        },
    )
    device = f"node-{transport}-of-unproven"
    quiet("ca", "device", device, "--issuer", "intermediate", "--dir", str(pki))
    outcome = dps.register(
        device, transport, cert=leaf_and_intermediate(pki, device), key=pki / f"{device}.key"
    )
    assert_unauthorized(outcome, "Invalid certificate")
    assert device not in registration_ids(dps, group)


def test_disabled_enrollment_is_reported(over: tuple[Dps, str]) -> None:
    dps, transport = over
    group_key = symmetric_group(dps, f"node-{transport}-sym-disabled", enabled=False)
    device = f"node-{transport}-disabled-1"
    outcome = dps.register(device, transport, symmetricKey=derive_device_key(group_key, device))
    assert not outcome.ok
    # As over HTTPS: the answer's status is "disabled" (DPS's DeviceRegistrationResult status),
    # which the SDK does not know, so it fails with a SyntaxError holding the answer.
    assert outcome.name == "SyntaxError", outcome
    assert outcome.result["status"] == "disabled"
    assert "assignedHub" not in outcome.result["registrationState"]
    state = dps.service().device_registration_state.get(id=device)
    assert state["status"] == "disabled" and "assignedHub" not in state


def test_wrong_symmetric_key_is_refused(over: tuple[Dps, str]) -> None:
    dps, transport = over
    group_key = symmetric_group(dps, f"node-{transport}-sym-wrong")
    device = f"node-{transport}-sym-wrong-1"
    wrong = derive_device_key(group_key, "someone-else")
    assert_unauthorized(dps.register(device, transport, symmetricKey=wrong), "Unauthorized")
    # Its twin with the right key gets in.
    right = derive_device_key(group_key, device)
    assert_assigned(dps.register(device, transport, symmetricKey=right), device)
