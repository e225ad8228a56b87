"""The identity an assignment asks its hub for (service.hub_assignment): by attestation, unless the
registration issues an operational certificate, which makes it CA-signed whatever the device
attested with; and the device use case telling it so, over real SQLite and real key files, with a
recording HubIdentities (tests/hubs.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from devprov.core.certificate import describe_der
from devprov.core.enrollment import Enrollment, EnrollmentKind, parse_enrollment
from devprov.core.registration import AttestationMethod, RegistrationState, RegistrationStatus
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.device import HubCall
from devprov.service.hub_assignment import build_authentication, build_identity
from devprov.service.hub_identity import (
    DeviceAuthentication,
    DeviceAuthKind,
    HubUnreachableError,
)
from devprov.storage.issuing_key import FileIssuingKeyStore, IssuingKeyMissingError
from tests import factory as f
from tests import operational as op
from tests.service.test_device_hub import HUB_K, TWIN, link, pinned
from tests.service.test_device_registration import self_signed
from tests.service.world import KEY, World, chain

POLICY = "ops"
OTHER_KEY = base64.b64encode(b"o" * 32).decode()
SOLO = self_signed("solo")


def enrollment(kind: EnrollmentKind, attestation: dict[str, object]) -> Enrollment:
    id_field = "registrationId" if kind is EnrollmentKind.INDIVIDUAL else "enrollmentGroupId"
    doc = {id_field: "e1", "attestation": attestation, "initialTwin": TWIN}
    return parse_enrollment(doc, kind, service="default", path_id="e1")


def state(method: AttestationMethod, kind: EnrollmentKind) -> RegistrationState:
    return RegistrationState(
        service="default",
        registration_id="dev-1",
        method=method,
        enrollment_kind=kind,
        enrollment_id="e1",
        status=RegistrationStatus.ASSIGNED,
        created_at=f.NOW,
        updated_at=f.NOW,
        etag="e",
        device_id="device-1",
        assigned_hub=HUB_K,
    )


@dataclass(frozen=True)
class Onboarding:
    """An enrollment and how its device attested."""

    method: AttestationMethod
    kind: EnrollmentKind
    attestation: dict[str, object]


KEYS = {"primaryKey": KEY, "secondaryKey": OTHER_KEY}
ONBOARDINGS = {
    "x509-group": Onboarding(
        AttestationMethod.X509,
        EnrollmentKind.GROUP,
        {"type": "x509", "x509": {"caReferences": {"primary": "root"}}},
    ),
    "x509-individual": Onboarding(
        AttestationMethod.X509,
        EnrollmentKind.INDIVIDUAL,
        {
            "type": "x509",
            "x509": {"clientCertificates": {"primary": {"certificate": SOLO.pem.decode()}}},
        },
    ),
    "key-group": Onboarding(
        AttestationMethod.SYMMETRIC_KEY,
        EnrollmentKind.GROUP,
        {"type": "symmetricKey", "symmetricKey": KEYS},
    ),
    "key-individual": Onboarding(
        AttestationMethod.SYMMETRIC_KEY,
        EnrollmentKind.INDIVIDUAL,
        {"type": "symmetricKey", "symmetricKey": KEYS},
    ),
}

BY_ATTESTATION = {
    "x509-group": DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY),
    "x509-individual": DeviceAuthentication(
        DeviceAuthKind.SELF_SIGNED, primary_thumbprint=describe_der(SOLO.der).thumbprint
    ),
    "key-group": DeviceAuthentication(
        DeviceAuthKind.SAS,
        primary_key=derive_device_key(KEY, "dev-1"),
        secondary_key=derive_device_key(OTHER_KEY, "dev-1"),
    ),
    "key-individual": DeviceAuthentication(
        DeviceAuthKind.SAS, primary_key=KEY, secondary_key=OTHER_KEY
    ),
}


# --- build_authentication -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ONBOARDINGS), ids=[f"ok/{n}" for n in ONBOARDINGS])
def test_without_a_certificate_the_identity_follows_the_attestation(name: str) -> None:
    onboarding = ONBOARDINGS[name]
    built = build_authentication(
        state(onboarding.method, onboarding.kind),
        enrollment(onboarding.kind, onboarding.attestation),
        certificate_issued=False,
    )
    assert built == BY_ATTESTATION[name]


@pytest.mark.parametrize("name", list(ONBOARDINGS), ids=[f"ok/issued-to-{n}" for n in ONBOARDINGS])
def test_a_registration_that_issues_a_certificate_gets_a_ca_signed_identity(name: str) -> None:
    """No keys and no thumbprints go to the hub: the device connects with its operational
    certificate, which the hub trusts through the policy's CA."""
    onboarding = ONBOARDINGS[name]
    built = build_authentication(
        state(onboarding.method, onboarding.kind),
        enrollment(onboarding.kind, onboarding.attestation),
        certificate_issued=True,
    )
    assert built == DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY)


def test_the_identity_carries_the_device_the_twin_and_the_authentication() -> None:
    onboarding = ONBOARDINGS["key-group"]
    registration = state(onboarding.method, onboarding.kind)
    group = enrollment(onboarding.kind, onboarding.attestation)
    for issued in (False, True):
        identity = build_identity(registration, group, certificate_issued=issued)
        assert (identity.device_id, identity.registration_id, identity.enabled) == (
            "device-1",
            "dev-1",
            True,
        )
        assert identity.initial_twin == TWIN
        assert identity.authentication == build_authentication(
            registration, group, certificate_issued=issued
        )


# --- the device use case --------------------------------------------------------------------


@pytest.fixture
def policy(world: World) -> f.Ca:
    assert world.data_root is not None
    return op.add_policy(world.uow, world.data_root, POLICY, days=30)


def key_group(world: World, device: str, policy_name: str | None = POLICY) -> Credentials:
    extra = pinned() | ({"credentialPolicyName": policy_name} if policy_name else {})
    world.group("keys", type="symmetricKey", symmetricKey={"primaryKey": KEY}, extra=extra)
    return world.token(device, derive_device_key(KEY, device))


def key_individual(world: World, device: str) -> Credentials:
    world.individual(
        device,
        {
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
            "credentialPolicyName": POLICY,
            **pinned(),
        },
    )
    return world.token(device, KEY)


def x509_individual(world: World, device: str) -> Credentials:
    certificate = self_signed(device)
    certificates = {"primary": {"certificate": certificate.pem.decode()}}
    world.individual(
        device,
        {
            "attestation": {"type": "x509", "x509": {"clientCertificates": certificates}},
            "credentialPolicyName": POLICY,
            **pinned(),
        },
    )
    return chain(certificate)


def x509_group(world: World, device: str) -> Credentials:
    root = f.root("Hub Root")
    world.verified_ca(root, "root")
    world.group(
        "grp",
        type="x509",
        x509={"caReferences": {"primary": "root"}},
        extra={"credentialPolicyName": POLICY, **pinned()},
    )
    return chain(f.device(root, device))


ENROLL: dict[str, Callable[[World, str], Credentials]] = {
    "key-group": key_group,
    "key-individual": key_individual,
    "x509-individual": x509_individual,
    "x509-group": x509_group,
}


def csr_for(device: str) -> str:
    return op.b64(op.csr(op.p384_key(), device))


@pytest.mark.parametrize("name", list(ENROLL), ids=[f"ok/{n}" for n in ENROLL])
def test_a_device_that_sends_a_csr_is_created_ca_signed(
    world: World, policy: f.Ca, name: str
) -> None:
    link(world)
    credentials = ENROLL[name](world, "dev-1")
    outcome = world.register("dev-1", credentials, csr=csr_for("dev-1"))
    assert outcome.issued_chain and outcome.state is not None
    assert outcome.state.assigned_hub == HUB_K
    (put,) = world.hub_calls.of("put")
    assert put.identity is not None
    assert put.identity.authentication == DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY)
    assert put.identity.initial_twin == TWIN
    op.verify_issued_chain(outcome.issued_chain, policy, at=world.clock.now)
    reason = next(
        e.reason or ""
        for e in world.audit.events(registration_id="dev-1")
        if e.action == "register"
    )
    assert f"identity created in {HUB_K} with authentication certificateAuthority" in reason
    assert "issued operational certificate" in reason


def test_the_same_device_without_a_csr_gets_its_keys_again(world: World, policy) -> None:
    """Only a registration that issues a certificate changes the identity; the device that
    registers again without one is a symmetric-key identity as before."""
    link(world)
    credentials = key_group(world, "sensor-1")
    assert world.register("sensor-1", credentials, csr=csr_for("sensor-1")).issued_chain
    assert world.register("sensor-1", credentials).issued_chain == ()
    issued, plain = (c.identity for c in world.hub_calls.of("put"))
    assert issued is not None and plain is not None
    assert issued.authentication.kind is DeviceAuthKind.CERTIFICATE_AUTHORITY
    assert plain.authentication == DeviceAuthentication(
        DeviceAuthKind.SAS,
        primary_key=derive_device_key(KEY, "sensor-1"),
        secondary_key=plain.authentication.secondary_key,
    )
    assert plain.authentication.secondary_key  # generated with the group, derived for the device


def test_a_csr_to_an_enrollment_without_a_policy_leaves_the_identity_by_attestation(
    world: World,
) -> None:
    link(world)
    credentials = key_group(world, "sensor-1", policy_name=None)
    outcome = world.register("sensor-1", credentials, csr=csr_for("sensor-1"))
    assert outcome.operation.status == "assigned" and outcome.issued_chain == ()
    (put,) = world.hub_calls.of("put")
    assert put.identity is not None and put.identity.authentication.kind is DeviceAuthKind.SAS


def test_a_certificate_that_cannot_be_issued_leaves_the_hub_alone(world: World, policy) -> None:
    """Issued before the hub is asked: a missing issuing key fails the registration and the
    identity the hub holds stays as it was (here, the keys of an earlier registration)."""
    assert world.data_root is not None
    link(world)
    credentials = key_group(world, "sensor-1")
    assert world.register("sensor-1", credentials).state is not None
    FileIssuingKeyStore(world.data_root).remove("default", POLICY)
    outcome = world.register("sensor-1", credentials, csr=csr_for("sensor-1"))
    assert outcome.operation.status == "failed"
    assert outcome.operation.error_code == IssuingKeyMissingError.number
    (put,) = world.hub_calls.of("put")  # the first registration's only
    assert put.identity is not None and put.identity.authentication.kind is DeviceAuthKind.SAS


def test_a_failed_hub_call_stores_no_certificate(world: World, policy) -> None:
    link(world)
    credentials = key_group(world, "sensor-1")
    world.hub_calls.failure = HubUnreachableError(f"{HUB_K} did not answer")
    outcome = world.register("sensor-1", credentials, csr=csr_for("sensor-1"))
    assert outcome.operation.status == "failed" and outcome.issued_chain == ()
    with world.uow(read_only=True) as uow:
        assert uow.issued.page("default", registration_id="sensor-1") == []
    world.hub_calls.failure = None
    again = world.register("sensor-1", credentials, csr=csr_for("sensor-1"))
    assert again.operation.status == "assigned" and again.issued_chain


def test_a_registration_decided_again_after_a_race_is_issued_for_the_stored_spelling(
    world: World, policy
) -> None:
    """A first register waits on its hub while the same device, spelled otherwise, registers
    through another request; the waiting one is decided again against the stored registration,
    and its certificate is issued again with the registration id as that registration holds it
    (docs/operational-certificates.md#the-registration)."""
    link(world)
    world.individual(
        "sensor-1",
        {
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
            "credentialPolicyName": POLICY,
            **pinned(),
        },
    )
    pending = world.devices.register(
        world.service.id_scope,
        "Sensor-1",
        world.token("Sensor-1", KEY),
        None,
        csr=csr_for("Sensor-1"),
    )
    assert isinstance(pending, HubCall) and pending.issued is not None
    assert pending.issued.record.registration_id == "Sensor-1"
    assert pending.identity.authentication.kind is DeviceAuthKind.CERTIFICATE_AUTHORITY
    won = world.register("sensor-1", world.token("sensor-1", KEY), csr=csr_for("sensor-1"))
    assert won.state is not None and won.state.registration_id == "sensor-1"
    outcome = world.devices.complete_hub(pending, "identity updated")
    assert outcome.operation.status == "assigned" and outcome.state is not None
    assert outcome.state.registration_id == "sensor-1"
    leaf = x509.load_der_x509_certificate(base64.b64decode(outcome.issued_chain[0]))
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["sensor-1"]
    assert f"{leaf.serial_number:X}" != pending.issued.record.serial
    with world.uow(read_only=True) as uow:
        current = uow.issued.page("default", registration_id="sensor-1")
    assert [c.serial for c in current if c.superseded_at is None] == [f"{leaf.serial_number:X}"]
