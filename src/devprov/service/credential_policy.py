"""Credential policies' use cases: create one with a CA devprov generates or import the
operator's CA, list, show and delete them; list the operational certificates issued under them,
revoke one, and publish each policy's certificate revocation list
(docs/operational-certificates.md).

A policy's issuing key is a secret file (service.port.IssuingKeyStore), saved before the
policy's row is committed and removed again when the commit fails, so that a stored policy
always has its key; deleting a policy removes its key after the row is gone. Every change is
audited; a revocation raises the policy's CRL number in the same unit of work, so the next CRL
says it.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass, replace

from devprov.core.credential_policy import (
    DEFAULT_VALIDITY_DAYS,
    CaOrigin,
    CredentialPolicy,
    InvalidCredentialPolicyError,
    IssuedCertificate,
    validate_policy_name,
    validate_validity_days,
)
from devprov.core.error import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceNotFoundError,
)
from devprov.core.etag import ETAG_BYTES, build_etag
from devprov.service.issuing_ca import (
    DEFAULT_KEY_TYPE,
    IssuingCa,
    check_imported_ca,
    generate_ca,
    parse_key_type,
)
from devprov.service.model import AuditEvent, Outcome
from devprov.service.pki.ca import KeyType, describe_key_type
from devprov.service.port import (
    Clock,
    IssuingKeyStore,
    RandomBytes,
    UnitOfWork,
    UnitOfWorkFactory,
)
from devprov.service.retry import retrying
from devprov.service.revocation import build_policy_crl, parse_serial

log = logging.getLogger("devprov.credential_policy")

# Where the server publishes a policy's CRL (DER, application/pkix-crl) and its CA chain (PEM),
# without authentication: relying parties fetch them (docs/operational-certificates.md).
CRL_PATH = "/credential-policies/{service}/{policy}/crl"
CA_PATH = "/credential-policies/{service}/{policy}/ca.pem"

# Issued certificates per page of ``issued``: the CLI's listing pages by 100, and a client may ask
# for up to 1,000 at once.
DEFAULT_ISSUED_PAGE = 100
MAX_ISSUED_PAGE = 1000

# RFC 5280 Appendix A.1: ub-organization-name and ub-organizational-unit-name are 64.
MAX_SUBJECT_ATTRIBUTE_LENGTH = 64


class CredentialPolicyNotFoundError(NotFoundError):
    """The provisioning service has no credential policy by that name."""

    code = "CredentialPolicyNotFound"
    number = 404621


class IssuedCertificateNotFoundError(NotFoundError):
    """No operational certificate with that serial was issued in the provisioning service."""

    code = "IssuedCertificateNotFound"
    number = 404622


class CredentialPolicyInUseError(ConflictError):
    """Enrollments name the credential policy; delete it with --force, or change them first."""

    code = "CredentialPolicyInUse"
    number = 409621


class CertificateAlreadyRevokedError(ConflictError):
    """The operational certificate was revoked already."""

    code = "CertificateAlreadyRevoked"
    number = 409622


@dataclass(frozen=True)
class PolicyUse:
    """A policy and how many enrollments and enrollment groups name it."""

    policy: CredentialPolicy
    enrollments: int


@dataclass(frozen=True)
class PolicyProfile:
    """What a policy says of the certificates it issues (core.csr.IssuanceProfile)."""

    validity_days: int = DEFAULT_VALIDITY_DAYS
    organization: str | None = None
    organizational_unit: str | None = None
    server_auth: bool = False


def validate_profile(profile: PolicyProfile) -> PolicyProfile:
    validate_validity_days(profile.validity_days)
    for label, value in (
        ("organization", profile.organization),
        ("organizational unit", profile.organizational_unit),
    ):
        if value is not None and not (
            1 <= len(value) <= MAX_SUBJECT_ATTRIBUTE_LENGTH and value.isprintable()
        ):
            raise InvalidCredentialPolicyError(
                f"the {label} of issued certificates must be 1 to "
                f"{MAX_SUBJECT_ATTRIBUTE_LENGTH} printable characters (RFC 5280 Appendix A.1); "
                f"got {value!r}"
            )
    return profile


class CredentialPolicies:
    """The credential policies of provisioning services, and what was issued under them."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        keys: IssuingKeyStore,
        clock: Clock,
        random_bytes: RandomBytes,
    ) -> None:
        self._uow = uow
        self._keys = keys
        self._clock = clock
        self._random = random_bytes

    # --- policies -------------------------------------------------------------------------

    def create(
        self,
        service: str,
        name: str,
        *,
        key_type: str | KeyType = DEFAULT_KEY_TYPE,
        validity_days: int = DEFAULT_VALIDITY_DAYS,
        organization: str | None = None,
        organizational_unit: str | None = None,
        server_auth: bool = False,
        actor: str,
    ) -> CredentialPolicy:
        """A policy whose issuing CA devprov generates: a new key of ``key_type`` and a
        self-signed CA certificate valid for ten years (service.issuing_ca)."""
        validate_policy_name(name, field="name")
        kind = parse_key_type(key_type)
        profile = validate_profile(
            PolicyProfile(validity_days, organization, organizational_unit, server_auth)
        )
        self._require_free(service, name)  # before a key that may take seconds to make
        ca = generate_ca(service, name, kind, self._random, now=self._clock())
        policy = self._new_policy(service, name, ca, CaOrigin.GENERATED, profile)
        detail = f"generated {kind.value} CA '{ca.chain[0].subject.rfc4514_string()}'"
        return self._add(policy, ca, action="credentialPolicy.create", detail=detail, actor=actor)

    def import_ca(
        self,
        service: str,
        name: str,
        *,
        chain_pem: bytes,
        key_pem: bytes,
        passphrase: bytes | None,
        validity_days: int = DEFAULT_VALIDITY_DAYS,
        organization: str | None = None,
        organizational_unit: str | None = None,
        server_auth: bool = False,
        actor: str,
    ) -> CredentialPolicy:
        """A policy whose issuing CA is the operator's: ``chain_pem`` is that CA's certificate
        first, then any above it (kept in order); ``key_pem`` its private key, encrypted with
        ``passphrase`` or not encrypted. Raises service.issuing_ca's errors for what is wrong."""
        validate_policy_name(name, field="name")
        profile = validate_profile(
            PolicyProfile(validity_days, organization, organizational_unit, server_auth)
        )
        self._require_free(service, name)
        ca = check_imported_ca(chain_pem, key_pem, passphrase, now=self._clock())
        policy = self._new_policy(service, name, ca, CaOrigin.IMPORTED, profile)
        detail = (
            f"imported {describe_key_type(ca.key)} CA "
            f"'{ca.chain[0].subject.rfc4514_string()}' with {len(ca.chain) - 1} above it"
        )
        return self._add(policy, ca, action="credentialPolicy.import", detail=detail, actor=actor)

    def list(self, service: str) -> builtins.list[CredentialPolicy]:
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            return uow.credential_policies.all(service)

    def show(self, service: str, name: str) -> CredentialPolicy:
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            return _policy(uow, service, name)

    def list_with_use(self, service: str) -> builtins.list[PolicyUse]:
        """The service's policies, each with the number of enrollments naming it, read in one
        transaction."""
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            return [
                PolicyUse(p, uow.credential_policies.enrollments_naming(service, p.name))
                for p in uow.credential_policies.all(service)
            ]

    def enrollments_naming(self, service: str, name: str) -> int:
        """How many enrollments and enrollment groups name the policy."""
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            found = _policy(uow, service, name)
            return uow.credential_policies.enrollments_naming(service, found.name)

    @retrying
    def delete(self, service: str, name: str, *, force: bool = False, actor: str) -> None:
        """Delete a policy and its key; its issued certificates stay on record. Refused while
        enrollments name it, unless ``force``: their devices' CSRs are then refused until the
        policy is created again or the enrollments changed."""
        with self._uow() as uow:
            # Locked: an enrollment naming the policy is written under the same lock
            # (service.enrollment), so none slips in between the count and the delete.
            _require_service(uow, service, lock=True)
            found = _policy(uow, service, name)
            naming = uow.credential_policies.enrollments_naming(service, found.name)
            if naming and not force:
                raise CredentialPolicyInUseError(
                    f"credential policy '{found.name}' is named by {naming} "
                    f"enrollment{'s' if naming != 1 else ''} of service '{service}'; change "
                    "them first, or use --force to delete it anyway (their devices' CSRs are "
                    "then refused)"
                )
            uow.credential_policies.remove(service, found.name)
            detail = f"policy '{found.name}'"
            if naming:
                detail += f", named by {naming} enrollment{'s' if naming != 1 else ''} (forced)"
            self._audit(uow, service, "credentialPolicy.delete", actor, detail)
            uow.commit()
        # After the commit: a failed commit must leave the policy its key.
        self._keys.remove(service, found.name)
        log.info("credential policy '%s' of service '%s' deleted by %s", found.name, service, actor)

    # --- issued certificates --------------------------------------------------------------

    def issued(
        self,
        service: str,
        *,
        policy: str | None = None,
        registration_id: str | None = None,
        after: str | None = None,
        limit: int = DEFAULT_ISSUED_PAGE,
    ) -> builtins.list[IssuedCertificate]:
        """Issued certificates by issue time, optionally of one policy (deleted ones too) or one
        registration, those after the serial ``after``."""
        if not 1 <= limit <= MAX_ISSUED_PAGE:
            raise InvalidInputError(f"a page holds 1 to {MAX_ISSUED_PAGE} certificates")
        position = None if after is None else parse_serial(after)
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            return uow.issued.page(
                service,
                policy=policy,
                registration_id=registration_id,
                after=position,
                limit=limit,
            )

    def issued_certificate(self, service: str, serial: str) -> IssuedCertificate:
        """One issued certificate by its serial (in any form parse_serial reads)."""
        key = parse_serial(serial)
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            return _issued(uow, service, key)

    @retrying
    def revoke(self, service: str, serial: str, *, actor: str) -> IssuedCertificate:
        """Revoke an issued certificate now; its policy's CRL number rises with it (when the
        policy still exists), so the next CRL lists it under a new number."""
        key = parse_serial(serial)
        with self._uow() as uow:
            _require_service(uow, service)
            found = _issued(uow, service, key)
            if found.revoked_at is not None:
                raise CertificateAlreadyRevokedError(
                    f"certificate {key} of '{found.registration_id}' was revoked at "
                    f"{found.revoked_at.isoformat()} already"
                )
            now = self._clock()
            if not uow.issued.revoke(service, key, at=now):  # revoked since it was read
                raise CertificateAlreadyRevokedError(f"certificate {key} was revoked already")
            if uow.credential_policies.get(service, found.policy) is not None:
                uow.credential_policies.next_crl_number(service, found.policy)
            self._audit(
                uow,
                service,
                "issuedCertificate.revoke",
                actor,
                f"serial {key} of credential policy '{found.policy}'",
                registration_id=found.registration_id,
            )
            uow.commit()
        log.info("certificate %s of service '%s' revoked by %s", key, service, actor)
        return replace(found, revoked_at=now)

    def crl(self, service: str, policy: str) -> bytes:
        """The policy's CRL, DER (service.revocation.build_policy_crl), valid from now for
        CRL_VALIDITY."""
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            found = _policy(uow, service, policy)
            revoked = uow.issued.revoked(service, found.name)
        key = self._keys.load(service, found.name)
        return build_policy_crl(found, key, revoked, now=self._clock())

    # --- helpers --------------------------------------------------------------------------

    def _new_policy(
        self, service: str, name: str, ca: IssuingCa, origin: CaOrigin, profile: PolicyProfile
    ) -> CredentialPolicy:
        return CredentialPolicy(
            service=service,
            name=name,
            ca_chain_pem=ca.chain_pem,
            origin=origin,
            validity_days=profile.validity_days,
            organization=profile.organization,
            organizational_unit=profile.organizational_unit,
            server_auth=profile.server_auth,
            crl_number=0,
            created_at=self._clock(),
            etag=build_etag(self._random(ETAG_BYTES)),
        )

    def _require_free(self, service: str, name: str) -> None:
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            _require_free(uow, service, name)

    @retrying
    def _add(
        self, policy: CredentialPolicy, ca: IssuingCa, *, action: str, detail: str, actor: str
    ) -> CredentialPolicy:
        """Store ``policy`` with its key: the key file first, the row committed after it, the
        file removed again when anything before the commit's end fails."""
        service, name = policy.service, policy.name
        with self._uow() as uow:
            # Locked: two instances creating one name at once must not both write its key file;
            # the second finds the first's row and leaves the file alone.
            _require_service(uow, service, lock=True)
            _require_free(uow, service, name)
            self._keys.save(service, name, ca.key)
            try:
                uow.credential_policies.add(policy)
                self._audit(uow, service, action, actor, f"policy '{name}': {detail}")
                uow.commit()
            except BaseException:
                self._keys.remove(service, name)
                raise
        log.info("credential policy '%s' of service '%s': %s by %s", name, service, detail, actor)
        return policy

    def _audit(
        self,
        uow: UnitOfWork,
        service: str,
        action: str,
        actor: str,
        detail: str,
        *,
        registration_id: str | None = None,
    ) -> None:
        # The policy goes in the reason column: the audit log has no column of its own for it.
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=service,
                action=action,
                outcome=Outcome.SUCCEEDED,
                actor=actor,
                reason=detail,
                registration_id=registration_id,
            )
        )


def _require_free(uow: UnitOfWork, service: str, name: str) -> None:
    found = uow.credential_policies.get(service, name)
    if found is not None:
        raise AlreadyExistsError(
            f"credential policy '{found.name}' exists in service '{service}' already (names "
            "compare ignoring case); choose another name or delete it first"
        )


def _policy(uow: UnitOfWork, service: str, name: str) -> CredentialPolicy:
    found = uow.credential_policies.get(service, name)
    if found is None:
        raise CredentialPolicyNotFoundError(
            f"credential policy '{name}' does not exist in service '{service}'"
        )
    return found


def _issued(uow: UnitOfWork, service: str, serial: str) -> IssuedCertificate:
    found = uow.issued.get(service, serial)
    if found is None:
        raise IssuedCertificateNotFoundError(
            f"no operational certificate with serial {serial} was issued in service '{service}'"
        )
    return found


def _require_service(uow: UnitOfWork, service: str, *, lock: bool = False) -> None:
    found = uow.services.lock(service) if lock else uow.services.get(service)
    if found is None:
        raise ServiceNotFoundError(f"provisioning service '{service}' does not exist")
