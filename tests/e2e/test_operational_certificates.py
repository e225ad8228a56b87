"""Operational certificates against a ``devprov serve`` process, over real mutual TLS on HTTPS,
MQTT and AMQP: devices that send a CSR with their register get a chain from their policy's CA,
renew by presenting it, are refused once it is revoked, and every refused CSR leaves nothing
stored. The policy is made in the data directory as the policy tools make it (tests/operational).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine

from devprov.amqp.application import Message
from devprov.amqp.frames import Attach, Rejected
from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.credential_policy import IssuedCertificate
from devprov.core.issuance import BACKDATE, PrivateKey
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.port import UnitOfWork
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests import operational as op
from tests.amqp.client import AmqpClient
from tests.instances import free_port
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

PREVIEW = "2025-07-01-preview"
STABLE = "2026-11-01"
POLICY = "ops"
HUB = "hub-a.azure-devices.net"
GROUP_KEY = base64.b64encode(b"k" * 32).decode()
PLAIN_KEY = base64.b64encode(b"p" * 32).decode()  # another key: its devices match 'plain' only


@dataclass
class Setup:
    server: ServerProcess
    engine: Engine  # the server's database, read and written as the policy tools do
    scope: str
    pki: Path  # the demo PKI: root (proven, trusted by group 'x509s'), intermediate, my-device
    ca: f.Ca | None = None  # the policy's issuing CA

    @property
    def policy_ca(self) -> f.Ca:
        assert self.ca is not None
        return self.ca

    def uow(self, *, read_only: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(self.engine, read_only=read_only)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    data = tmp_path_factory.mktemp("operational") / "data"
    ports = ["--mqtt-port", str(free_port()), "--amqp-port", str(free_port())]
    with running_server(data, *ports) as server:
        args = server.cli_args()
        assert main(["hub", "add", HUB, *args]) == 0
        pki = tmp_path_factory.mktemp("operational-pki")
        assert main(["ca", "demo", str(pki)]) == 0
        root = ["--cert", str(pki / "root.pem"), "--key", str(pki / "root.key")]
        assert main(["certificate", "prove", "demo-root", *root, *args]) == 0
        container = open_container(data)
        setup = Setup(server, container.engine, container.directory.get("default").id_scope, pki)
        setup.ca = op.add_policy(setup.uow, data, POLICY, days=30)
        with service_client(server) as svc:
            for group in (
                x509_group("x509s", "demo-root", POLICY),
                key_group("keys", GROUP_KEY, POLICY),
                key_group("plain", PLAIN_KEY, None),
            ):
                answer = svc.put(f"/enrollmentGroups/{group['enrollmentGroupId']}", json=group)
                assert answer.status_code == 200, answer.text
            individual = {
                "registrationId": "indiv-1",
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
                "credentialPolicyName": POLICY,
            }
            answer = svc.put("/enrollments/indiv-1", json=individual)
            assert answer.status_code == 200, answer.text
        try:
            yield setup
        finally:
            container.engine.dispose()


def x509_group(name: str, ca: str, policy: str | None) -> dict[str, Any]:
    group = {
        "enrollmentGroupId": name,
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": ca}}},
    }
    return group | ({"credentialPolicyName": policy} if policy else {})


def key_group(name: str, key: str, policy: str | None) -> dict[str, Any]:
    group = {
        "enrollmentGroupId": name,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
    }
    # The 2026-11-01 model names the policy by certificatePolicyName; both are read.
    return group | ({"certificatePolicyName": policy} if policy else {})


def service_client(server: ServerProcess) -> httpx.Client:
    c = open_container(server.data_dir)
    key = c.directory.policies("default")[0].primary_key
    c.engine.dispose()
    token = build_sas_token(
        key, f"localhost:{server.port}", int(time.time()) + 600, "provisioningserviceowner"
    )
    return httpx.Client(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=str(server.ca_file)),
        headers={"Authorization": token},
    )


def token(setup: Setup, device: str, group_key: str = GROUP_KEY) -> str:
    key = derive_device_key(group_key, device)
    return build_sas_token(key, f"{setup.scope}/registrations/{device}", int(time.time()) + 600)


def device_client(setup: Setup, cert: Path | None = None, key: Path | None = None) -> httpx.Client:
    context = tls_context(setup.server.ca_file, cert, key)
    return httpx.Client(base_url=setup.server.url, verify=context)


def https_register(
    client: httpx.Client,
    setup: Setup,
    device: str,
    csr: str | None,
    *,
    version: str = PREVIEW,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    document: dict[str, Any] = {"registrationId": device}
    if csr is not None:
        document["csr"] = csr
    return client.put(
        f"/{setup.scope}/registrations/{device}/register?api-version={version}",
        json=document,
        headers=headers or {},
    )


def now() -> datetime:
    return datetime.now(UTC)


def check_chain(setup: Setup, items: list[str], request, device: str) -> x509.Certificate:
    """The chain validates to the policy's CA (cryptography's verifier), for the CSR's key and
    the device, for the policy's 30 days; returns the leaf."""
    leaf = op.verify_issued_chain(items, setup.policy_ca, at=now())
    assert op.public_der(leaf.public_key()) == op.public_der(request.public_key())
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == [device]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=30) + BACKDATE
    return leaf


def issued_by_sha256(setup: Setup, der: bytes) -> IssuedCertificate | None:
    with setup.uow(read_only=True) as uow:
        return uow.issued.by_sha256("default", hashlib.sha256(der).hexdigest())


def write_identity(
    directory: Path, name: str, items: list[str], key: PrivateKey
) -> tuple[Path, Path]:
    """The operational certificate and the CA after it, and its key, as PEM files a TLS client
    loads."""
    chain = op.chain_of(items)
    cert = directory / f"{name}.pem"
    cert.write_bytes(b"".join(f.pem(c) for c in chain))
    key_file = directory / f"{name}.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


def stored(setup: Setup, device: str) -> tuple[bool, list[IssuedCertificate]]:
    """Whether ``device`` has a registration state, and the certificates issued to it."""
    with setup.uow(read_only=True) as uow:
        state = uow.registrations.get("default", device)
        issued = uow.issued.page("default", registration_id=device)
    return state is not None, issued


def revoke(setup: Setup, leaf: x509.Certificate) -> None:
    with setup.uow() as uow:
        assert uow.issued.revoke("default", f"{leaf.serial_number:X}", at=now())
        uow.commit()


# --- HTTPS ----------------------------------------------------------------------------------


def test_an_x509_device_gets_renews_and_is_refused_once_revoked_over_https(
    setup: Setup, tmp_path: Path
) -> None:
    pki = setup.pki
    key = op.p384_key()
    request = op.csr(key, "my-device")
    with device_client(setup, pki / "my-device-full-chain.pem", pki / "my-device.key") as client:
        answer = https_register(client, setup, "my-device", op.b64(request))
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["status"] == "assigned"
        items = result["registrationState"]["issuedCertificateChain"]
        first = check_chain(setup, items, request, "my-device")
        assert op.chain_of(items)[1:] == [setup.policy_ca.certificate]
        operation = result["operationId"]
        # The poll of that operation carries the same chain; the status lookup none.
        base = f"/{setup.scope}/registrations/my-device"
        polled = client.get(f"{base}/operations/{operation}?api-version={PREVIEW}")
        assert polled.status_code == 200 and polled.json() == result
        lookup = client.post(f"{base}?api-version={PREVIEW}", json={"registrationId": "my-device"})
        assert lookup.status_code == 200 and lookup.json()["status"] == "assigned"
        assert "issuedCertificateChain" not in json.dumps(lookup.json())
        with_csr = client.post(
            f"{base}?api-version={PREVIEW}",
            json={"registrationId": "my-device", "csr": op.b64(request)},
        )
        assert with_csr.status_code == 400 and with_csr.json()["errorCode"] == 400680
    # Renewal: the operational certificate as the client certificate, a new key's CSR.
    cert, key_file = write_identity(tmp_path, "operational", items, key)
    renewal_key = op.p384_key()
    renewal = op.csr(renewal_key, "my-device")
    with device_client(setup, cert, key_file) as client:
        answer = https_register(client, setup, "my-device", op.b64(renewal), version=STABLE)
        assert answer.status_code == 200, answer.text
        renewed_items = answer.json()["registrationState"]["issuedCertificateChain"]
        second = check_chain(setup, renewed_items, renewal, "my-device")
        assert second.serial_number != first.serial_number
    old = issued_by_sha256(setup, f.der(first))
    new = issued_by_sha256(setup, f.der(second))
    assert old is not None and old.superseded_at is not None and old.revoked_at is None
    assert new is not None and new.superseded_at is None
    # Revoked, the current certificate no longer renews; the device is told why.
    renewed_cert, renewed_key = write_identity(tmp_path, "renewed", renewed_items, renewal_key)
    revoke(setup, second)
    with device_client(setup, renewed_cert, renewed_key) as client:
        refused = https_register(
            client, setup, "my-device", op.b64(op.csr(f.ec_key(), "my-device"))
        )
    assert refused.status_code == 401
    assert refused.json()["errorCode"] == 401680 and "revoked" in refused.json()["message"]


@pytest.mark.parametrize("version", [PREVIEW, STABLE])
def test_a_symmetric_key_device_gets_a_chain_over_https(setup: Setup, version: str) -> None:
    device = f"sensor-{version[:4]}-{version[-2:]}"
    request = op.csr(op.p384_key(), device)
    with device_client(setup) as client:
        answer = https_register(
            client,
            setup,
            device,
            op.b64(request),
            version=version,
            headers={"Authorization": token(setup, device)},
        )
    assert answer.status_code == 200, answer.text
    state = answer.json()["registrationState"]
    assert state["symmetricKey"] == {"enrollmentGroupId": "keys"}
    check_chain(setup, state["issuedCertificateChain"], request, device)


def test_an_individual_symmetric_key_device_gets_a_chain_over_https(setup: Setup) -> None:
    request = op.csr(op.p384_key(), "indiv-1")
    resource = f"{setup.scope}/registrations/indiv-1"
    sas = build_sas_token(GROUP_KEY, resource, int(time.time()) + 600)  # its own key
    with device_client(setup) as client:
        answer = https_register(
            client, setup, "indiv-1", op.b64(request), headers={"Authorization": sas}
        )
    assert answer.status_code == 200, answer.text
    state = answer.json()["registrationState"]
    assert state["symmetricKey"] == {}
    check_chain(setup, state["issuedCertificateChain"], request, "indiv-1")


def test_a_csr_to_an_enrollment_without_a_policy_is_assigned_without_a_chain(setup: Setup) -> None:
    device = "plain-1"
    with device_client(setup) as client:
        answer = https_register(
            client,
            setup,
            device,
            op.b64(op.csr(f.ec_key(), device)),
            headers={"Authorization": token(setup, device, PLAIN_KEY)},
        )
    assert answer.status_code == 200 and answer.json()["status"] == "assigned"
    state = answer.json()["registrationState"]
    assert state["symmetricKey"] == {"enrollmentGroupId": "plain"}
    assert "issuedCertificateChain" not in state
    registered, issued = stored(setup, device)
    assert registered and issued == []


def _ca_true(device: str) -> str:
    ca = x509.BasicConstraints(ca=True, path_length=None)
    return op.b64(op.csr(op.p384_key(), device, extensions=[ca]))


@pytest.mark.parametrize(
    ("make", "number", "words"),
    [
        pytest.param(
            lambda d: op.signed_by_other_key(op.p384_key(), op.p384_key(), d),
            400612,
            "does not verify with the public key",
            id="fail/signed-by-another-key",
        ),
        pytest.param(
            lambda d: op.b64(op.csr(op.p384_key(), "someone-else")),
            400613,
            "is not the registration id",
            id="fail/cn-not-the-registration-id",
        ),
        pytest.param(_ca_true, 400615, "CA:TRUE", id="fail/ca-true"),
        pytest.param(
            lambda d: op.b64(op.csr(f.rsa_key(1024), d)), 400614, "1024 bits", id="fail/rsa-1024"
        ),
        pytest.param(lambda d: "%%% not a CSR %%%", 400610, "not base64", id="fail/garbage"),
        pytest.param(
            lambda d: op.pem_text(op.csr(op.p384_key(), d)),
            400611,
            "the CSR is PEM; send base64 of its DER",
            id="fail/pem",
        ),
    ],
)
def test_a_refused_csr_is_answered_precisely_and_stores_nothing(
    setup: Setup, make, number: int, words: str
) -> None:
    device = f"refused-{number}"
    with device_client(setup) as client:
        answer = https_register(
            client, setup, device, make(device), headers={"Authorization": token(setup, device)}
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["errorCode"] == number and words in answer.json()["message"]
    assert stored(setup, device) == (False, [])


def test_a_certificate_the_policy_ca_signed_but_devprov_did_not_issue_is_refused(
    setup: Setup, tmp_path: Path
) -> None:
    forged = f.device(setup.policy_ca, "my-device")
    cert = tmp_path / "forged.pem"
    cert.write_bytes(forged.pem + setup.policy_ca.pem)
    key = tmp_path / "forged.key"
    key.write_bytes(forged.key_pem())
    with device_client(setup, cert, key) as client:
        answer = https_register(client, setup, "my-device", op.b64(op.csr(f.ec_key(), "my-device")))
    assert answer.status_code == 401 and answer.json()["errorCode"] == 401002


# --- MQTT -----------------------------------------------------------------------------------


def mqtt_register(client: RawClient, device: str, csr: str, rid: str = "1"):
    document = json.dumps({"registrationId": device, "csr": csr}).encode()
    return client.request(f"$dps/registrations/PUT/iotdps-register/?$rid={rid}", document)


def mqtt_username(setup: Setup, device: str, version: str) -> str:
    return f"{setup.scope}/registrations/{device}/api-version={version}&ClientVersion=e2e%2F1"


def test_devices_get_renew_and_are_refused_once_revoked_over_mqtt(
    setup: Setup, tmp_path: Path
) -> None:
    port = setup.server.mqtt_port
    assert port is not None
    device = "mqtt-sensor"
    key = op.p384_key()
    request = op.csr(key, device)
    with RawClient(port, tls_context(setup.server.ca_file)) as client:
        connack = client.connect(
            setup.scope,
            device,
            password=token(setup, device),
            username=mqtt_username(setup, device, PREVIEW),
        )
        assert connack.return_code == 0
        client.subscribe()
        answer = mqtt_register(client, device, op.b64(request))
        assert status(answer) == 200, body(answer)
        items = body(answer)["registrationState"]["issuedCertificateChain"]
        first = check_chain(setup, items, request, device)
        polled = client.poll(body(answer)["operationId"])
        assert (status(polled), body(polled)) == (200, body(answer))
    # The X.509 group device over MQTT too.
    pki = setup.pki
    x509_request = op.csr(op.p384_key(), "my-device")
    x509_context = tls_context(
        setup.server.ca_file, pki / "my-device-full-chain.pem", pki / "my-device.key"
    )
    with RawClient(port, x509_context) as client:
        username = mqtt_username(setup, "my-device", STABLE)
        assert client.connect(setup.scope, "my-device", username=username).return_code == 0
        client.subscribe()
        answer = mqtt_register(client, "my-device", op.b64(x509_request))
        assert status(answer) == 200, body(answer)
        check_chain(
            setup,
            body(answer)["registrationState"]["issuedCertificateChain"],
            x509_request,
            "my-device",
        )
    # Renewal: CONNECT with the operational certificate, register with a new key's CSR.
    cert, key_file = write_identity(tmp_path, "mqtt-operational", items, key)
    renewal_key = op.p384_key()
    renewal = op.csr(renewal_key, device)
    with RawClient(port, tls_context(setup.server.ca_file, cert, key_file)) as client:
        username = mqtt_username(setup, device, PREVIEW)
        assert client.connect(setup.scope, device, username=username).return_code == 0
        client.subscribe()
        answer = mqtt_register(client, device, op.b64(renewal))
        assert status(answer) == 200, body(answer)
        renewed_items = body(answer)["registrationState"]["issuedCertificateChain"]
        second = check_chain(setup, renewed_items, renewal, device)
    old = issued_by_sha256(setup, f.der(first))
    assert old is not None and old.superseded_at is not None
    assert second.serial_number != first.serial_number
    # The current certificate connects until it is revoked; then CONNECT is refused
    # (5, not authorized), and a register in a session opened before is refused with 401680.
    renewed_cert, renewed_key = write_identity(tmp_path, "mqtt-renewed", renewed_items, renewal_key)
    context = tls_context(setup.server.ca_file, renewed_cert, renewed_key)
    username = mqtt_username(setup, device, PREVIEW)
    with RawClient(port, context) as opened:
        assert opened.connect(setup.scope, device, username=username).return_code == 0
        opened.subscribe()
        revoke(setup, second)
        with RawClient(port, context) as client:
            assert client.connect(setup.scope, device, username=username).return_code == 5
        refused = mqtt_register(opened, device, op.b64(op.csr(op.p384_key(), device)))
    assert status(refused) == 401 and body(refused)["errorCode"] == 401680


def test_a_refused_csr_over_mqtt(setup: Setup) -> None:
    port = setup.server.mqtt_port
    assert port is not None
    device = "mqtt-refused"
    with RawClient(port, tls_context(setup.server.ca_file)) as client:
        username = mqtt_username(setup, device, PREVIEW)
        password = token(setup, device)
        assert (
            client.connect(setup.scope, device, password=password, username=username).return_code
            == 0
        )
        client.subscribe()
        answer = mqtt_register(client, device, op.b64(op.csr(op.p384_key(), "another")))
    assert status(answer) == 400 and body(answer)["errorCode"] == 400613
    assert stored(setup, device) == (False, [])


# --- AMQP -----------------------------------------------------------------------------------


def amqp_register(setup: Setup, device: str, csr: str) -> dict[str, Any] | Rejected:
    port = setup.server.amqp_port
    assert port is not None
    address = f"{setup.scope}/registrations/{device}"
    context = tls_context(setup.server.ca_file)
    sasl = ("PLAIN", address, token(setup, device))
    with AmqpClient.connect("localhost", port, context, sasl=sasl) as client:
        client.open()
        client.begin()
        for attach in (client.attach_receiver, client.attach_sender):
            assert isinstance(attach(address, {"com.microsoft:api-version": PREVIEW}), Attach)
        correlation = str(uuid.uuid4())
        properties = {"iotdps-operation-type": "iotdps-register", "iotdps-forceRegistration": False}
        document = json.dumps({"registrationId": device, "csr": csr}).encode()
        outcome = client.send(
            Message(document, properties, correlation_id=correlation), address=address
        )
        if isinstance(outcome, Rejected):
            return outcome
        answer = client.receive()
        assert answer.correlation_id == correlation
        return dict(json.loads(answer.body))


def test_a_device_gets_a_chain_and_a_refused_csr_is_rejected_over_amqp(setup: Setup) -> None:
    device = "amqp-sensor"
    request = op.csr(op.p384_key(), device)
    answer = amqp_register(setup, device, op.b64(request))
    assert isinstance(answer, dict) and answer["status"] == "assigned", answer
    check_chain(setup, answer["registrationState"]["issuedCertificateChain"], request, device)
    refused = amqp_register(
        setup, "amqp-refused", op.pem_text(op.csr(op.p384_key(), "amqp-refused"))
    )
    assert isinstance(refused, Rejected) and refused.error is not None
    assert refused.error.description is not None
    error = json.loads(refused.error.description)
    assert error["errorCode"] == 400611 and "PEM" in error["message"]
    assert stored(setup, "amqp-refused") == (False, [])
