"""Renewal: a device registers presenting the operational certificate devprov issued it, instead
of its onboarding credential (docs/operational-certificates.md#renewal).

The certificate is recognised by its SHA-256 among the certificates the service issued
(``uow.issued``), never by the CA that signed it: a credential policy's CA anchors only what
devprov issued under that policy and recorded, and only for the device it was issued to. A
certificate the policy's CA signed that devprov has no record of, or one presented for another
registration id, gets no further than any other unknown certificate. Attestation
(service.attestation) asks this module only when the presented leaf is such a record.

The device then attests as the enrollment of its registration, provided that enrollment still
exists, is enabled and still names the policy: disabling an enrollment or unlinking its policy
stops renewals at once, as revoking one certificate stops that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from devprov.core.credential_policy import CredentialPolicy, IssuedCertificate
from devprov.core.enrollment import Enrollment, EnrollmentKind
from devprov.core.error import DevprovError
from devprov.service.attestation_error import (
    EXPIRED,
    ID_MISMATCH,
    NO_ENROLLMENT,
    UNTRUSTED_CHAIN,
    DeviceAttestationError,
    OperationalCertificateRevokedError,
)
from devprov.service.device_issuance import ca_chain
from devprov.service.port import UnitOfWork
from devprov.service.trust import TrustView


@dataclass(frozen=True)
class Renewal:
    """A renewal attested: the enrollment the device registers under, and the policy's issuing
    CA, which signed the certificate it presented."""

    enrollment: Enrollment
    issuing_ca: x509.Certificate


def attest_renewal(
    uow: UnitOfWork,
    trust: TrustView,
    service: str,
    registration_id: str,
    chain: Sequence[x509.Certificate],
    issued: IssuedCertificate,
    *,
    now: datetime,
) -> Renewal:
    """Check a device presenting ``issued`` (``chain[0]``, the rest as it sent them): it was
    issued to this registration id, is not revoked, is valid at ``now`` and validates to its
    policy's issuing CA; the registration exists and its enrollment still exists, is enabled and
    names that policy. Raises DeviceAttestationError (OperationalCertificateRevokedError for a
    revoked certificate)."""
    what = f"operational certificate {issued.serial}"
    if issued.registration_id.lower() != registration_id.lower():
        raise DeviceAttestationError(
            f"{what} was issued to '{issued.registration_id}', not to '{registration_id}'",
            ID_MISMATCH,
        )
    if issued.revoked_at is not None:
        raise OperationalCertificateRevokedError(
            f"{what} of '{registration_id}' was revoked at {issued.revoked_at.isoformat()}; the "
            "device must register with its onboarding credential"
        )
    if not issued.not_before <= now <= issued.not_after:
        raise DeviceAttestationError(
            f"{what} of '{registration_id}' is valid from {issued.not_before.isoformat()} to "
            f"{issued.not_after.isoformat()}, not now; the device must register with its "
            "onboarding credential",
            EXPIRED,
        )
    policy = _policy(trust, issued.policy)
    if policy is None:
        raise DeviceAttestationError(
            f"{what} of '{registration_id}' was issued under credential policy "
            f"'{issued.policy}', which no longer exists",
            UNTRUSTED_CHAIN,
        )
    issuing_ca = ca_chain(policy.ca_chain_pem)[0]
    try:
        trust.validate(chain[0], chain[1:], [issuing_ca], at=now)
    except DevprovError as exc:
        raise DeviceAttestationError(
            f"{what} of '{registration_id}' does not validate to the CA of credential policy "
            f"'{policy.name}': {exc.message}"
        ) from exc
    enrollment = _enrollment(uow, service, registration_id, what)
    if enrollment.credential_policy is None or enrollment.credential_policy.lower() != policy.key:
        raise DeviceAttestationError(
            f"{what} of '{registration_id}': {_label(enrollment)} no longer names credential "
            f"policy '{policy.name}'",
            NO_ENROLLMENT,
        )
    return Renewal(enrollment, issuing_ca)


def _policy(trust: TrustView, name: str) -> CredentialPolicy | None:
    return next((p for p in trust.credential_policies() if p.key == name.lower()), None)


def _enrollment(uow: UnitOfWork, service: str, registration_id: str, what: str) -> Enrollment:
    """The enabled enrollment of the device's registration."""
    state = uow.registrations.get(service, registration_id)
    if state is None:
        raise DeviceAttestationError(
            f"{what}: '{registration_id}' has no registration to renew (it was deleted)",
            NO_ENROLLMENT,
        )
    enrollment = uow.enrollments.get(service, state.enrollment_kind, state.enrollment_id)
    if enrollment is None:
        kind = "enrollment" if state.enrollment_kind is EnrollmentKind.INDIVIDUAL else "group"
        raise DeviceAttestationError(
            f"{what} of '{registration_id}': its {kind} '{state.enrollment_id}' no longer exists",
            NO_ENROLLMENT,
        )
    if not enrollment.enabled:
        raise DeviceAttestationError(
            f"{what} of '{registration_id}': {_label(enrollment)} is disabled", NO_ENROLLMENT
        )
    return enrollment


def _label(enrollment: Enrollment) -> str:
    kind = "enrollment" if enrollment.kind is EnrollmentKind.INDIVIDUAL else "enrollment group"
    return f"{kind} '{enrollment.id}'"
