"""The certificate registry use cases: upload, read, delete, issue a verification code, verify.

Each call runs in one unit of work, run again when the database rolls it back for a concurrent
writer (service.retry). A refused proof-of-possession changes nothing but the audit
log, which records every state change and every failed verification with its reason. Each
change also gets one INFO line in the server log; refusals are logged by the adapter that
answers them (``http.request.log_refusal``), once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from devprov.core.certificate import (
    parse_single_certificate,
    to_der,
    validate_ca_certificate,
    validate_certificate_name,
)
from devprov.core.enrollment import Enrollment
from devprov.core.error import (
    AlreadyExistsError,
    CertificateLimitError,
    CertificateNotFoundError,
    DevprovError,
    EtagMismatchError,
    ServiceNotFoundError,
)
from devprov.core.etag import RESOURCE_ETAG_BYTES, build_resource_etag, is_etag_match
from devprov.core.possession import (
    VERIFICATION_CODE_BYTES,
    VerificationCodes,
    consume_code,
    issue_code,
    verify_possession,
)
from devprov.service.model import (
    AuditEvent,
    CertificateRecord,
    Outcome,
    ProvisioningService,
    VerificationMethod,
)
from devprov.service.port import (
    Clock,
    Metrics,
    NoMetrics,
    RandomBytes,
    UnitOfWork,
    UnitOfWorkFactory,
)
from devprov.service.retry import retrying

log = logging.getLogger("devprov.registry")

# What the log says happened, per audited action.
_DONE = {
    "upload": "uploaded",
    "update": "replaced",
    "delete": "deleted",
    "generateVerificationCode": "given a new verification code",
    "verify": "verified",
}


# How many of the groups naming a certificate one read returns: a service holds at most 100 X.509
# groups (core.enrollment.MAX_ENROLLMENT_GROUPS_PER_TYPE), so a page of 50 and a count say all
# an operator needs before deleting it.
GROUPS_SHOWN = 50


@dataclass(frozen=True)
class CertificateUse:
    """A registry certificate and the enrollment groups that name it."""

    certificate: CertificateRecord
    groups: tuple[Enrollment, ...]  # the first GROUPS_SHOWN, by id
    total: int  # how many groups name it in all


class CertificateRegistry:
    """CA certificates of provisioning services and their proof-of-possession."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        random_bytes: RandomBytes,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics: Metrics = metrics or NoMetrics()
        self._uow = uow
        self._clock = clock
        self._random = random_bytes

    # --- reads ----------------------------------------------------------------------------

    def get(self, service: str, name: str) -> CertificateRecord:
        with self._uow(read_only=True) as uow:
            _service(uow, service)
            return _certificate(uow, service, name)

    def list(self, service: str) -> list[CertificateRecord]:
        with self._uow(read_only=True) as uow:
            _service(uow, service)
            return uow.certificates.in_service(service)

    def groups_using(self, service: str, name: str, *, limit: int = GROUPS_SHOWN) -> CertificateUse:
        """The enrollment groups that name this certificate: by caReferences, or holding the
        same certificate inline as a signing certificate (what deleting it affects)."""
        with self._uow(read_only=True) as uow:
            _service(uow, service)
            record = _certificate(uow, service, name)
            sha = record.facts.sha256_thumbprint
            groups = uow.enrollments.groups_naming_certificate(
                service, record.name, sha, limit=limit
            )
            total = uow.enrollments.count_groups_naming_certificate(service, record.name, sha)
            return CertificateUse(record, tuple(groups), total)

    # --- writes ---------------------------------------------------------------------------

    @retrying
    def upload(
        self,
        service: str,
        name: str,
        data: bytes | str,
        *,
        is_verified: bool,
        if_match: str | None,
        actor: str,
        api_version: str | None = None,
        create_only: bool = False,
    ) -> CertificateRecord:
        """Create a certificate, or replace an existing one when If-Match admits it.

        Replacing it with the same certificate keeps its verification; a different certificate
        (a different key) must be verified again. ``create_only`` refuses a name that exists
        (the portal's "Add a certificate" never replaces one).
        """
        with self._uow() as uow:
            try:
                validate_certificate_name(name)
                # Locked: the count below and the insert after it are one step for every
                # instance (docs/storage.md#instances-sharing-one-database).
                settings = _service(uow, service, lock=True)
                now = self._clock()
                certificate = parse_single_certificate(data)
                validate_ca_certificate(certificate, now=now)
                der = to_der(certificate)
                existing = uow.certificates.get(service, name)
                if existing is not None and create_only:
                    raise AlreadyExistsError(
                        f"a certificate named '{existing.name}' already exists in provisioning "
                        f"service '{service}' (names compare ignoring case); choose another name "
                        "or delete that certificate first"
                    )
                if existing is None:
                    record = self._create(uow, settings, name, der, is_verified=is_verified)
                else:
                    _require_match(if_match, existing, "update")
                    record = self._update(existing, der, is_verified=is_verified)
                    uow.certificates.replace(record, expected_etag=existing.etag)
            except DevprovError as exc:
                self._fail(uow, service, name, "upload", actor, exc, api_version)
                raise
            action = "upload" if existing is None else "update"
            reason = "self-attested as verified" if is_verified else None
            detail = reason or ("still verified" if record.is_verified else "not verified")
            self._succeed(uow, service, name, action, actor, reason, api_version, detail=detail)
            return record

    @retrying
    def delete(
        self,
        service: str,
        name: str,
        *,
        if_match: str | None,
        actor: str,
        api_version: str | None = None,
    ) -> None:
        with self._uow() as uow:
            try:
                _service(uow, service)
                existing = _certificate(uow, service, name)
                _require_match(if_match, existing, "delete")
                uow.certificates.remove(service, existing.name, expected_etag=existing.etag)
            except DevprovError as exc:
                self._fail(uow, service, name, "delete", actor, exc, api_version)
                raise
            self._succeed(uow, service, existing.name, "delete", actor, None, api_version)

    @retrying
    def generate_code(
        self,
        service: str,
        name: str,
        *,
        if_match: str | None,
        actor: str,
        api_version: str | None = None,
    ) -> CertificateRecord:
        """Issue a fresh verification code; it supersedes the previous one."""
        with self._uow() as uow:
            try:
                _service(uow, service)
                existing = _certificate(uow, service, name)
                _require_match(if_match, existing, "generate a verification code for")
                now = self._clock()
                codes = issue_code(existing.codes, self._random(VERIFICATION_CODE_BYTES), now=now)
                record = replace(existing, codes=codes, updated_at=now, etag=self._etag())
                uow.certificates.replace(record, expected_etag=existing.etag)
            except DevprovError as exc:
                self._fail(uow, service, name, "generateVerificationCode", actor, exc, api_version)
                raise
            self._succeed(
                uow, service, record.name, "generateVerificationCode", actor, None, api_version
            )
            return record

    @retrying
    def verify(
        self,
        service: str,
        name: str,
        proof: bytes | str,
        *,
        if_match: str | None,
        actor: str,
        api_version: str | None = None,
    ) -> CertificateRecord:
        """Check a verification certificate; on success the certificate becomes verified."""
        checked = False  # the proof itself was judged (not a missing certificate or stale etag)
        with self._uow() as uow:
            try:
                settings = _service(uow, service)
                existing = _certificate(uow, service, name)
                _require_match(if_match, existing, "verify")
                checked = True
                now = self._clock()
                verify_possession(
                    existing.certificate,
                    proof,
                    existing.codes,
                    now=now,
                    code_lifetime=settings.code_lifetime,
                )
                record = replace(
                    existing,
                    is_verified=True,
                    verification_method=VerificationMethod.PROOF_OF_POSSESSION,
                    verified_at=now,
                    updated_at=now,
                    codes=consume_code(existing.codes),
                    etag=self._etag(),
                )
                uow.certificates.replace(record, expected_etag=existing.etag)
            except DevprovError as exc:
                if checked:
                    self._metrics.possession_attempt("failed")
                self._fail(uow, service, name, "verify", actor, exc, api_version)
                raise
            self._succeed(
                uow, service, record.name, "verify", actor, "proof-of-possession", api_version
            )
            self._metrics.possession_attempt("verified")
            return record

    # --- helpers --------------------------------------------------------------------------

    def _create(
        self,
        uow: UnitOfWork,
        settings: ProvisioningService,
        name: str,
        der: bytes,
        *,
        is_verified: bool,
    ) -> CertificateRecord:
        if uow.certificates.count(settings.name) >= settings.max_certificates:
            raise CertificateLimitError(
                f"provisioning service '{settings.name}' already holds {settings.max_certificates} "
                "certificates, its limit; delete one or raise the limit"
            )
        now = self._clock()
        record = CertificateRecord(
            service=settings.name,
            name=name,
            der=der,
            is_verified=is_verified,
            verification_method=VerificationMethod.SELF_ATTESTED if is_verified else None,
            verified_at=now if is_verified else None,
            created_at=now,
            updated_at=now,
            etag=self._etag(),
        )
        uow.certificates.add(record)
        return record

    def _update(
        self, existing: CertificateRecord, der: bytes, *, is_verified: bool
    ) -> CertificateRecord:
        now = self._clock()
        if der == existing.der and existing.is_verified and not is_verified:
            return replace(existing, updated_at=now, etag=self._etag())
        return replace(
            existing,
            der=der,
            is_verified=is_verified,
            verification_method=VerificationMethod.SELF_ATTESTED if is_verified else None,
            verified_at=now if is_verified else None,
            updated_at=now,
            codes=VerificationCodes() if der != existing.der else existing.codes,
            etag=self._etag(),
        )

    def _etag(self) -> str:
        return build_resource_etag(self._random(RESOURCE_ETAG_BYTES))

    def _succeed(
        self,
        uow: UnitOfWork,
        service: str,
        name: str,
        action: str,
        actor: str,
        reason: str | None,
        api_version: str | None,
        *,
        detail: str | None = None,
    ) -> None:
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=service,
                action=action,
                outcome=Outcome.SUCCEEDED,
                actor=actor,
                certificate=name,
                reason=reason,
                api_version=api_version,
            )
        )
        uow.commit()
        log.info(
            "certificate '%s' of service '%s' %s by %s%s",
            name,
            service,
            _DONE.get(action, action),
            actor,
            f" ({detail or reason})" if detail or reason else "",
        )

    def _fail(
        self,
        uow: UnitOfWork,
        service: str,
        name: str,
        action: str,
        actor: str,
        error: DevprovError,
        api_version: str | None,
    ) -> None:
        """Record a refusal after discarding whatever the failed call had begun to write."""
        uow.rollback()
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=service,
                action=action,
                outcome=Outcome.FAILED,
                actor=actor,
                certificate=name,
                reason=error.message,
                error_code=error.code,
                api_version=api_version,
            )
        )
        uow.commit()


def _service(uow: UnitOfWork, name: str, *, lock: bool = False) -> ProvisioningService:
    service = uow.services.lock(name) if lock else uow.services.get(name)
    if service is None:
        raise ServiceNotFoundError(f"provisioning service '{name}' does not exist")
    return service


def _certificate(uow: UnitOfWork, service: str, name: str) -> CertificateRecord:
    record = uow.certificates.get(service, name)
    if record is None:
        raise CertificateNotFoundError(
            f"certificate '{name}' does not exist in provisioning service '{service}'"
        )
    return record


def _require_match(if_match: str | None, record: CertificateRecord, action: str) -> None:
    if if_match is None or not if_match.strip():
        raise EtagMismatchError(
            f"Invalid ETag supplied: If-Match is required to {action} certificate "
            f"'{record.name}'; its current etag is \"{record.etag}\""
        )
    if not is_etag_match(if_match, record.etag):
        raise EtagMismatchError(
            f"Invalid ETag supplied: If-Match {if_match} does not match the current etag "
            f"\"{record.etag}\" of certificate '{record.name}'"
        )
