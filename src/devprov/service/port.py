"""The ports the use cases depend on. Storage adapters implement them; tests may too.

Every write happens inside one unit of work, committed once at the boundary of a use case.
Stores raise only devprov errors (``AlreadyExistsError``, ``EtagMismatchError``,
``StorageUnavailableError``), never a driver's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from devprov.core.credential_policy import CredentialPolicy, IssuedCertificate
from devprov.core.enrollment import AttestationType, Enrollment, EnrollmentKind
from devprov.core.issuance import PrivateKey
from devprov.core.registration import RegistrationState
from devprov.service.model import (
    AccessPolicy,
    AuditEvent,
    AuditFilter,
    AuditPosition,
    CertificateRecord,
    HubRecord,
    Operation,
    PortalSession,
    PortalUser,
    ProvisioningService,
)


class CertificateStore(Protocol):
    def get(self, service: str, name: str) -> CertificateRecord | None: ...
    def in_service(self, service: str) -> list[CertificateRecord]: ...
    def count(self, service: str) -> int: ...
    def add(self, record: CertificateRecord) -> None: ...
    def replace(self, record: CertificateRecord, *, expected_etag: str) -> None: ...
    def remove(self, service: str, name: str, *, expected_etag: str) -> None: ...


class ServiceStore(Protocol):
    def get(self, name: str) -> ProvisioningService | None: ...
    def lock(self, name: str) -> ProvisioningService | None:
        """The service, read for a write that counts its records: no other such write of the
        service runs until this unit of work ends."""
        ...

    def get_by_scope(self, id_scope: str) -> ProvisioningService | None: ...
    def all(self) -> list[ProvisioningService]: ...
    def add(self, service: ProvisioningService, policies: list[AccessPolicy]) -> None: ...
    def replace(self, service: ProvisioningService) -> None: ...
    def policies(self, service: str) -> list[AccessPolicy]: ...
    def policies_named(self, name: str) -> list[AccessPolicy]: ...
    def add_policy(self, policy: AccessPolicy) -> None: ...
    def replace_policy(self, policy: AccessPolicy) -> None: ...
    def remove_policy(self, service: str, name: str) -> bool: ...


class EnrollmentStore(Protocol):
    """Individual enrollments and enrollment groups; ids compare case-insensitively."""

    def get(self, service: str, kind: EnrollmentKind, id: str) -> Enrollment | None: ...
    def add(self, enrollment: Enrollment) -> None: ...
    def replace(self, enrollment: Enrollment, *, expected_etag: str) -> None: ...
    def remove(
        self, service: str, kind: EnrollmentKind, id: str, *, expected_etag: str
    ) -> None: ...
    def count(
        self, service: str, kind: EnrollmentKind, attestation: AttestationType | None = None
    ) -> int: ...
    def page(
        self,
        service: str,
        kind: EnrollmentKind,
        *,
        after: str | None,
        limit: int,
        prefix: str | None = None,
    ) -> list[Enrollment]:
        """Ordered by lower-case id, those after ``after``; with ``prefix``, only ids that start
        with it (ignoring case)."""
        ...

    def groups_by_certificate(
        self, service: str, sha256_thumbprints: Collection[str]
    ) -> list[tuple[str, Enrollment]]: ...
    def symmetric_key_groups(self, service: str) -> list[Enrollment]: ...
    def groups_naming_certificate(
        self, service: str, name: str, sha256_thumbprint: str, *, limit: int
    ) -> list[Enrollment]:
        """The first ``limit`` groups (by id) that name registry certificate ``name`` in their
        caReferences or hold a signing certificate with this SHA-256 inline."""
        ...

    def count_groups_naming_certificate(
        self, service: str, name: str, sha256_thumbprint: str
    ) -> int: ...


class RegistrationStore(Protocol):
    def get(self, service: str, registration_id: str) -> RegistrationState | None: ...
    def add(self, state: RegistrationState) -> None: ...
    def put(self, state: RegistrationState, *, expected_etag: str | None) -> None: ...
    def remove(self, service: str, registration_id: str, *, expected_etag: str) -> None: ...
    def page_for_group(
        self, service: str, group_id: str, *, after: str | None, limit: int
    ) -> list[RegistrationState]: ...
    def page(
        self, service: str, *, after: str | None, limit: int, prefix: str | None = None
    ) -> list[RegistrationState]:
        """The service's states ordered by lower-case registration id, those after ``after``;
        with ``prefix``, only ids that start with it (ignoring case)."""
        ...


class OperationStore(Protocol):
    def add(self, operation: Operation) -> None: ...
    def get(self, service: str, operation_id: str) -> Operation | None: ...
    def settle(self, operation: Operation) -> None:
        """Write the outcome of an operation stored ``assigning``, keeping its id; raises
        NotFoundError when no such operation is assigning."""
        ...

    def prune(self, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` finished operations created before ``before``, oldest
        first; how many were deleted."""
        ...


class HubStore(Protocol):
    def all(self, service: str) -> list[HubRecord]: ...
    def add(self, hub: HubRecord) -> None: ...
    def replace(self, hub: HubRecord) -> None: ...
    def remove(self, service: str, host_name: str) -> bool: ...


class AuditLog(Protocol):
    def record(self, event: AuditEvent) -> None: ...
    def query(
        self,
        *,
        service: str | None = None,
        certificate: str | None = None,
        registration_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]: ...
    def page(
        self, which: AuditFilter, *, before: AuditPosition | None, limit: int
    ) -> list[AuditEvent]:
        """Matching events newest first (by time, then id), those older than ``before``."""
        ...

    def prune(self, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` events older than ``before``, oldest first; how many."""
        ...


class SettingStore(Protocol):
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str) -> None: ...
    def setdefault(self, key: str, value: str) -> str:
        """The key's value; ``value``, stored, when it has none (the first writer wins when
        instances set it at once)."""
        ...


class UserStore(Protocol):
    """Portal users; names compare ignoring case."""

    def get(self, name: str) -> PortalUser | None: ...
    def lock(self, name: str) -> PortalUser | None:
        """The user, their row locked against other writers until this unit of work ends."""
        ...

    def all(self) -> list[PortalUser]: ...
    def add(self, user: PortalUser) -> None: ...
    def set_password(self, name: str, password_hash: str, at: datetime) -> None: ...
    def remove(self, name: str) -> None: ...


class PortalSessionStore(Protocol):
    def get(self, session_id: str) -> PortalSession | None: ...
    def add(self, session: PortalSession) -> None: ...
    def touch(self, session_id: str, at: datetime) -> None: ...
    def remove(self, session_id: str) -> None: ...
    def remove_operator(self, operator: str) -> int:
        """End every session of ``operator``; how many there were."""
        ...

    def prune(self, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` sessions that expired before ``before``; how many."""
        ...


class CredentialPolicyStore(Protocol):
    """A service's credential policies; names compare ignoring case."""

    def get(self, service: str, name: str) -> CredentialPolicy | None: ...
    def all(self, service: str) -> list[CredentialPolicy]: ...
    def add(self, policy: CredentialPolicy) -> None:
        """Raises AlreadyExistsError for a name the service has already."""
        ...

    def remove(self, service: str, name: str) -> bool: ...
    def next_crl_number(self, service: str, name: str) -> int:
        """Raise the policy's CRL number by one and return it (NotFoundError without it)."""
        ...

    def enrollments_naming(self, service: str, name: str) -> int:
        """How many enrollments (individual and groups) name the policy."""
        ...


class IssuedCertificateStore(Protocol):
    """The operational certificates issued; serials are upper-case hex, thumbprints lower."""

    def add(self, certificate: IssuedCertificate) -> None: ...
    def get(self, service: str, serial: str) -> IssuedCertificate | None: ...
    def by_sha256(self, service: str, sha256: str) -> IssuedCertificate | None: ...
    def for_operation(self, service: str, operation_id: str) -> IssuedCertificate | None: ...
    def supersede(self, service: str, registration_id: str, *, at: datetime) -> int:
        """Mark the registration's current certificates superseded at ``at``; how many."""
        ...

    def revoke(self, service: str, serial: str, *, at: datetime) -> bool:
        """Revoke one certificate (False when none has that serial or it was revoked)."""
        ...

    def revoked(self, service: str, policy: str) -> list[IssuedCertificate]:
        """The policy's revoked certificates, expired ones too, by revocation time (then
        serial)."""
        ...

    def page(
        self,
        service: str,
        *,
        policy: str | None = None,
        registration_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[IssuedCertificate]:
        """Certificates by (issued_at, serial) ascending, after the serial ``after`` (none
        after a serial that was never issued)."""
        ...


class IssuingKeyStore(Protocol):
    """The issuing CAs' private keys, kept as secret files beside the other secrets."""

    def save(self, service: str, policy: str, key: PrivateKey) -> None: ...
    def load(self, service: str, policy: str) -> PrivateKey:
        """Raises NotFoundError when the key file is missing."""
        ...

    def remove(self, service: str, policy: str) -> None: ...


class UnitOfWork(Protocol):
    @property
    def certificates(self) -> CertificateStore: ...
    @property
    def services(self) -> ServiceStore: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def settings(self) -> SettingStore: ...
    @property
    def enrollments(self) -> EnrollmentStore: ...
    @property
    def registrations(self) -> RegistrationStore: ...
    @property
    def operations(self) -> OperationStore: ...
    @property
    def hubs(self) -> HubStore: ...
    @property
    def users(self) -> UserStore: ...
    @property
    def portal_sessions(self) -> PortalSessionStore: ...
    @property
    def credential_policies(self) -> CredentialPolicyStore: ...
    @property
    def issued(self) -> IssuedCertificateStore: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Opens a unit of work; ``read_only`` ones take no write lock and must not write."""

    def __call__(self, *, read_only: bool = False) -> UnitOfWork: ...


Clock = Callable[[], datetime]
RandomBytes = Callable[[int], bytes]


class Metrics(Protocol):
    """What the use cases count for operators (docs/operations.md#metrics). Labels are drawn from
    small fixed sets, never from client input; an adapter exports them (``devprov.http.metrics``).
    """

    def registration(self, *, outcome: str, attestation: str, protocol: str) -> None:
        """A registration decided: outcome ``assigned``, ``failed`` or ``disabled``; attestation
        ``x509`` or ``symmetricKey``; protocol ``https``, ``mqtt``, ``mqtt-ws``, ``amqp`` or
        ``amqp-ws``."""
        ...

    def attestation_failure(self, reason: str) -> None:
        """A device failed attestation, for one of ``devprov.service.attestation``'s reasons."""
        ...

    def possession_attempt(self, outcome: str) -> None:
        """A proof-of-possession was checked: outcome ``verified`` or ``failed``."""
        ...

    def observe_request(self, api: str, status: int, seconds: float) -> None:
        """A request answered: api ``device``, ``service``, ``management`` or ``mqtt``; its
        status as HTTP's (an MQTT reply carries DPS's status too)."""
        ...


class NoMetrics:
    """Counts nothing: the default where no exporter is wired (tests, the CLI)."""

    def registration(self, *, outcome: str, attestation: str, protocol: str) -> None:
        return None

    def attestation_failure(self, reason: str) -> None:
        return None

    def possession_attempt(self, outcome: str) -> None:
        return None

    def observe_request(self, api: str, status: int, seconds: float) -> None:
        return None
