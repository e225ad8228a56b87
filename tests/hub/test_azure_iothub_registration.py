"""Registrations that create the device in an IoT hub, end to end: a real in-process devprov
server (HTTPS and MQTT) with a hub of kind azure-iothub linked through the CLI, its real adapter
(devprov.hub.azure_iothub), and the local registry that holds Microsoft's SDK to its recorded
requests (tests/hub/registry_contract.py). Each attestation type creates the identity it should,
the initial twin is applied, a re-registration updates the identity, and a hub answering 401 or
500 fails the registration in DPS's shape until a retry completes it. A symmetric-key device that
sends a CSR to an enrollment with a credential policy gets an operational certificate and a
CA-signed identity (docs/hubs.md#identities); registering again without one, its keys again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from devprov.cli.main import main
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import derive_device_key
from devprov.service.port import UnitOfWork
from devprov.storage.repository import SqlUnitOfWork
from tests import operational as op
from tests.hub.registry_contract import HUB_NAME, RegistryContract, registry_contract
from tests.mqtt.conftest import LocalServer, start_local_server, stop_local_server
from tests.mqtt.test_dps import sas_password
from tests.registering import (
    csr_over_https,
    csr_over_mqtt,
    endpoint_of,
    group_key,
    key_over_https,
    key_over_mqtt,
    x509_over_https,
)

GROUP = "key-group"
CSR_GROUP = "csr-keys"  # a symmetric-key group naming credential policy POLICY
POLICY = "ops"
TWIN = {"tags": {"site": "north"}, "properties": {"desired": {"interval": 30}}}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalServer, RegistryContract, Path]]:
    root = tmp_path_factory.mktemp("azure-hub")
    with registry_contract(root) as contract:
        server = start_local_server(root / "data")
        try:
            connection = root / "connection-string"
            connection.write_text(contract.connection_string() + "\n")
            assert (
                server.cli(
                    "hub",
                    "add",
                    HUB_NAME,
                    "--kind",
                    "azure-iothub",
                    "--connection-string-file",
                    str(connection),
                    "--endpoint",
                    contract.endpoint,
                    "--ca-file",
                    str(contract.ca_file),
                )
                == 0
            )
            pki = root / "pki"
            assert main(["ca", "demo", str(pki)]) == 0
            solo = ["ca", "device", "solo-device", "--self-signed", "--dir", str(pki / "solo")]
            assert main(solo) == 0
            assert (
                server.cli(
                    "certificate",
                    "prove",
                    "hub-root",
                    "--cert",
                    str(pki / "root.pem"),
                    "--key",
                    str(pki / "root.key"),
                )
                == 0
            )
            twin = json.dumps(TWIN)
            assert (
                server.cli("enrollment-group", "create", "x509-group", "--ca-name", "hub-root") == 0
            )
            assert (
                server.cli(
                    "enrollment-group",
                    "create",
                    "key-group",
                    "--symmetric-key",
                    "--initial-twin",
                    twin,
                )
                == 0
            )
            assert (
                server.cli(
                    "enrollment",
                    "create",
                    "solo-device",
                    "--cert",
                    str(pki / "solo" / "solo-device.pem"),
                )
                == 0
            )

            def uow(*, read_only: bool = False) -> UnitOfWork:
                return SqlUnitOfWork(server.container.engine, read_only=read_only)

            op.add_policy(uow, root / "data", POLICY)
            server.container.enrollments.create_or_update(
                "default",
                EnrollmentKind.GROUP,
                CSR_GROUP,
                {
                    "enrollmentGroupId": CSR_GROUP,
                    "attestation": {"type": "symmetricKey", "symmetricKey": {}},
                    "credentialPolicyName": POLICY,
                },
                if_match=None,
                actor="test",
            )
            yield server, contract, pki
        finally:
            stop_local_server(server)
    assert not contract.violations, contract.violations


@pytest.mark.parametrize("transport", [key_over_https, key_over_mqtt], ids=["https", "mqtt"])
def test_a_symmetric_key_device_gets_its_derived_keys_and_the_initial_twin(
    world, capsys: pytest.CaptureFixture[str], transport, request: pytest.FixtureRequest
) -> None:
    server, contract, _ = world
    device = f"key-dev-{request.node.callspec.id}"
    operation = transport(server, capsys, GROUP, device)
    assert operation["status"] == "assigned", operation
    created = contract.devices[device]
    assert created["authentication"]["type"] == "sas"
    assert created["authentication"]["symmetricKey"]["primaryKey"] == derive_device_key(
        group_key(server, GROUP), device
    )
    assert created["status"] == "enabled"
    assert contract.twins[device]["tags"] == TWIN["tags"]
    assert contract.twins[device]["properties"]["desired"]["interval"] == 30
    (event,) = [
        e for e in server.container.audit.events(registration_id=device) if e.action == "register"
    ]
    assert (
        event.reason is not None
        and f"identity created in {HUB_NAME} with authentication sas" in event.reason
    )


def test_a_group_x509_device_is_ca_signed_and_a_second_registration_updates_it(
    world, capsys: pytest.CaptureFixture[str]
) -> None:
    server, contract, pki = world
    chain, key = pki / "my-device-full-chain.pem", pki / "my-device.key"
    first = x509_over_https(server, capsys, "my-device", chain, key)
    assert first["status"] == "assigned", first
    assert contract.devices["my-device"]["authentication"]["type"] == "certificateAuthority"
    puts = [r for r in contract.requests if r[0] == "PUT" and r[1].startswith("/devices/my-device")]
    second = x509_over_https(server, capsys, "my-device", chain, key)
    assert second["status"] == "assigned", second
    again = [
        r for r in contract.requests if r[0] == "PUT" and r[1].startswith("/devices/my-device")
    ]
    assert len(again) == len(puts) + 1
    headers = {name.lower(): value for name, value in again[-1][2].items()}
    assert headers.get("if-match") == '"*"'  # the update, as the SDK's update_device_with_*


def test_an_individual_x509_device_is_held_by_its_thumbprint(
    world, capsys: pytest.CaptureFixture[str]
) -> None:
    server, contract, pki = world
    solo = pki / "solo"
    leaf, chain, key = (solo / f"solo-device{end}" for end in (".pem", "-full-chain.pem", ".key"))
    operation = x509_over_https(server, capsys, "solo-device", chain, key)
    assert operation["status"] == "assigned", operation
    thumbprint = x509.load_pem_x509_certificate(leaf.read_bytes()).fingerprint(hashes.SHA1()).hex()
    created = contract.devices["solo-device"]["authentication"]
    assert created["type"] == "selfSigned"
    assert created["x509Thumbprint"]["primaryThumbprint"] == thumbprint.upper()


@pytest.mark.parametrize("answer", [401, 500])
def test_a_hub_that_refuses_fails_the_registration_until_it_recovers(
    world, capsys: pytest.CaptureFixture[str], answer: int
) -> None:
    server, contract, _ = world
    device = f"refused-{answer}"
    contract.forced_status = answer
    try:
        operation = key_over_https(server, capsys, GROUP, device)
    finally:
        contract.forced_status = None
    assert operation["status"] == "failed", operation
    assert operation["registrationState"]["errorCode"] == 503111
    assert device not in contract.devices
    stored = server.container.registration_states.get("default", device)
    assert stored.assigned_hub is None
    reasons = [e.reason or "" for e in server.container.audit.events(registration_id=device)]
    assert any(f"with {answer}" in r or f"({answer}" in r for r in reasons), reasons
    again = key_over_https(server, capsys, GROUP, device)
    assert again["status"] == "assigned", again
    assert contract.devices[device]["authentication"]["type"] == "sas"


def _csr_register(server: LocalServer, transport: str, device: str, csr: str | None) -> dict:
    """Register a device of CSR_GROUP with its derived key, with ``csr`` when given."""
    key = derive_device_key(group_key(server, CSR_GROUP), device)
    token = sas_password(server.scope, device, key)
    endpoint = endpoint_of(server)
    if transport == "https":
        return csr_over_https(endpoint, device, csr, authorization=token)  # type: ignore[no-any-return]
    return csr_over_mqtt(endpoint, device, csr, password=token)  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", ["https", "mqtt"])
def test_a_symmetric_key_device_that_sent_a_csr_is_created_ca_signed(world, transport: str) -> None:
    server, contract, _ = world
    device = f"csr-dev-{transport}"
    operation = _csr_register(server, transport, device, op.b64(op.csr(op.p384_key(), device)))
    assert operation["status"] == "assigned", operation
    state = operation["registrationState"]
    assert state["assignedHub"] == HUB_NAME and state["issuedCertificateChain"]
    assert state["symmetricKey"] == {"enrollmentGroupId": CSR_GROUP}  # it attested with its key
    (put,) = [
        r for r in contract.requests if r[0] == "PUT" and r[1].startswith(f"/devices/{device}?")
    ]
    sent = put[3]
    # What the SDK's create_device_with_certificate_authority sends: the type, and no keys.
    assert sent["authentication"] == {"type": "certificateAuthority"}
    assert (sent["deviceId"], sent["status"]) == (device, "enabled")
    assert contract.devices[device]["authentication"]["type"] == "certificateAuthority"
    assert not contract.violations, contract.violations  # the SDK's records allow this body
    (event,) = [
        e for e in server.container.audit.events(registration_id=device) if e.action == "register"
    ]
    assert event.reason is not None
    assert f"identity created in {HUB_NAME} with authentication certificateAuthority" in (
        event.reason
    )
    assert "issued operational certificate" in event.reason


def test_the_same_device_registering_without_a_csr_gets_its_keys_again(world) -> None:
    """Only a registration that issues a certificate makes the identity CA-signed: the update
    that follows one without a CSR carries the device's keys, as any symmetric-key device's."""
    server, contract, _ = world
    device = "csr-dev-again"
    first = _csr_register(server, "https", device, op.b64(op.csr(op.p384_key(), device)))
    assert first["status"] == "assigned", first
    assert contract.devices[device]["authentication"]["type"] == "certificateAuthority"
    second = _csr_register(server, "https", device, None)
    assert second["status"] == "assigned", second
    assert "issuedCertificateChain" not in second["registrationState"]
    updated = contract.devices[device]["authentication"]
    assert updated["type"] == "sas"
    assert updated["symmetricKey"]["primaryKey"] == derive_device_key(
        group_key(server, CSR_GROUP), device
    )
