"""Device attestation: which enrollment governs a registering device, and is it who it says?

X.509 (DPS's order of operations, docs/attestation.md#which-enrollment-applies): the
registration id must be the leaf's CN; an individual enrollment for the device wins; otherwise
the group of the nearest certificate above the device that has one, walking its chain up to the
root, and that first match decides. Where trust is anchored is a separate question: the group's
certificate must be verified (in the registry, uploaded with isVerified or proven by
proof-of-possession) or roll up, within the chain the device presents, to a verified one
(docs/attestation.md#how-devprov-applies-these-rules). A self-signed device certificate of an
individual enrollment is its own anchor.

Renewal (docs/operational-certificates.md#renewal): a leaf that is an operational certificate
devprov issued is checked by service.renewal instead, and attests as its registration's
enrollment.

Symmetric key (docs/dps-wire.md#device-sas-tokens): the SAS token is checked against the individual
enrollment's keys, or else against the keys derived from each symmetric-key group's keys; the first
group whose derived key verifies the signature governs the device.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from devprov.core.certificate import common_name, describe_certificate, parse_der_certificate
from devprov.core.chain import issuer_path, validate_device_chain
from devprov.core.enrollment import AttestationType, Enrollment, EnrollmentKind
from devprov.core.error import (
    DevprovError,
    InvalidInputError,
    SasTokenExpiredError,
)
from devprov.core.registration import AttestationMethod, CertificateSummary, summarize_certificate
from devprov.core.registration_id import validate_registration_id
from devprov.core.sas import (
    derive_device_key,
    parse_sas_token,
    resource_matches_device,
    verify_sas_token,
    verify_sas_token_against,
)
from devprov.service.attestation_error import (
    BAD_SIGNATURE,
    EXPIRED,
    ID_MISMATCH,
    MALFORMED_CREDENTIALS,
    NO_CREDENTIALS,
    NO_ENROLLMENT,
    UNKNOWN_CERTIFICATE,
    WRONG_ATTESTATION,
    DeviceAttestationError,
    DeviceSasError,
)
from devprov.service.model import CertificateRecord, Operation, ProvisioningService
from devprov.service.port import UnitOfWork
from devprov.service.renewal import attest_renewal
from devprov.service.trust import TrustView, uncached_view


def _token_reason(exc: DevprovError) -> str:
    return EXPIRED if isinstance(exc, SasTokenExpiredError) else BAD_SIGNATURE


@dataclass(frozen=True)
class Credentials:
    """What the transport saw: the TLS client chain (leaf first) and the Authorization header."""

    chain_der: tuple[bytes, ...] = ()
    authorization: str | None = None


@dataclass(frozen=True)
class Attested:
    enrollment: Enrollment
    method: AttestationMethod
    certificate: CertificateSummary | None = None
    signing_certificate: CertificateSummary | None = None
    leaf_sha256: str | None = None


def summarize(certificate: x509.Certificate) -> CertificateSummary:
    return summarize_certificate(describe_certificate(certificate))


# A CA certificate's summary, made once: the same few CAs sign every device (pure, so kept
# by the certificate itself, whatever the service).
_ca_summary = functools.lru_cache(maxsize=256)(summarize)


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest().upper()


def attest(
    uow: UnitOfWork,
    service: str,
    id_scope: str,
    registration_id: str,
    credentials: Credentials,
    *,
    now: datetime,
    trust: TrustView | None = None,
) -> Attested:
    """Find the governing enrollment and check the device's credentials against it. ``trust``
    is how the service's registry, groups and validations are read (service.trust); without
    it, from ``uow`` alone."""
    trust = trust or uncached_view(uow, service)
    if credentials.authorization:
        return _attest_symmetric(
            uow, trust, service, id_scope, registration_id, credentials.authorization, now=now
        )
    if credentials.chain_der:
        return _attest_x509(uow, trust, service, registration_id, credentials.chain_der, now=now)
    raise DeviceSasError(
        "the device sent neither a client certificate nor a SAS token", NO_CREDENTIALS
    )


def _parse_chain(chain_der: Sequence[bytes]) -> list[x509.Certificate]:
    chain: list[x509.Certificate] = []
    for index, der in enumerate(chain_der):
        try:
            chain.append(parse_der_certificate(der))
        except InvalidInputError as exc:
            which = "the device's own certificate" if index == 0 else f"certificate {index + 1}"
            raise DeviceAttestationError(
                f"the presented certificate chain does not parse: {which} of the "
                f"{len(chain_der)} the device sent: {exc.message}",
                MALFORMED_CREDENTIALS,
            ) from exc
    return chain


def _attest_x509(
    uow: UnitOfWork,
    trust: TrustView,
    service: str,
    registration_id: str,
    chain_der: Sequence[bytes],
    *,
    now: datetime,
) -> Attested:
    chain = _parse_chain(chain_der)
    leaf = chain[0]
    cn = common_name(leaf)
    if cn is None or cn.lower() != registration_id.lower():
        found = "it has no CN" if cn is None else f"its CN is '{cn}'"
        raise DeviceAttestationError(
            f"registration id '{registration_id}' is not the certificate's CN ({found}); "
            "DPS requires them equal (docs/attestation.md#registration-id-and-the-certificate-cn)",
            ID_MISMATCH,
        )
    try:
        validate_registration_id(registration_id, x509=True)
    except DevprovError as exc:
        raise DeviceAttestationError(exc.message, ID_MISMATCH) from exc
    leaf_sha = sha256_hex(chain_der[0])
    # An operational certificate devprov issued renews under its own rules (service.renewal),
    # before the enrollments are asked: it is in no enrollment and chains to no registry CA.
    # Only a service with credential policies can have issued one.
    issued = uow.issued.by_sha256(service, leaf_sha) if trust.credential_policies() else None
    if issued is not None:
        renewal = attest_renewal(uow, trust, service, registration_id, chain, issued, now=now)
        enrollment = renewal.enrollment
        if enrollment.attestation.type is AttestationType.SYMMETRIC_KEY:
            # The registration keeps its enrollment's attestation, and so the device's identity
            # in its hub keeps its keys; the leaf's thumbprint recognises the device's polls.
            return Attested(enrollment, AttestationMethod.SYMMETRIC_KEY, leaf_sha256=leaf_sha)
        return Attested(
            enrollment,
            AttestationMethod.X509,
            summarize(leaf),
            _ca_summary(renewal.issuing_ca),
            leaf_sha,
        )
    individual = uow.enrollments.get(service, EnrollmentKind.INDIVIDUAL, registration_id)
    registry = trust.registry()
    if individual is not None:
        anchors = [r.certificate for r in registry if r.is_verified]
        return _attest_individual_x509(
            individual, chain, chain_der, leaf_sha, anchors, trust, now=now
        )
    return _attest_group_x509(trust, service, chain, leaf_sha, registry, now=now)


@dataclass(frozen=True)
class _DevicePath:
    """The certificates above a device's own, nearest first, with what the registry knows."""

    certificates: tuple[x509.Certificate, ...]
    shas: tuple[str, ...]  # SHA-256 thumbprints, upper-case hex
    verified: Mapping[str, CertificateRecord]  # the registry's verified certificates, by SHA-256
    # What validation may build a chain from: what the device sent, and the path's certificates
    # from the first verified one up. A device must send every certificate between its own and a
    # verified one (docs/attestation.md#the-device-presents-its-chain); the registry completes the
    # chain above that.
    usable: tuple[x509.Certificate, ...]

    def anchors_from(self, index: int) -> list[x509.Certificate]:
        """The verified certificates at ``index`` or above it."""
        return [
            c
            for c, sha in zip(self.certificates[index:], self.shas[index:], strict=True)
            if sha in self.verified
        ]


def _device_path(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    registry: Sequence[CertificateRecord],
) -> _DevicePath:
    certificates = issuer_path(leaf, presented, [r.certificate for r in registry])
    shas = tuple(sha256_hex(c.public_bytes(Encoding.DER)) for c in certificates)
    verified = {r.facts.sha256_thumbprint: r for r in registry if r.is_verified}
    first = next((i for i, sha in enumerate(shas) if sha in verified), len(shas))
    completion = [c for c in certificates[first:] if c not in presented]
    return _DevicePath(certificates, shas, verified, (*presented, *completion))


def _attest_group_x509(
    trust: TrustView,
    service: str,
    chain: list[x509.Certificate],
    leaf_sha: str,
    registry: Sequence[CertificateRecord],
    *,
    now: datetime,
) -> Attested:
    """Two separate questions, as DPS keeps them. Which group: the group of the nearest
    certificate above the device that has one, walking its chain up to the root. Is it trusted:
    that group's certificate is verified, or the device's chain validates through it up to a
    verified certificate above it. Verifying another certificate of the chain therefore never
    hides a group further up, nor changes which group governs a device."""
    leaf = chain[0]
    path = _device_path(leaf, chain[1:], registry)
    groups: dict[str, list[Enrollment]] = {}
    for sha, group in trust.groups_by_certificate(path.shas):
        groups.setdefault(sha, []).append(group)
    nearest = next((i for i, sha in enumerate(path.shas) if sha in groups), None)
    if nearest is None:
        raise DeviceAttestationError(_no_group_reason(service, leaf, path, now), NO_ENROLLMENT)
    group = sorted(groups[path.shas[nearest]], key=lambda g: g.key)[0]  # one CA, two groups
    group_ca = path.certificates[nearest]
    ca = _describe_ca(group_ca, path.shas[nearest], registry)
    anchors = path.anchors_from(nearest)
    if not anchors:
        raise DeviceAttestationError(_unverified_reason(group, ca, path, nearest))
    try:
        validated = trust.validate(leaf, path.usable, anchors, at=now)
    except DevprovError as exc:
        raise DeviceAttestationError(
            f"enrollment group '{group.id}': the chain does not validate through {ca} up to a "
            f"verified certificate: {exc.message}"
        ) from exc
    if group_ca not in validated.chain:
        # Only a cross-certified CA (same name and key, another certificate) gets here.
        raise DeviceAttestationError(
            f"enrollment group '{group.id}': the chain validated to "
            f"'{describe_certificate(validated.anchor).subject}' without passing through {ca}"
        )
    return Attested(group, AttestationMethod.X509, summarize(leaf), _ca_summary(group_ca), leaf_sha)


def _describe_ca(
    certificate: x509.Certificate, sha: str, registry: Sequence[CertificateRecord]
) -> str:
    """CA 'name' for a registry certificate; its subject for one the registry does not hold."""
    named = next((r.name for r in registry if r.facts.sha256_thumbprint == sha), None)
    if named is not None:
        return f"CA '{named}'"
    return f"CA '{describe_certificate(certificate).subject}' (not in the certificate registry)"


def _unverified_reason(group: Enrollment, ca: str, path: _DevicePath, index: int) -> str:
    reason = f"enrollment group '{group.id}': {ca} is not verified"
    below = [path.verified[sha].name for sha in path.shas[:index] if sha in path.verified]
    if below:
        reason += (
            f" (verified '{below[0]}' below it anchors the chain, but a group's own CA must be "
            "verified itself or roll up to a verified certificate above it)"
        )
    return f"{reason}; prove possession of it (devprov certificate prove) or upload it --verified"


def _no_group_reason(service: str, leaf: x509.Certificate, path: _DevicePath, now: datetime) -> str:
    """Why no group governs the device: its chain does not reach a verified certificate (the
    validator's precise reason), or it does and no group names a certificate of it."""
    if not path.verified:
        return (
            f"service '{service}' has no verified CA certificate and no enrollment for the device"
        )
    anchors = [r.certificate for r in path.verified.values()]
    try:
        validate_device_chain(leaf, path.usable, anchors, at=now)
    except DevprovError as exc:
        return f"the chain does not validate to a verified certificate: {exc.message}"
    names = " <- ".join(describe_certificate(c).subject for c in (leaf, *path.certificates))
    return f"no enrollment group trusts a certificate of the device's chain ({names})"


def _attest_individual_x509(
    enrollment: Enrollment,
    chain: list[x509.Certificate],
    chain_der: Sequence[bytes],
    leaf_sha: str,
    verified: Sequence[x509.Certificate],
    trust: TrustView,
    *,
    now: datetime,
) -> Attested:
    if enrollment.attestation.type is not AttestationType.X509:
        raise DeviceAttestationError(
            f"individual enrollment '{enrollment.id}' uses {enrollment.attestation.type.value} attestation, "
            "but the device presented a certificate",
            WRONG_ATTESTATION,
        )
    enrolled = [c.der for c in enrollment.attestation.certificates]
    if chain_der[0] not in enrolled:
        raise DeviceAttestationError(
            f"the device's certificate (SHA-256 {leaf_sha}) is not one of individual enrollment "
            f"'{enrollment.id}''s client certificates",
            UNKNOWN_CERTIFICATE,
        )
    leaf = chain[0]
    anchors = [leaf] if leaf.issuer == leaf.subject else list(verified)
    try:
        trust.validate(leaf, chain[1:], anchors, at=now)
    except DevprovError as exc:
        raise DeviceAttestationError(
            f"individual enrollment '{enrollment.id}': the certificate does not validate: {exc.message}"
        ) from exc
    return Attested(enrollment, AttestationMethod.X509, summarize(leaf), None, leaf_sha)


def _attest_symmetric(
    uow: UnitOfWork,
    trust: TrustView,
    service: str,
    id_scope: str,
    registration_id: str,
    header: str,
    *,
    now: datetime,
) -> Attested:
    try:
        validate_registration_id(registration_id)
        token = parse_sas_token(header)
    except DevprovError as exc:
        raise DeviceSasError(exc.message, MALFORMED_CREDENTIALS) from exc
    if not resource_matches_device(token.resource, id_scope, registration_id):
        raise DeviceSasError(
            f"the token's resource '{token.resource}' is not '{id_scope}/registrations/{registration_id}'",
            ID_MISMATCH,
        )
    individual = uow.enrollments.get(service, EnrollmentKind.INDIVIDUAL, registration_id)
    if individual is not None:
        if individual.attestation.type is not AttestationType.SYMMETRIC_KEY:
            raise DeviceSasError(
                f"individual enrollment '{individual.id}' uses {individual.attestation.type.value} attestation",
                WRONG_ATTESTATION,
            )
        try:
            verify_sas_token(token, individual.attestation.keys, now=now)
        except DevprovError as exc:
            raise DeviceSasError(
                f"individual enrollment '{individual.id}': {exc.message}", _token_reason(exc)
            ) from exc
        return Attested(individual, AttestationMethod.SYMMETRIC_KEY)
    groups = [g for g in trust.symmetric_key_groups() if g.attestation.keys]
    if not groups:
        raise DeviceSasError(
            f"no enrollment's key verifies the token of '{registration_id}': "
            "the service has no symmetric-key enrollment group",
            NO_ENROLLMENT,
        )
    # Which group signed is settled before the expiry is judged (core.sas), so an expired token
    # is reported as expired whichever group's key signed it.
    key_sets = [
        [derive_device_key(key, registration_id) for key in g.attestation.keys] for g in groups
    ]
    try:
        signer = verify_sas_token_against(token, key_sets, now=now)
    except SasTokenExpiredError as exc:
        raise DeviceSasError(
            f"an enrollment group's key signed the token of '{registration_id}', but {exc.message}",
            EXPIRED,
        ) from exc
    except DevprovError as exc:
        raise DeviceSasError(
            f"no enrollment's key verifies the token of '{registration_id}': {exc.message}"
        ) from exc
    return Attested(groups[signer], AttestationMethod.SYMMETRIC_KEY)


def confirm_caller(
    uow: UnitOfWork,
    service: ProvisioningService,
    registration_id: str,
    operation: Operation,
    credentials: Credentials,
    *,
    now: datetime,
) -> None:
    """Is a poll of ``operation`` made by the device that registered it?

    The registration was attested seconds ago and its outcome is decided, so the poll proves
    identity, not eligibility again: an X.509 device must present the same certificate (its TLS
    handshake proved the key), a symmetric-key device a valid token of the same enrollment.
    """
    if credentials.authorization:
        _confirm_token(uow, service, registration_id, operation, credentials.authorization, now=now)
        return
    if not credentials.chain_der:
        raise DeviceSasError(
            "the device sent neither a client certificate nor a SAS token", NO_CREDENTIALS
        )
    if (
        operation.leaf_sha256 is None
        or sha256_hex(credentials.chain_der[0]) != operation.leaf_sha256
    ):
        raise DeviceAttestationError(
            f"the certificate polling operation '{operation.id}' is not the one that registered it",
            UNKNOWN_CERTIFICATE,
        )


def _confirm_token(
    uow: UnitOfWork,
    service: ProvisioningService,
    registration_id: str,
    operation: Operation,
    header: str,
    *,
    now: datetime,
) -> None:
    enrollment = None
    if operation.enrollment_kind and operation.enrollment_id:
        kind = EnrollmentKind(operation.enrollment_kind)
        enrollment = uow.enrollments.get(service.name, kind, operation.enrollment_id)
    if enrollment is None or enrollment.attestation.type is not AttestationType.SYMMETRIC_KEY:
        raise DeviceSasError(
            f"the enrollment that registered '{registration_id}' is gone or changed", NO_ENROLLMENT
        )
    try:
        token = parse_sas_token(header)
        keys = enrollment.attestation.keys
        if enrollment.kind is EnrollmentKind.GROUP:
            keys = tuple(derive_device_key(key, registration_id) for key in keys)
        verify_sas_token(token, keys, now=now)
    except DevprovError as exc:
        raise DeviceSasError(exc.message, _token_reason(exc)) from exc
    if not resource_matches_device(token.resource, service.id_scope, registration_id):
        raise DeviceSasError(
            f"the token's resource '{token.resource}' is not this device's", ID_MISMATCH
        )
