"""Renewal over real SQLite: a device registers presenting the operational certificate devprov
issued it (and the policy's CA) instead of its onboarding credential, and gets a new one; every
accept with its reject twin, and the policy's CA trusted for nothing else."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from devprov.core.enrollment import EnrollmentKind
from devprov.core.registration import AttestationMethod
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.attestation_error import (
    EXPIRED,
    ID_MISMATCH,
    NO_ENROLLMENT,
    REVOKED,
    UNTRUSTED_CHAIN,
    DeviceAttestationError,
    OperationalCertificateRevokedError,
)
from devprov.service.device import RegistrationOutcome
from devprov.service.device_answer import device_message, status_of
from devprov.service.hub_identity import DeviceAuthKind
from tests import factory as f
from tests import operational as op
from tests.service.test_device_hub import HUB_K, link, pinned
from tests.service.test_device_issuance import POLICY, counts, key_group, key_individual, x509_group
from tests.service.world import KEY, World


@pytest.fixture
def policy(world: World) -> f.Ca:
    assert world.data_root is not None
    return op.add_policy(world.uow, world.data_root, POLICY, days=30)


def presenting(outcome: RegistrationOutcome) -> Credentials:
    """The credentials of a device that presents its operational certificate and the CA's."""
    return Credentials(chain_der=tuple(base64.b64decode(item) for item in outcome.issued_chain))


def issue(world: World, device: str, credentials: Credentials) -> RegistrationOutcome:
    outcome = world.register(device, credentials, csr=op.b64(op.csr(op.p384_key(), device)))
    assert outcome.issued_chain, outcome
    return outcome


def renew(world: World, device: str, outcome: RegistrationOutcome) -> RegistrationOutcome:
    """Register presenting ``outcome``'s certificate, with a new key's CSR."""
    return world.register(device, presenting(outcome), csr=op.b64(op.csr(op.p384_key(), device)))


def last_failure(world: World) -> str:
    return [c for c in world.metrics.calls if c[0] == "attestation_failure"][-1][1]


# --- renewed --------------------------------------------------------------------------------


def onboard_x509(world: World, pki, device: str) -> Credentials:
    return x509_group(world, pki)


ONBOARDING = [
    pytest.param(onboard_x509, "dev-1", EnrollmentKind.GROUP, "grp", id="x509-group"),
    pytest.param(
        lambda w, _pki, d: key_group(w, d), "sensor-1", EnrollmentKind.GROUP, "keys", id="key-group"
    ),
    pytest.param(
        lambda w, _pki, d: key_individual(w, d),
        "sensor-1",
        EnrollmentKind.INDIVIDUAL,
        "sensor-1",
        id="key-individual",
    ),
]


@pytest.mark.parametrize(("onboard", "device", "kind", "enrollment"), ONBOARDING)
def test_a_device_renews_with_its_operational_certificate(
    world: World, pki, policy: f.Ca, onboard, device: str, kind, enrollment: str
) -> None:
    first = issue(world, device, onboard(world, pki, device))
    world.clock.advance(days=20)
    request = op.csr(op.p384_key(), device)
    renewed = world.register(device, presenting(first), csr=op.b64(request))
    assert renewed.operation.status == "assigned"
    leaf = op.verify_issued_chain(renewed.issued_chain, policy, at=world.clock.now)
    assert op.public_der(leaf.public_key()) == op.public_der(request.public_key())
    assert leaf.not_valid_after_utc == world.clock.now + timedelta(days=30)
    state = renewed.state
    assert state is not None
    assert (state.enrollment_kind, state.enrollment_id) == (kind, enrollment)
    # The registration keeps its enrollment's attestation type; an X.509 one shows the
    # operational certificate and the CA that issued it.
    if onboard is onboard_x509:
        assert state.method is AttestationMethod.X509
        assert state.certificate is not None and state.certificate.subject_name == "CN=dev-1"
        assert state.signing_certificate is not None
        assert state.signing_certificate.subject_name == f"CN={POLICY} Issuing CA"
    else:
        assert state.method is AttestationMethod.SYMMETRIC_KEY
        assert state.certificate is None and state.signing_certificate is None
    with world.uow(read_only=True) as uow:
        old = uow.issued.for_operation("default", first.operation.id)
        new = uow.issued.for_operation("default", renewed.operation.id)
    assert old is not None and old.superseded_at == world.clock.now
    assert new is not None and new.superseded_at is None
    # The renewed device polls with the certificate it registered with.
    polled = world.devices.operation_status(
        world.service.id_scope, device, renewed.operation.id, presenting(first)
    )
    assert polled.issued_chain == renewed.issued_chain
    # And renews again with the new one; the first, superseded but valid, still renews too.
    assert renew(world, device, renewed).operation.status == "assigned"
    assert renew(world, device, first).operation.status == "assigned"


def test_a_renewal_without_a_csr_is_a_registration_without_a_certificate(
    world: World, policy
) -> None:
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    again = world.register("sensor-1", presenting(first))
    assert again.operation.status == "assigned" and again.issued_chain == ()


def test_the_leaf_alone_renews_too(world: World, policy) -> None:
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    leaf_only = Credentials(chain_der=presenting(first).chain_der[:1])
    outcome = world.register("sensor-1", leaf_only, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert outcome.issued_chain


# --- refused --------------------------------------------------------------------------------


def test_a_revoked_certificate_is_refused(world: World, policy, engine: Engine) -> None:
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    serial = f"{op.chain_of(first.issued_chain)[0].serial_number:X}"
    with world.uow() as uow:
        assert uow.issued.revoke("default", serial, at=world.clock.now)
        uow.commit()
    before = counts(engine)
    with pytest.raises(OperationalCertificateRevokedError, match="was revoked") as refused:
        renew(world, "sensor-1", first)
    error = refused.value
    assert (status_of(error), error.number, error.code) == (
        401,
        401680,
        "OperationalCertificateRevoked",
    )
    assert "revoked" in device_message(error)
    assert last_failure(world) == REVOKED
    assert counts(engine) == before
    # Its onboarding credential still registers it, and gets it a new certificate.
    assert issue(world, "sensor-1", world.token("sensor-1", derive_device_key(KEY, "sensor-1")))


def test_a_certificate_the_policy_ca_signed_but_devprov_did_not_issue_is_refused(
    world: World, policy: f.Ca
) -> None:
    issue(world, "sensor-1", key_group(world, "sensor-1"))
    forged = f.device(policy, "sensor-1", now=world.clock.now)
    credentials = Credentials(chain_der=(forged.der, policy.der))
    with pytest.raises(DeviceAttestationError) as refused:
        world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert not isinstance(refused.value, OperationalCertificateRevokedError)
    assert last_failure(world) == NO_ENROLLMENT


def test_a_certificate_issued_to_another_device_is_refused(world: World, policy) -> None:
    credentials_a = key_group(world, "sensor-a")
    first = issue(world, "sensor-a", credentials_a)
    issue(world, "sensor-b", world.token("sensor-b", derive_device_key(KEY, "sensor-b")))
    with pytest.raises(DeviceAttestationError, match="sensor-a"):
        world.register("sensor-b", presenting(first), csr=op.b64(op.csr(f.ec_key(), "sensor-b")))
    assert last_failure(world) == ID_MISMATCH


def test_an_expired_certificate_is_refused(world: World, policy) -> None:
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    world.clock.advance(days=31)
    with pytest.raises(DeviceAttestationError, match="onboarding credential"):
        renew(world, "sensor-1", first)
    assert last_failure(world) == EXPIRED


def _disable(world: World) -> None:
    world.enrollments.create_or_update(
        "default",
        EnrollmentKind.GROUP,
        "keys",
        _keys_group(provisioningStatus="disabled", credentialPolicyName=POLICY),
        if_match="*",
        actor="t",
    )


def _unlink(world: World) -> None:
    world.enrollments.create_or_update(
        "default", EnrollmentKind.GROUP, "keys", _keys_group(), if_match="*", actor="t"
    )


def _delete_enrollment(world: World) -> None:
    world.enrollments.delete("default", EnrollmentKind.GROUP, "keys", if_match="*", actor="t")


def _delete_registration(world: World) -> None:
    with world.uow() as uow:
        state = uow.registrations.get("default", "sensor-1")
        assert state is not None
        uow.registrations.remove("default", "sensor-1", expected_etag=state.etag)
        uow.commit()


def _delete_policy(world: World) -> None:
    with world.uow() as uow:
        assert uow.credential_policies.remove("default", POLICY)
        uow.commit()


def _keys_group(**extra: Any) -> dict[str, Any]:
    return {
        "enrollmentGroupId": "keys",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "words", "reason"),
    [
        pytest.param(_disable, "is disabled", NO_ENROLLMENT, id="fail/enrollment-disabled"),
        pytest.param(_unlink, "no longer names", NO_ENROLLMENT, id="fail/policy-unlinked"),
        pytest.param(
            _delete_enrollment, "no longer exists", NO_ENROLLMENT, id="fail/enrollment-deleted"
        ),
        pytest.param(
            _delete_registration, "no registration", NO_ENROLLMENT, id="fail/registration-deleted"
        ),
    ],
)
def test_renewal_needs_the_registration_and_its_enrollment_as_they_were(
    world: World, policy, change, words: str, reason: str
) -> None:
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    assert renew(world, "sensor-1", first).operation.status == "assigned"  # the accept twin
    change(world)
    with pytest.raises(DeviceAttestationError, match=words):
        renew(world, "sensor-1", first)
    assert last_failure(world) == reason


def test_a_certificate_of_a_deleted_policy_is_refused(world: World, policy) -> None:
    assert world.data_root is not None
    op.add_policy(world.uow, world.data_root, "other")
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    _delete_policy(world)
    with pytest.raises(DeviceAttestationError, match="'ops', which no longer exists"):
        renew(world, "sensor-1", first)
    assert last_failure(world) == UNTRUSTED_CHAIN
    # Without any policy left the service issued nothing it could renew: the certificate is
    # then one more that no enrollment knows.
    with world.uow() as uow:
        assert uow.credential_policies.remove("default", "other")
        uow.commit()
    with pytest.raises(DeviceAttestationError, match="no enrollment"):
        renew(world, "sensor-1", first)


def test_a_chain_that_does_not_validate_to_the_policy_ca_is_refused(world: World, policy) -> None:
    """The policy's CA replaced under the same name (deleted, made again): the certificates of
    the old one no longer renew."""
    first = issue(world, "sensor-1", key_group(world, "sensor-1"))
    _delete_policy(world)
    assert world.data_root is not None
    op.add_policy(world.uow, world.data_root, POLICY)
    with pytest.raises(DeviceAttestationError, match="does not validate to the CA"):
        renew(world, "sensor-1", first)
    assert last_failure(world) == UNTRUSTED_CHAIN


@pytest.mark.parametrize("individual", [False, True], ids=["group", "individual"])
def test_a_renewal_asks_the_hub_for_the_identity_the_onboarding_did(
    world: World, policy, individual: bool
) -> None:
    """A hub of a kind other than none is asked for the same identity whether the device
    registers with its token or renews with its operational certificate: CA-signed, since both
    issue it a certificate (service.hub_assignment), while the registration stays a symmetric-key
    one."""
    link(world)
    if individual:
        world.individual(
            "sensor-1",
            {
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
                "credentialPolicyName": POLICY,
                **pinned(),
            },
        )
        credentials = world.token("sensor-1", KEY)
    else:
        world.group(
            "keys",
            type="symmetricKey",
            symmetricKey={"primaryKey": KEY},
            extra={"credentialPolicyName": POLICY, **pinned()},
        )
        credentials = world.token("sensor-1", derive_device_key(KEY, "sensor-1"))
    first = issue(world, "sensor-1", credentials)
    renewed = renew(world, "sensor-1", first)
    assert renewed.issued_chain and renewed.state is not None
    assert renewed.state.assigned_hub == HUB_K
    onboarding, renewal = (call.identity for call in world.hub_calls.of("put"))
    assert renewal.authentication == onboarding.authentication
    assert renewal.authentication.kind is DeviceAuthKind.CERTIFICATE_AUTHORITY
    assert renewed.state.method is AttestationMethod.SYMMETRIC_KEY
