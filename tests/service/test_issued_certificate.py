"""What credential policies issued: listing it, revoking it, and each policy's CRL (RFC 5280 5),
over real SQLite and real key files."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devprov.core import error as e
from devprov.core.credential_policy import IssuedCertificate
from devprov.core.issuance import build_device_certificate
from devprov.service.audit import AuditTrail
from devprov.service.credential_policy import (
    CertificateAlreadyRevokedError,
    CredentialPolicies,
    CredentialPolicyNotFoundError,
    IssuedCertificateNotFoundError,
)
from devprov.service.revocation import CRL_VALIDITY, InvalidSerialNumberError, parse_serial
from devprov.storage.issuing_key import FileIssuingKeyStore, IssuingKeyMissingError
from tests import factory as f

ACTOR = "cli"
SVC = "default"


@pytest.fixture
def keys(tmp_path: Path) -> FileIssuingKeyStore:
    return FileIssuingKeyStore(tmp_path / "data")


@pytest.fixture
def policies(uow, clock, directory, keys) -> CredentialPolicies:
    directory.create(SVC)
    return CredentialPolicies(uow, keys, clock, secrets.token_bytes)


@pytest.fixture
def fleet(policies) -> str:
    policies.create(SVC, "fleet", key_type="ec-p384", actor=ACTOR)
    return "fleet"


def issue(
    policies: CredentialPolicies,
    keys: FileIssuingKeyStore,
    uow,
    registration_id: str,
    *,
    policy: str = "fleet",
    at: timedelta = timedelta(0),
) -> IssuedCertificate:
    """A certificate signed by the policy's CA and recorded as issued, as a registration does."""
    ca = x509.load_pem_x509_certificates(policies.show(SVC, policy).ca_chain_pem.encode())[0]
    issuer = f.Ca(ca, keys.load(SVC, policy)).issuer
    issued_at = f.NOW + at
    certificate = build_device_certificate(
        f.ec_key().public_key(), registration_id, issuer, serial=f.serial(), now=issued_at, days=7
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    record = IssuedCertificate(
        service=SVC,
        serial=f"{certificate.serial_number:X}",
        sha256=hashlib.sha256(der).hexdigest(),
        registration_id=registration_id,
        policy=policy,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issued_at=issued_at,
        certificate_der=der,
    )
    with uow() as u:
        u.issued.add(record)
        u.commit()
    return record


def crl_of(policies: CredentialPolicies, policy: str = "fleet") -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(policies.crl(SVC, policy))


def ca_of(policies: CredentialPolicies, policy: str = "fleet") -> x509.Certificate:
    return x509.load_pem_x509_certificates(policies.show(SVC, policy).ca_chain_pem.encode())[0]


# --- serials ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0A1B", "A1B", id="ok/leading-zero"),
        pytest.param("0a:1b", "A1B", id="ok/openssl-pairs"),
        pytest.param(" ff ", "FF", id="ok/spaces-around"),
        pytest.param("7" * 40, "7" * 40, id="ok/twenty-octets"),
    ],
)
def test_a_serial_is_read_as_operators_copy_it(text, expected) -> None:
    assert parse_serial(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("xyz", id="fail/not-hex"),
        pytest.param("0A::1B", id="fail/double-colon"),
        pytest.param(":0A", id="fail/leading-colon"),
        pytest.param("0x0A", id="fail/prefix"),
    ],
)
def test_a_serial_that_is_not_hex_is_refused(text) -> None:
    with pytest.raises(InvalidSerialNumberError):
        parse_serial(text)


# --- issued ----------------------------------------------------------------------------------


def test_issued_lists_by_issue_time_with_filters_and_pages(policies, keys, uow, fleet) -> None:
    policies.create(SVC, "other", key_type="ec-p256", actor=ACTOR)
    a1 = issue(policies, keys, uow, "dev-a")
    b1 = issue(policies, keys, uow, "dev-b", at=timedelta(minutes=1))
    a2 = issue(policies, keys, uow, "Dev-A", policy="other", at=timedelta(minutes=2))
    assert policies.issued(SVC) == [a1, b1, a2]
    assert policies.issued(SVC, policy="FLEET") == [a1, b1]
    assert policies.issued(SVC, registration_id="DEV-A") == [a1, a2]
    assert policies.issued(SVC, limit=2) == [a1, b1]
    assert policies.issued(SVC, after=b1.serial.lower(), limit=2) == [a2]
    # A policy that is gone still filters what it issued.
    policies.delete(SVC, "other", actor=ACTOR)
    assert policies.issued(SVC, policy="other") == [a2]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param({"limit": 0}, e.InvalidInputError, id="fail/limit-zero"),
        pytest.param({"limit": 1001}, e.InvalidInputError, id="fail/limit-too-large"),
        pytest.param({"after": "zz"}, InvalidSerialNumberError, id="fail/after-not-a-serial"),
    ],
)
def test_issued_refuses_a_bad_page(policies, options, error) -> None:
    with pytest.raises(error):
        policies.issued(SVC, **options)
    assert policies.issued(SVC, limit=1000) == []  # the accepted twin


def test_issued_of_a_missing_service_is_not_found(policies) -> None:
    with pytest.raises(e.ServiceNotFoundError):
        policies.issued("nowhere")


def test_one_issued_certificate_is_read_by_its_serial_in_any_spelling(
    policies, keys, uow, fleet
) -> None:
    record = issue(policies, keys, uow, "dev-1")
    spaced = ":".join(f"{int(record.serial, 16):040X}"[i : i + 2] for i in range(0, 40, 2))
    assert policies.issued_certificate(SVC, record.serial.lower()) == record
    assert policies.issued_certificate(SVC, spaced) == record


def test_an_unknown_or_malformed_serial_reads_nothing(policies, keys, uow, fleet) -> None:
    record = issue(policies, keys, uow, "dev-1")
    unknown = f"{int(record.serial, 16) + 1:X}"
    with pytest.raises(IssuedCertificateNotFoundError, match=unknown):
        policies.issued_certificate(SVC, unknown)
    with pytest.raises(InvalidSerialNumberError):
        policies.issued_certificate(SVC, "not-hex")
    with pytest.raises(e.ServiceNotFoundError):
        policies.issued_certificate("nowhere", record.serial)


# --- revoke ----------------------------------------------------------------------------------


def test_revoke_marks_the_certificate_raises_the_crl_number_and_is_audited(
    policies, keys, uow, clock, fleet
) -> None:
    record = issue(policies, keys, uow, "dev-1")
    issue(policies, keys, uow, "dev-2", at=timedelta(minutes=1))
    clock.advance(minutes=10)
    revoked = policies.revoke(SVC, record.serial.lower(), actor=ACTOR)
    assert revoked.revoked_at == clock.now
    assert [c.revoked_at for c in policies.issued(SVC)] == [clock.now, None]
    assert policies.show(SVC, "fleet").crl_number == 1
    (event,) = AuditTrail(uow).events(service=SVC, registration_id="dev-1")
    assert (event.action, event.actor) == ("issuedCertificate.revoke", ACTOR)
    assert event.reason is not None and record.serial in event.reason


def test_revoking_twice_is_a_conflict_and_changes_nothing(
    policies, keys, uow, clock, fleet
) -> None:
    record = issue(policies, keys, uow, "dev-1")
    first = policies.revoke(SVC, record.serial, actor=ACTOR)
    clock.advance(hours=1)
    with pytest.raises(CertificateAlreadyRevokedError, match="already") as raised:
        policies.revoke(SVC, record.serial, actor=ACTOR)
    assert raised.value.number == 409622
    assert policies.issued(SVC)[0].revoked_at == first.revoked_at
    assert policies.show(SVC, "fleet").crl_number == 1


def test_revoking_an_unknown_serial_is_not_found(policies, keys, uow, fleet) -> None:
    record = issue(policies, keys, uow, "dev-1")
    unknown = f"{int(record.serial, 16) + 1:X}"
    with pytest.raises(IssuedCertificateNotFoundError, match=unknown) as raised:
        policies.revoke(SVC, unknown, actor=ACTOR)
    assert raised.value.number == 404622
    with pytest.raises(InvalidSerialNumberError):
        policies.revoke(SVC, "not-hex", actor=ACTOR)
    with pytest.raises(e.ServiceNotFoundError):
        policies.revoke("nowhere", record.serial, actor=ACTOR)
    assert policies.issued(SVC)[0].revoked_at is None
    assert policies.show(SVC, "fleet").crl_number == 0


def test_a_certificate_of_a_deleted_policy_can_still_be_revoked(policies, keys, uow, fleet) -> None:
    record = issue(policies, keys, uow, "dev-1")
    policies.delete(SVC, "fleet", actor=ACTOR)
    assert policies.revoke(SVC, record.serial, actor=ACTOR).revoked


# --- crl -------------------------------------------------------------------------------------


def test_a_new_policys_crl_is_empty_numbered_zero_and_signed_by_its_ca(
    policies, clock, fleet
) -> None:
    crl = crl_of(policies)
    ca = ca_of(policies)
    assert crl.is_signature_valid(ca.public_key())
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert crl.signature_hash_algorithm is not None
    assert crl.signature_hash_algorithm.name == "sha384"  # a P-384 CA signs with SHA-384
    assert crl.issuer == ca.subject and len(crl) == 0
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 0
    assert crl.last_update_utc <= clock.now
    assert crl.next_update_utc == clock.now + CRL_VALIDITY
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_the_crl_lists_the_revoked_certificates_under_a_rising_number(
    policies, keys, uow, clock, fleet
) -> None:
    policies.create(SVC, "other", key_type="ec-p256", actor=ACTOR)
    first, kept, second = (issue(policies, keys, uow, f"dev-{n}") for n in range(3))
    elsewhere = issue(policies, keys, uow, "dev-x", policy="other")
    clock.advance(minutes=1)
    policies.revoke(SVC, first.serial, actor=ACTOR)
    clock.advance(minutes=1)
    policies.revoke(SVC, second.serial, actor=ACTOR)
    policies.revoke(SVC, elsewhere.serial, actor=ACTOR)
    crl = crl_of(policies)
    listed = {entry.serial_number: entry.revocation_date_utc for entry in crl}
    assert listed == {
        int(first.serial, 16): clock.now - timedelta(minutes=1),
        int(second.serial, 16): clock.now,
    }
    assert crl.get_revoked_certificate_by_serial_number(int(kept.serial, 16)) is None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    other = crl_of(policies, "other")
    assert [entry.serial_number for entry in other] == [int(elsewhere.serial, 16)]
    assert other.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1


def test_a_policy_created_again_does_not_list_what_the_old_ca_issued(
    policies, keys, uow, fleet
) -> None:
    old = issue(policies, keys, uow, "dev-1")
    policies.revoke(SVC, old.serial, actor=ACTOR)
    policies.delete(SVC, "fleet", actor=ACTOR)
    policies.create(SVC, "fleet", key_type="ec-p256", actor=ACTOR)
    new = issue(policies, keys, uow, "dev-2")
    policies.revoke(SVC, new.serial, actor=ACTOR)
    assert [entry.serial_number for entry in crl_of(policies)] == [int(new.serial, 16)]


def test_the_crl_of_a_missing_policy_is_not_found(policies, fleet) -> None:
    with pytest.raises(CredentialPolicyNotFoundError):
        policies.crl(SVC, "nope")
    with pytest.raises(e.ServiceNotFoundError):
        policies.crl("nowhere", "fleet")


def test_a_policy_whose_key_file_is_gone_or_foreign_makes_no_crl(policies, keys, fleet) -> None:
    keys.save(SVC, "fleet", f.ec_key())
    with pytest.raises(e.InternalError, match="does not belong"):
        policies.crl(SVC, "fleet")
    keys.remove(SVC, "fleet")
    with pytest.raises(IssuingKeyMissingError):
        policies.crl(SVC, "fleet")
