"""Operational certificates issued during a registration, over real SQLite and real key files:
what an assigned device gets for its CSR, the CSRs refused before anything is written, the
enrollments without a policy, the issuing failures, and the slow-webhook path."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, text

from devprov.core.csr import (
    CsrAsksForCaError,
    CsrIsPemError,
    CsrKeyNotAllowedError,
    CsrSignatureError,
    CsrSubjectError,
    MalformedCsrError,
)
from devprov.core.error import DevprovError
from devprov.core.registration import ISSUANCE_FAILURES, RegistrationStatus
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.device import RegistrationOutcome, WebhookCall
from devprov.service.device_answer import operation_status_body
from devprov.service.device_issuance import CertificateIssuanceError, CredentialPolicyMissingError
from devprov.storage.issuing_key import FileIssuingKeyStore, IssuingKeyMissingError
from tests import factory as f
from tests import operational as op
from tests.service.world import KEY, World, chain

POLICY = "ops"
HUB = "hub-a.azure-devices.net"


@pytest.fixture
def policy(world: World) -> f.Ca:
    """Credential policy 'ops' (30 days) and its issuing CA."""
    assert world.data_root is not None
    return op.add_policy(world.uow, world.data_root, POLICY, days=30)


def with_policy(name: str | None = POLICY) -> dict[str, Any]:
    return {} if name is None else {"credentialPolicyName": name}


def x509_group(world: World, pki, policy_name: str | None = POLICY) -> Credentials:
    """An X.509 group over the verified demo root; the credentials of its device 'dev-1'."""
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group(
        "grp",
        type="x509",
        x509={"caReferences": {"primary": "root"}},
        extra=with_policy(policy_name),
    )
    return chain(leaf, inter)


def key_group(world: World, device: str, policy_name: str | None = POLICY) -> Credentials:
    world.group(
        "keys",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra=with_policy(policy_name),
    )
    return world.token(device, derive_device_key(KEY, device))


def key_individual(world: World, device: str, policy_name: str | None = POLICY) -> Credentials:
    world.individual(
        device,
        {
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
            **with_policy(policy_name),
        },
    )
    return world.token(device, KEY)


def counts(engine: Engine) -> tuple[int, int, int]:
    """Registration states, operations and issued certificates stored."""
    with engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("registrations", "operations", "issued_certificates")
        )


def check_issued(
    world: World, outcome: RegistrationOutcome, ca: f.Ca, request, device: str, days: int = 30
):
    """The chain validates to the policy's CA, the leaf is for the CSR's key and the device, for
    the policy's days; it is stored under the operation, current. Returns the leaf."""
    assert outcome.operation.status == "assigned"
    now = world.clock.now
    leaf = op.verify_issued_chain(outcome.issued_chain, ca, at=now)
    assert op.chain_of(outcome.issued_chain)[1:] == [ca.certificate]
    assert op.public_der(leaf.public_key()) == op.public_der(request.public_key())
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == [device]
    assert leaf.not_valid_after_utc == now + timedelta(days=days)
    with world.uow(read_only=True) as uow:
        stored = uow.issued.for_operation("default", outcome.operation.id)
    assert stored is not None and stored.serial == f"{leaf.serial_number:X}"
    assert stored.registration_id == device and stored.policy == POLICY
    assert stored.superseded_at is None and stored.revoked_at is None
    return leaf


# --- issued ---------------------------------------------------------------------------------


def test_an_x509_group_device_gets_a_chain(world: World, pki, policy: f.Ca) -> None:
    credentials = x509_group(world, pki)
    request = op.csr(op.p384_key(), "dev-1")
    outcome = world.register("dev-1", credentials, csr=op.b64(request))
    check_issued(world, outcome, policy, request, "dev-1")
    polled = world.devices.operation_status(
        world.service.id_scope, "dev-1", outcome.operation.id, credentials
    )
    assert polled.issued_chain == outcome.issued_chain
    reasons = [e.reason for e in world.audit.events(registration_id="dev-1")]
    assert any(r and "issued operational certificate" in r and POLICY in r for r in reasons)


@pytest.mark.parametrize("enroll", [key_group, key_individual], ids=["group", "individual"])
def test_a_symmetric_key_device_gets_a_chain(world: World, policy: f.Ca, enroll) -> None:
    credentials = enroll(world, "sensor-1")
    request = op.csr(f.ec_key(), "sensor-1")  # P-256 is taken beside Azure's P-384
    outcome = world.register("sensor-1", credentials, csr=op.b64(request))
    check_issued(world, outcome, policy, request, "sensor-1")


def test_the_policy_sets_validity_and_subject(world: World) -> None:
    assert world.data_root is not None
    ca = op.add_policy(world.uow, world.data_root, POLICY, days=7, organization="Plant 4")
    credentials = key_group(world, "sensor-1")
    request = op.csr(op.p384_key(), "sensor-1")
    outcome = world.register("sensor-1", credentials, csr=op.b64(request))
    leaf = check_issued(world, outcome, ca, request, "sensor-1", days=7)
    assert leaf.subject.rfc4514_string() == "CN=sensor-1,O=Plant 4"


def test_registering_again_supersedes_the_earlier_certificate(world: World, policy) -> None:
    credentials = key_group(world, "sensor-1")
    first = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    world.clock.advance(minutes=5)
    second = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert second.issued_chain[0] != first.issued_chain[0]
    with world.uow(read_only=True) as uow:
        old = uow.issued.for_operation("default", first.operation.id)
        new = uow.issued.for_operation("default", second.operation.id)
    assert old is not None and old.superseded_at == world.clock.now
    assert new is not None and new.superseded_at is None
    # Each operation keeps the chain it issued.
    polled = world.devices.operation_status(
        world.service.id_scope, "sensor-1", first.operation.id, credentials
    )
    assert polled.issued_chain[0] == first.issued_chain[0]


def test_no_csr_no_certificate(world: World, policy, engine: Engine) -> None:
    credentials = key_group(world, "sensor-1")
    outcome = world.register("sensor-1", credentials)
    assert outcome.operation.status == "assigned" and outcome.issued_chain == ()
    assert counts(engine) == (1, 1, 0)


def test_a_disabled_enrollment_issues_nothing(world: World, policy, engine: Engine) -> None:
    world.group(
        "keys",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra={"credentialPolicyName": POLICY, "provisioningStatus": "disabled"},
    )
    credentials = world.token("sensor-1", derive_device_key(KEY, "sensor-1"))
    outcome = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert outcome.operation.status == "disabled" and outcome.issued_chain == ()
    assert counts(engine)[2] == 0


# --- no policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "csr_text",
    [
        pytest.param(lambda: op.b64(op.csr(f.ec_key(), "sensor-1")), id="good-csr"),
        pytest.param(lambda: "not base64 at all", id="garbage-not-even-read"),
    ],
)
def test_a_csr_to_an_enrollment_without_a_policy_is_ignored(
    world: World, engine: Engine, caplog: pytest.LogCaptureFixture, csr_text
) -> None:
    credentials = key_group(world, "sensor-1", policy_name=None)
    with caplog.at_level(logging.INFO, logger="devprov.registration"):
        outcome = world.register("sensor-1", credentials, csr=csr_text())
    assert outcome.operation.status == "assigned" and outcome.issued_chain == ()
    assert counts(engine) == (1, 1, 0)
    ignored = "its CSR was ignored: enrollment group 'keys' names no credential policy"
    assert any(ignored in (e.reason or "") for e in world.audit.events(registration_id="sensor-1"))
    assert any(ignored in r.getMessage() for r in caplog.records)


# --- refused CSRs ---------------------------------------------------------------------------


def _other_signer() -> str:
    return op.signed_by_other_key(op.p384_key(), op.p384_key(), "sensor-1")


def _ca_true() -> str:
    ca = x509.BasicConstraints(ca=True, path_length=None)
    return op.b64(op.csr(op.p384_key(), "sensor-1", extensions=[ca]))


REFUSED_CSRS = [
    pytest.param(_other_signer, CsrSignatureError, "signature", id="fail/signed-by-another-key"),
    pytest.param(
        lambda: op.b64(op.csr(op.p384_key(), "sensor-2")),
        CsrSubjectError,
        "is not the registration id",
        id="fail/cn-not-the-registration-id",
    ),
    pytest.param(_ca_true, CsrAsksForCaError, "CA:TRUE", id="fail/ca-true"),
    pytest.param(
        lambda: op.b64(op.csr(f.rsa_key(1024), "sensor-1")),
        CsrKeyNotAllowedError,
        "1024 bits",
        id="fail/rsa-1024",
    ),
    pytest.param(lambda: "bm90IGEgQ1NS", MalformedCsrError, "PKCS#10", id="fail/garbage"),
    pytest.param(
        lambda: op.pem_text(op.csr(op.p384_key(), "sensor-1")),
        CsrIsPemError,
        "the CSR is PEM",
        id="fail/pem",
    ),
]


@pytest.mark.parametrize(("csr_text", "error", "words"), REFUSED_CSRS)
def test_a_refused_csr_stores_nothing(
    world: World,
    policy,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
    csr_text,
    error: type[DevprovError],
    words: str,
) -> None:
    credentials = key_group(world, "sensor-1")
    with (
        caplog.at_level(logging.INFO, logger="devprov.refusal"),
        pytest.raises(error, match=words) as refused,
    ):
        world.register("sensor-1", credentials, csr=csr_text())
    assert refused.value.number // 1000 == 400
    assert counts(engine) == (0, 0, 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "devprov.refusal"]
    assert any(error.code in line for line in lines), lines


def test_a_refused_csr_leaves_an_earlier_registration_as_it_was(world: World, policy) -> None:
    credentials = key_group(world, "sensor-1")
    first = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    with world.uow(read_only=True) as uow:
        before = uow.registrations.get("default", "sensor-1")
    with pytest.raises(CsrSubjectError):
        world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "other")))
    with world.uow(read_only=True) as uow:
        assert uow.registrations.get("default", "sensor-1") == before
        current = uow.issued.for_operation("default", first.operation.id)
    assert current is not None and current.superseded_at is None


def test_a_policy_the_service_lacks_is_a_precise_error(world: World, policy, engine) -> None:
    credentials = key_group(world, "sensor-1")
    with world.uow() as uow:
        assert uow.credential_policies.remove("default", POLICY)
        uow.commit()
    with pytest.raises(CredentialPolicyMissingError, match="names credential policy 'ops'"):
        world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert CredentialPolicyMissingError.number == 400681
    assert counts(engine) == (0, 0, 0)


# --- issuing fails --------------------------------------------------------------------------


def test_a_policy_made_again_under_its_name_issues_from_its_new_ca(world: World, policy) -> None:
    """The process keeps issuing keys loaded per CA chain: the old key must not sign for the
    policy's new CA."""
    assert world.data_root is not None
    credentials = key_group(world, "sensor-1")
    first = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    op.verify_issued_chain(first.issued_chain, policy, at=world.clock.now)
    with world.uow() as uow:
        assert uow.credential_policies.remove("default", POLICY)
        uow.commit()
    renewed = op.add_policy(world.uow, world.data_root, POLICY, days=30)
    world.clock.advance(minutes=1)
    second = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    leaf = op.verify_issued_chain(second.issued_chain, renewed, at=world.clock.now)
    assert leaf.issuer == renewed.certificate.subject
    assert op.chain_of(second.issued_chain)[1:] == [renewed.certificate]


def test_a_missing_issuing_key_fails_the_registration(world: World, policy, engine) -> None:
    assert world.data_root is not None
    FileIssuingKeyStore(world.data_root).remove("default", POLICY)
    credentials = key_group(world, "sensor-1")
    outcome = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert outcome.operation.status == "failed" and outcome.issued_chain == ()
    assert outcome.state is not None and outcome.state.status is RegistrationStatus.FAILED
    assert outcome.operation.error_code == IssuingKeyMissingError.number
    assert "is missing" in (outcome.operation.error_message or "")  # the operator's reason
    shown = operation_status_body(outcome.operation, outcome.state)["registrationState"]
    assert (shown["errorCode"], shown["errorMessage"]) == (
        404620,
        "The operational certificate could not be issued",
    )
    assert counts(engine)[2] == 0


def test_an_expired_issuing_ca_fails_the_registration(world: World, engine) -> None:
    assert world.data_root is not None
    op.add_policy(world.uow, world.data_root, POLICY, ca_days=1)
    world.clock.advance(days=2)
    credentials = key_group(world, "sensor-1")
    outcome = world.register("sensor-1", credentials, csr=op.b64(op.csr(f.ec_key(), "sensor-1")))
    assert outcome.operation.status == "failed"
    assert "cannot issue" in (outcome.operation.error_message or "")
    assert counts(engine)[2] == 0


# --- a registration that waits on its webhook -----------------------------------------------


def test_the_csr_travels_with_a_held_registration(world: World, policy) -> None:
    world.group(
        "hooked",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra={
            "allocationPolicy": "custom",
            "customAllocationDefinition": {
                "webhookUrl": "https://alloc.example/fn",
                "apiVersion": "2021-10-01",
            },
            "credentialPolicyName": POLICY,
        },
    )
    world.webhook.answer = {"iotHubHostName": HUB}
    credentials = world.token("slow-1", derive_device_key(KEY, "slow-1"))
    request = op.csr(op.p384_key(), "slow-1")
    result = world.devices.register(
        world.service.id_scope, "slow-1", credentials, None, csr=op.b64(request)
    )
    assert isinstance(result, WebhookCall)
    operation, held = world.devices.hold(result)
    assert isinstance(held, WebhookCall)
    outcome = world.devices.complete(held, world.webhook.call(held.url, held.body))
    assert isinstance(outcome, RegistrationOutcome)
    assert outcome.operation.id == operation.id
    check_issued(world, outcome, policy, request, "slow-1")
    # The device that was answered "assigning" reads the chain from its poll.
    polled = world.devices.operation_status(
        world.service.id_scope, "slow-1", operation.id, credentials
    )
    assert polled.operation.status == "assigned"
    assert polled.issued_chain == outcome.issued_chain


def test_the_issuance_failures_a_device_is_told_generically_are_these_errors() -> None:
    """core.registration keeps the numbers (core imports neither storage nor service)."""
    assert {IssuingKeyMissingError.number, CertificateIssuanceError.number} == ISSUANCE_FAILURES
