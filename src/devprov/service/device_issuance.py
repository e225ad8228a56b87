"""Operational certificates issued during a registration (docs/operational-certificates.md).

A register that carries a ``csr`` goes through three steps here, each at its place in the
registration (service.device):

1. :func:`prepare_issuance`, right after attestation and before anything is written: when the
   attested enrollment names a credential policy, the CSR is read and checked (core.csr) and the
   policy loaded; a refusal leaves no trace but the refusal log. When the enrollment names no
   policy the CSR is ignored (None), and the registration goes on without a certificate.
2. :meth:`CertificateIssuer.issue`, once the outcome is ``assigned`` and only then: the policy's
   issuing key is loaded and the certificate built, outside any database transaction.
3. :func:`store_issued`, in the same write transaction as the registration state and its
   operation: the registration's earlier certificates are marked superseded and the new one
   recorded under the operation's id, which is how a poll of that operation finds it again
   (:func:`issued_chain`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devprov.core.certificate import parse_certificates
from devprov.core.credential_policy import CredentialPolicy, IssuedCertificate
from devprov.core.csr import (
    IssuanceProfile,
    build_operational_certificate,
    certificate_chain_b64,
    parse_csr,
    verify_csr,
)
from devprov.core.enrollment import Enrollment, EnrollmentKind
from devprov.core.error import InternalError, InvalidInputError
from devprov.core.issuance import MAX_SERIAL_BITS, Issuer, PrivateKey
from devprov.service.port import IssuingKeyStore, RandomBytes, UnitOfWork

# Issuing keys a process keeps loaded; past this many it reads them again (a bound, not a tuning).
MAX_LOADED_KEYS = 256


class CredentialPolicyMissingError(InvalidInputError):
    """A device sent a CSR under an enrollment that names a credential policy the service does
    not have; create the policy or change the enrollment."""

    code = "CredentialPolicyMissing"
    number = 400681


class CertificateIssuanceError(InternalError):
    """A credential policy's CA cannot sign now: it is expired or not yet valid, or its key file
    does not belong to its certificate; the registration fails with this error."""

    code = "CertificateIssuanceFailed"
    number = 500680


@dataclass(frozen=True)
class IssuanceRequest:
    """A CSR checked against its registration id, and the policy whose CA will sign it."""

    csr: x509.CertificateSigningRequest
    policy: CredentialPolicy


@dataclass(frozen=True)
class Issued:
    """A certificate built for a registration: its record (stored with the registration, under
    the operation's id) and ``issuedCertificateChain``, base64 DER, leaf first."""

    record: IssuedCertificate
    chain: tuple[str, ...]

    @property
    def note(self) -> str:
        """The issuance in a few words, for the audit trail and the log."""
        record = self.record
        return (
            f"issued operational certificate {record.serial} under credential policy "
            f"'{record.policy}', valid until {record.not_after.isoformat()}"
        )


def prepare_issuance(
    policies: Sequence[CredentialPolicy],
    service: str,
    registration_id: str,
    enrollment: Enrollment,
    csr: str,
) -> IssuanceRequest | None:
    """The checked request of a register that sent ``csr``; None when ``enrollment`` names no
    credential policy: the CSR is then ignored
    (docs/operational-certificates.md#a-csr-to-an-enrollment-without-a-policy). ``policies``
    are the service's (service.trust keeps them per trust revision). Raises core.csr's errors
    for a CSR that breaks a rule, CredentialPolicyMissingError for a policy the service lacks."""
    if enrollment.credential_policy is None:
        return None
    request = parse_csr(csr)
    verify_csr(request, registration_id)
    wanted = enrollment.credential_policy.lower()
    policy = next((p for p in policies if p.key == wanted), None)
    if policy is None:
        raise CredentialPolicyMissingError(
            f"{ignored_label(enrollment)} names credential policy "
            f"'{enrollment.credential_policy}', which service '{service}' does not have"
        )
    return IssuanceRequest(request, policy)


def ignored_note(enrollment: Enrollment) -> str:
    """Why a register's CSR was ignored, for the audit trail and the log."""
    return f"its CSR was ignored: {ignored_label(enrollment)} names no credential policy"


def ignored_label(enrollment: Enrollment) -> str:
    kind = "enrollment" if enrollment.kind is EnrollmentKind.INDIVIDUAL else "enrollment group"
    return f"{kind} '{enrollment.id}'"


class NoIssuingKeys:
    """The key store of a DeviceRegistration built without one (tests, tools): it has no key,
    so a registration that asks for a certificate fails rather than goes without."""

    def save(self, service: str, policy: str, key: PrivateKey) -> None:
        raise CertificateIssuanceError("this server keeps no issuing keys")

    def load(self, service: str, policy: str) -> PrivateKey:
        raise CertificateIssuanceError(
            f"this server keeps no issuing keys; credential policy '{policy}' cannot issue"
        )

    def remove(self, service: str, policy: str) -> None:
        return None


class CertificateIssuer:
    """Signs operational certificates with the policies' issuing keys (one per process, built
    with the device use case)."""

    def __init__(self, keys: IssuingKeyStore, random_bytes: RandomBytes) -> None:
        self._keys = keys
        self._random = random_bytes
        # Keys read and checked against their CA, by (service, policy, CA chain): reading and
        # parsing the file cost ~0.8 ms per issuance (docs/performance.md). A policy made
        # again under the same name has another CA, so it never finds the old key here.
        self._loaded: dict[tuple[str, str, str], PrivateKey] = {}

    def issue(self, request: IssuanceRequest, registration_id: str, *, now: datetime) -> Issued:
        """Build the certificate of ``request`` for ``registration_id`` at ``now``. Raises the
        key store's IssuingKeyMissingError, or CertificateIssuanceError."""
        policy = request.policy
        cas = ca_chain(policy.ca_chain_pem)
        key = self._key(policy, cas[0])
        profile = IssuanceProfile(
            policy.validity_days,
            policy.organization,
            policy.organizational_unit,
            policy.server_auth,
        )
        try:
            certificate = build_operational_certificate(
                request.csr,
                registration_id,
                Issuer(cas[0], key),
                profile,
                serial=self._serial(),
                now=now,
            )
        except ValueError as exc:  # the CA is not valid now (the CSR was checked already)
            raise CertificateIssuanceError(
                f"credential policy '{policy.name}' cannot issue: {exc}"
            ) from exc
        der = certificate.public_bytes(Encoding.DER)
        record = IssuedCertificate(
            service=policy.service,
            serial=f"{certificate.serial_number:X}",
            sha256=hashlib.sha256(der).hexdigest(),
            registration_id=registration_id,
            policy=policy.name,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            issued_at=now,
            certificate_der=der,
        )
        return Issued(record, tuple(certificate_chain_b64([certificate, *cas])))

    def _key(self, policy: CredentialPolicy, ca: x509.Certificate) -> PrivateKey:
        slot = (policy.service, policy.key, policy.ca_chain_pem)
        key = self._loaded.get(slot)
        if key is None:
            key = self._keys.load(policy.service, policy.name)
            spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            if key.public_key().public_bytes(*spki) != ca.public_key().public_bytes(*spki):
                raise CertificateIssuanceError(
                    f"the issuing key of credential policy '{policy.name}' does not belong to "
                    "its CA certificate"
                )
            if len(self._loaded) >= MAX_LOADED_KEYS:
                self._loaded.clear()
            self._loaded[slot] = key
        return key

    def _serial(self) -> int:
        """A random positive serial of at most 159 bits (RFC 5280 4.1.2.2; CA/B 7.1 asks for
        at least 64 random bits)."""
        while True:
            serial = int.from_bytes(self._random(20), "big") >> (160 - MAX_SERIAL_BITS)
            if serial > 0:
                return serial


def store_issued(uow: UnitOfWork, issued: Issued, *, operation_id: str, at: datetime) -> None:
    """Record ``issued`` under ``operation_id``, the registration's earlier certificates
    superseded at ``at``; in the unit of work that writes the registration."""
    record = issued.record
    uow.issued.supersede(record.service, record.registration_id, at=at)
    uow.issued.add(replace(record, operation_id=operation_id))


def issued_chain(uow: UnitOfWork, service: str, operation_id: str) -> tuple[str, ...]:
    """``issuedCertificateChain`` of the certificate an operation issued (empty when none): the
    leaf, then its policy's CA chain while the policy still has the CA that signed it."""
    record = uow.issued.for_operation(service, operation_id)
    if record is None:
        return ()
    leaf = x509.load_der_x509_certificate(record.certificate_der)
    policy = uow.credential_policies.get(service, record.policy)
    cas = ca_chain(policy.ca_chain_pem) if policy is not None else ()
    if cas and cas[0].subject != leaf.issuer:
        cas = ()
    return tuple(certificate_chain_b64([leaf, *cas]))


@functools.lru_cache(maxsize=64)
def ca_chain(pem: str) -> tuple[x509.Certificate, ...]:
    """A policy's CA chain, issuing CA first (parsed once per distinct chain)."""
    return tuple(parse_certificates(pem))
