"""Operational certificates used on a real Mosquitto hub: a ``devprov serve`` process issues them,
and a real broker with the dynamic-security plugin (tests/hub/mosquitto.py) accepts them.

The broker's X.509 listener trusts the onboarding CA and the credential policy's CA, as
docs/hubs-mosquitto.md#operational-certificates tells the operator to configure it. A
symmetric-key device and an X.509 group device register with a CSR to enrollments naming the
policy, connect to the broker with the certificate they got (its CN is their registration id and
device id), use their own topics and no other device's, renew by registering again presenting it,
and connect with the renewed one. A broker whose listener does not trust the policy's CA refuses
the certificate, and goes on refusing it after a reload (SIGHUP): Mosquitto 2.0 reads a listener's
cafile when it starts.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.issuance import PrivateKey
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.port import UnitOfWork
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests import operational as op
from tests.e2e.test_operational_certificates import service_client
from tests.hub.mosquitto import (
    ADMIN,
    Broker,
    Device,
    certificate_device,
    certificate_login,
    needs_mosquitto,
    password_device,
    running_broker,
)
from tests.hub.test_mosquitto import assert_own_topics_only
from tests.instances import free_port
from tests.registering import Endpoint, csr_over_https, csr_over_mqtt
from tests.server import ServerProcess, running_server

pytestmark = [pytest.mark.e2e, needs_mosquitto]

HUB = "broker.test"
POLICY = "ops"
GROUP_KEY = base64.b64encode(b"m" * 32).decode()
NOT_AUTHORIZED = 5  # CONNACK return code of MQTT 3.1.1


@dataclass(frozen=True)
class Fleet:
    server: ServerProcess
    endpoint: Endpoint
    broker: Broker  # its X.509 listener trusts the onboarding CA and the policy's
    onboarding: f.Ca  # the CA the X.509 group trusts
    policy_ca: f.Ca
    policy_pem: bytes  # the policy's CA chain, as the service gives it for hubs to trust
    files: Path


def policy_ca_chain(data: Path, name: str) -> bytes:
    """The policy's CA chain (PEM, issuing CA first), what `devprov credential-policy ca NAME`
    prints for a hub to trust: read here from the policy as the service holds it."""
    container = open_container(data)
    try:
        with SqlUnitOfWork(container.engine, read_only=True) as uow:
            policy = uow.credential_policies.get("default", name)
    finally:
        container.engine.dispose()
    assert policy is not None
    return policy.ca_chain_pem.encode()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("mosquitto-operational")
    data = root / "data"
    ports = ["--mqtt-port", str(free_port()), "--amqp-port", str(free_port())]
    with running_server(data, *ports) as server:
        args = server.cli_args()
        onboarding = f.root("Fleet Onboarding CA")
        (root / "onboarding.pem").write_bytes(onboarding.pem)
        upload = ["certificate", "upload", "fleet-ca", "--cert", str(root / "onboarding.pem")]
        assert main([*upload, "--verified", *args]) == 0
        container = open_container(data)

        def uow(*, read_only: bool = False) -> UnitOfWork:
            return SqlUnitOfWork(container.engine, read_only=read_only)

        policy_ca = op.add_policy(uow, data, POLICY, days=30)
        policy_pem = policy_ca_chain(data, POLICY)
        (root / "broker").mkdir()
        # The operator's step: the policy's CA goes into the X.509 listener's cafile, beside the
        # onboarding CA, before the broker (re)starts.
        with running_broker(root / "broker", onboarding, also_trusted=policy_pem) as broker:
            (root / "admin-password").write_text(broker.admin_password + "\n")
            hub = [
                *("hub", "add", HUB, "--kind", "mosquitto"),
                *("--broker", f"127.0.0.1:{broker.admin_port}", "--tls"),
                *("--ca-file", str(broker.server_ca), "--username", ADMIN),
                *("--password-file", str(root / "admin-password")),
            ]
            assert main([*hub, *args]) == 0
            with service_client(server) as svc:
                for group in (
                    {
                        "enrollmentGroupId": "keys",
                        "attestation": {
                            "type": "symmetricKey",
                            "symmetricKey": {"primaryKey": GROUP_KEY},
                        },
                        "credentialPolicyName": POLICY,
                    },
                    {
                        "enrollmentGroupId": "cameras",
                        "attestation": {
                            "type": "x509",
                            "x509": {"caReferences": {"primary": "fleet-ca"}},
                        },
                        "credentialPolicyName": POLICY,
                    },
                ):
                    answer = svc.put(f"/enrollmentGroups/{group['enrollmentGroupId']}", json=group)
                    assert answer.status_code == 200, answer.text
            scope = container.directory.get("default").id_scope
            assert server.mqtt_port is not None
            endpoint = Endpoint(scope, server.port, server.mqtt_port, server.ca_file)
            try:
                yield Fleet(server, endpoint, broker, onboarding, policy_ca, policy_pem, root)
            finally:
                container.engine.dispose()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    opened: list[Device] = []
    yield opened
    for device in opened:
        device.close()


def key_token(fleet: Fleet, device: str) -> str:
    key = derive_device_key(GROUP_KEY, device)
    return build_sas_token(
        key, f"{fleet.endpoint.scope}/registrations/{device}", int(time.time()) + 600
    )


@dataclass(frozen=True)
class Issued:
    """What a device keeps of an answer that issued it a certificate: the chain file (leaf,
    then the policy's CA) and the key file a TLS client loads, and the leaf."""

    cert: Path
    key: Path
    leaf: x509.Certificate


def issued(fleet: Fleet, operation: Any, device: str, key: PrivateKey, name: str) -> Issued:
    """Check an answer that issued ``device`` a certificate for ``key`` and keep it in files."""
    assert operation["status"] == "assigned", operation
    state = operation["registrationState"]
    assert (state["assignedHub"], state["deviceId"]) == (HUB, device)
    items = state["issuedCertificateChain"]
    leaf = op.verify_issued_chain(items, fleet.policy_ca, at=datetime.now(UTC))
    assert op.public_der(leaf.public_key()) == op.public_der(key.public_key())
    # The broker names the client by the certificate's CN: the registration id, the device id.
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [device]
    cert = fleet.files / f"{name}.pem"
    cert.write_bytes(b"".join(f.pem(c) for c in op.chain_of(items)))
    key_file = fleet.files / f"{name}.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert, key_file, leaf)


def onboarding_files(fleet: Fleet, device: str) -> tuple[Path, Path]:
    """An X.509 group device's onboarding chain and key, from the onboarding CA."""
    certificate = f.device(fleet.onboarding, device)
    chain = fleet.files / f"{device}-onboarding.pem"
    chain.write_bytes(certificate.pem + fleet.onboarding.pem)
    key = fleet.files / f"{device}-onboarding.key"
    key.write_bytes(certificate.key_pem())
    return chain, key


def on_broker(fleet: Fleet, devices: list[Device], device: str, identity: Issued) -> Device:
    """``device`` connected to the broker's X.509 listener with its operational certificate."""
    client = certificate_device(device, identity.cert, identity.key, fleet.broker.server_ca)
    devices.append(client)
    assert client.connect(fleet.broker.x509_port) == 0, fleet.broker.log
    return client


def hub_stories(fleet: Fleet, device: str) -> list[str]:
    container = open_container(fleet.server.data_dir)
    try:
        events = container.audit.events(registration_id=device)
    finally:
        container.engine.dispose()
    return [e.reason or "" for e in events if e.action == "register"]


def test_devices_connect_with_their_operational_certificates_and_again_once_renewed(
    fleet: Fleet, devices: list[Device]
) -> None:
    sensor, camera = "sensor-1", "camera-1"
    # Onboarding: the symmetric-key device over MQTT with its token, the X.509 device over
    # HTTPS with its onboarding certificate; each sends a CSR for a key it made.
    sensor_key, camera_key = op.p384_key(), op.p384_key()
    answer = csr_over_mqtt(
        fleet.endpoint,
        sensor,
        op.b64(op.csr(sensor_key, sensor)),
        password=key_token(fleet, sensor),
    )
    sensor_id = issued(fleet, answer, sensor, sensor_key, "sensor-1-first")
    assert answer["registrationState"]["symmetricKey"] == {"enrollmentGroupId": "keys"}
    chain, key = onboarding_files(fleet, camera)
    answer = csr_over_https(
        fleet.endpoint, camera, op.b64(op.csr(camera_key, camera)), cert=chain, key=key
    )
    camera_id = issued(fleet, answer, camera, camera_key, "camera-1-first")
    for device in (sensor, camera):
        (story,) = hub_stories(fleet, device)
        assert (
            f"client created in {HUB} with authentication certificateAuthority "
            f"(topics devices/{device}/#)"
        ) in story
    # On the broker with the operational certificates: their own topics, round trip, and not
    # each other's.
    a = on_broker(fleet, devices, sensor, sensor_id)
    b = on_broker(fleet, devices, camera, camera_id)
    assert_own_topics_only(a, sensor, b, camera)
    assert_own_topics_only(b, camera, a, sensor)
    # The symmetric-key device's client is a certificate one now: its key is no password.
    by_key = password_device(sensor, derive_device_key(GROUP_KEY, sensor))
    devices.append(by_key)
    assert by_key.connect(fleet.broker.password_port) == NOT_AUTHORIZED
    for client in devices:
        client.close()
    devices.clear()
    # Renewal: each registers again presenting its operational certificate, with a new key's
    # CSR (the sensor over HTTPS, the camera over MQTT this time).
    sensor_key, camera_key = op.p384_key(), op.p384_key()
    answer = csr_over_https(
        fleet.endpoint,
        sensor,
        op.b64(op.csr(sensor_key, sensor)),
        cert=sensor_id.cert,
        key=sensor_id.key,
    )
    sensor_renewed = issued(fleet, answer, sensor, sensor_key, "sensor-1-renewed")
    answer = csr_over_mqtt(
        fleet.endpoint,
        camera,
        op.b64(op.csr(camera_key, camera)),
        cert=camera_id.cert,
        key=camera_id.key,
    )
    camera_renewed = issued(fleet, answer, camera, camera_key, "camera-1-renewed")
    assert sensor_renewed.leaf.serial_number != sensor_id.leaf.serial_number
    assert camera_renewed.leaf.serial_number != camera_id.leaf.serial_number
    for device in (sensor, camera):
        assert any(
            f"client updated in {HUB} with authentication certificateAuthority" in story
            for story in hub_stories(fleet, device)
        )
    a = on_broker(fleet, devices, sensor, sensor_renewed)
    b = on_broker(fleet, devices, camera, camera_renewed)
    assert_own_topics_only(a, sensor, b, camera)
    assert_own_topics_only(b, camera, a, sensor)


def test_a_broker_that_does_not_trust_the_policy_ca_refuses_the_certificate_reload_or_not(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The negative twin of the fleet's broker: this one's X.509 listener trusts the onboarding
    CA only. It takes an onboarding certificate and refuses an operational one at the TLS
    handshake; appending the policy's CA to its cafile and reloading (SIGHUP) changes nothing,
    since Mosquitto 2.0 reloads a listener's certificate and key, not its cafile: the operator
    restarts it (docs/hubs-mosquitto.md#operational-certificates)."""
    device = "sensor-untrusted"
    key = op.p384_key()
    answer = csr_over_mqtt(
        fleet.endpoint, device, op.b64(op.csr(key, device)), password=key_token(fleet, device)
    )
    identity = issued(fleet, answer, device, key, device)
    # The fleet's broker, started with the policy's CA in its cafile, takes it.
    trusted = fleet.broker
    assert (
        certificate_login(trusted.x509_port, identity.cert, identity.key, trusted.server_ca, device)
        == 0
    )
    onboarding_chain, onboarding_key = onboarding_files(fleet, "camera-onboarding-only")
    with running_broker(tmp_path, fleet.onboarding) as other:

        def login(cert: Path, key: Path, client_id: str) -> int | str:
            return certificate_login(other.x509_port, cert, key, other.server_ca, client_id)

        assert login(onboarding_chain, onboarding_key, "camera-onboarding-only") == 0
        refused = login(identity.cert, identity.key, device)
        assert isinstance(refused, str), refused
        assert other.log.count("certificate verify failed") == 1, other.log
        with other.device_cas.open("ab") as cafile:
            cafile.write(fleet.policy_pem)
        other.reload()
        assert isinstance(login(identity.cert, identity.key, device), str)
        assert other.log.count("certificate verify failed") == 2, other.log
        # The onboarding certificate still gets in after the reload.
        assert login(onboarding_chain, onboarding_key, "camera-onboarding-only") == 0
