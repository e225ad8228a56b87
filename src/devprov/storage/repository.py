"""SQL implementations of the service ports, on one SQLAlchemy connection per unit of work.

Queries live here and in the two modules beside it (``enrollment_repository``,
``registration_repository``), nowhere else; this one holds the registry's stores and the unit of
work that wires all of them to one connection. Driver exceptions are translated where they enter:
unique violations become ``AlreadyExistsError``, lost compare-and-swap updates become
``EtagMismatchError``, and operational failures (a locked or unreachable database) become
``StorageUnavailableError``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from devprov.core.error import (
    AlreadyExistsError,
    EtagMismatchError,
    NotFoundError,
    ServiceNotFoundError,
    StorageBusyError,
    StorageConflictError,
    StorageUnavailableError,
)
from devprov.core.possession import VerificationCodes
from devprov.service.model import (
    AccessPolicy,
    AuditEvent,
    AuditFilter,
    AuditPosition,
    CertificateRecord,
    Outcome,
    ProvisioningService,
    VerificationMethod,
)
from devprov.storage.credential_repository import (
    SqlCredentialPolicyStore,
    SqlIssuedCertificateStore,
)
from devprov.storage.database import (
    LOCK_TIMEOUT_SECONDS,
    READ_ONLY_OPTION,
    is_lock_timeout,
    is_transaction_conflict,
)
from devprov.storage.enrollment_repository import SqlEnrollmentStore
from devprov.storage.operator_repository import SqlPortalSessionStore, SqlUserStore
from devprov.storage.registration_repository import (
    SqlHubStore,
    SqlOperationStore,
    SqlRegistrationStore,
)
from devprov.storage.statement import run_insert, run_update
from devprov.storage.table import access_policies, audit_events, certificates, services, settings


def _certificate_values(record: CertificateRecord) -> dict[str, Any]:
    return {
        "service": record.service,
        "name": record.name,
        "name_key": record.name.lower(),
        "der": record.der,
        "sha256": hashlib.sha256(record.der).hexdigest().upper(),
        "is_verified": record.is_verified,
        "verification_method": record.verification_method.value
        if record.verification_method
        else None,
        "verified_at": record.verified_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "etag": record.etag,
        "code": record.codes.current,
        "code_issued_at": record.codes.issued_at,
        "superseded_codes": json.dumps(list(record.codes.superseded)),
        "used_codes": json.dumps(list(record.codes.used)),
    }


def _certificate_record(row: RowMapping) -> CertificateRecord:
    method = row["verification_method"]
    return CertificateRecord(
        service=row["service"],
        name=row["name"],
        der=bytes(row["der"]),
        is_verified=bool(row["is_verified"]),
        verification_method=VerificationMethod(method) if method else None,
        verified_at=row["verified_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        etag=row["etag"],
        codes=VerificationCodes(
            current=row["code"],
            issued_at=row["code_issued_at"],
            superseded=tuple(json.loads(row["superseded_codes"])),
            used=tuple(json.loads(row["used_codes"])),
        ),
    )


# Hot-path reads, built once with bound parameters (see storage.statement for why).
_CERTIFICATE = select(certificates).where(
    certificates.c.service == bindparam("service"), certificates.c.name_key == bindparam("name_key")
)
_SERVICE_CERTIFICATES = (
    select(certificates)
    .where(certificates.c.service == bindparam("service"))
    .order_by(certificates.c.name_key)
)
_SERVICE = select(services).where(services.c.name == bindparam("name"))
# The service's row, locked until the transaction ends: what serialises the writers that count
# a service's records before adding one (docs/storage.md#instances-sharing-one-database).
# FOR NO KEY UPDATE, not FOR UPDATE: it does not block the FOR KEY SHARE lock that inserting a
# row referencing the service takes, so registrations and audit events never wait for it.
# SQLite renders no FOR clause; its BEGIN IMMEDIATE serialises writers already.
_SERVICE_LOCKED = _SERVICE.with_for_update(key_share=True)
_SERVICE_BY_SCOPE = select(services).where(func.lower(services.c.id_scope) == bindparam("id_scope"))
_SERVICES = select(services).order_by(services.c.name)
_POLICIES_NAMED = (
    select(access_policies)
    .where(access_policies.c.name == bindparam("name"))
    .order_by(access_policies.c.service)
)
_POLICIES = (
    select(access_policies)
    .where(access_policies.c.service == bindparam("service"))
    .order_by(access_policies.c.name)
)


class SqlCertificateStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, service: str, name: str) -> CertificateRecord | None:
        row = (
            self._c.execute(_CERTIFICATE, {"service": service, "name_key": name.lower()})
            .mappings()
            .first()
        )
        return _certificate_record(row) if row else None

    def in_service(self, service: str) -> list[CertificateRecord]:
        """The service's certificates by name; device attestation reads them on every X.509
        registration, so the statement is built once."""
        rows = self._c.execute(_SERVICE_CERTIFICATES, {"service": service}).mappings()
        return [_certificate_record(row) for row in rows]

    def count(self, service: str) -> int:
        total = self._c.execute(
            select(func.count()).select_from(certificates).where(certificates.c.service == service)
        ).scalar_one()
        return int(total)

    def add(self, record: CertificateRecord) -> None:
        try:
            with self._c.begin_nested():
                run_insert(self._c, certificates, _certificate_values(record))
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"certificate '{record.name}' already exists in service '{record.service}'"
            ) from exc

    def replace(self, record: CertificateRecord, *, expected_etag: str) -> None:
        values = _certificate_values(record)
        del values["created_at"]
        where = {"service": record.service, "name_key": record.name.lower(), "etag": expected_etag}
        if run_update(self._c, certificates, where, values) != 1:
            raise EtagMismatchError(
                f"Invalid ETag supplied: certificate '{record.name}' changed meanwhile"
            )

    def remove(self, service: str, name: str, *, expected_etag: str) -> None:
        result = self._c.execute(
            delete(certificates).where(
                certificates.c.service == service,
                certificates.c.name_key == name.lower(),
                certificates.c.etag == expected_etag,
            )
        )
        if result.rowcount != 1:
            raise EtagMismatchError(
                f"Invalid ETag supplied: certificate '{name}' changed concurrently; read it again"
            )


def _service(row: RowMapping) -> ProvisioningService:
    return ProvisioningService(
        name=row["name"],
        id_scope=row["id_scope"],
        created_at=row["created_at"],
        max_certificates=row["max_certificates"],
        code_lifetime=timedelta(seconds=row["code_lifetime_seconds"]),
        trust_revision=row["trust_revision"],
    )


def _policy(row: RowMapping) -> AccessPolicy:
    return AccessPolicy(
        service=row["service"],
        name=row["name"],
        primary_key=row["primary_key"],
        secondary_key=row["secondary_key"],
        rights=frozenset(filter(None, row["rights"].split(","))),
    )


class SqlServiceStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, name: str) -> ProvisioningService | None:
        row = self._c.execute(_SERVICE, {"name": name}).mappings().first()
        return _service(row) if row else None

    def lock(self, name: str) -> ProvisioningService | None:
        """The service, its row locked against other writers that lock it until this unit of
        work ends (on PostgreSQL; SQLite's writers are serialised already)."""
        row = self._c.execute(_SERVICE_LOCKED, {"name": name}).mappings().first()
        return _service(row) if row else None

    def get_by_scope(self, id_scope: str) -> ProvisioningService | None:
        row = self._c.execute(_SERVICE_BY_SCOPE, {"id_scope": id_scope.lower()}).mappings().first()
        return _service(row) if row else None

    def all(self) -> list[ProvisioningService]:
        rows = self._c.execute(_SERVICES).mappings()
        return [_service(row) for row in rows]

    def add(self, service: ProvisioningService, policies: list[AccessPolicy]) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(services).values(
                        name=service.name,
                        id_scope=service.id_scope,
                        created_at=service.created_at,
                        max_certificates=service.max_certificates,
                        code_lifetime_seconds=int(service.code_lifetime.total_seconds()),
                    )
                )
                for policy in policies:
                    self._c.execute(insert(access_policies).values(**_policy_values(policy)))
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"provisioning service '{service.name}' already exists"
            ) from exc

    def replace(self, service: ProvisioningService) -> None:
        values = {
            "max_certificates": service.max_certificates,
            "code_lifetime_seconds": int(service.code_lifetime.total_seconds()),
        }
        if run_update(self._c, services, {"name": service.name}, values) != 1:
            raise ServiceNotFoundError(f"provisioning service '{service.name}' does not exist")

    def policies_named(self, name: str) -> list[AccessPolicy]:
        """The policies of that name across every service (a service API token names one)."""
        rows = self._c.execute(_POLICIES_NAMED, {"name": name}).mappings()
        return [_policy(row) for row in rows]

    def policies(self, service: str) -> list[AccessPolicy]:
        rows = self._c.execute(_POLICIES, {"service": service}).mappings()
        return [_policy(row) for row in rows]

    def add_policy(self, policy: AccessPolicy) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(insert(access_policies).values(**_policy_values(policy)))
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"access policy '{policy.name}' already exists in service '{policy.service}'"
            ) from exc

    def replace_policy(self, policy: AccessPolicy) -> None:
        values = _policy_values(policy)
        result = self._c.execute(
            update(access_policies)
            .where(
                access_policies.c.service == policy.service,
                access_policies.c.name == policy.name,
            )
            .values(
                primary_key=values["primary_key"],
                secondary_key=values["secondary_key"],
                rights=values["rights"],
            )
        )
        if result.rowcount != 1:
            raise NotFoundError(
                f"access policy '{policy.name}' does not exist in service '{policy.service}'"
            )

    def remove_policy(self, service: str, name: str) -> bool:
        result = self._c.execute(
            delete(access_policies).where(
                access_policies.c.service == service, access_policies.c.name == name
            )
        )
        return result.rowcount == 1


def _policy_values(policy: AccessPolicy) -> dict[str, Any]:
    return {
        "service": policy.service,
        "name": policy.name,
        "primary_key": policy.primary_key,
        "secondary_key": policy.secondary_key,
        "rights": ",".join(sorted(policy.rights)),
    }


def _fit(values: dict[str, Any], table: Table) -> dict[str, Any]:
    """``values`` with each string cut to its column's length. PostgreSQL refuses a longer
    string where SQLite keeps it whole; an audit event's descriptive fields (the actor
    ``device:<a 128-character id>``, a client's api-version) may run past their column, and the
    event matters more than its last characters. Cut alike on both engines."""
    fitted = dict(values)
    for name, value in values.items():
        length = getattr(table.c[name].type, "length", None)
        if isinstance(value, str) and length is not None and len(value) > length:
            fitted[name] = value[:length]
    return fitted


def _audit_event(row: RowMapping) -> AuditEvent:
    return AuditEvent(
        at=row["at"],
        service=row["service"],
        certificate=row["certificate"],
        action=row["action"],
        outcome=Outcome(row["outcome"]),
        actor=row["actor"],
        reason=row["reason"],
        error_code=row["error_code"],
        api_version=row["api_version"],
        registration_id=row["registration_id"],
        id=row["id"],
    )


class SqlAuditLog:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def record(self, event: AuditEvent) -> None:
        values = {
            "at": event.at,
            "service": event.service,
            "certificate": event.certificate,
            "action": event.action,
            "outcome": event.outcome.value,
            "actor": event.actor,
            "reason": event.reason,
            "error_code": event.error_code,
            "api_version": event.api_version,
            "registration_id": event.registration_id,
            "registration_key": None
            if event.registration_id is None
            else event.registration_id.lower(),
        }
        run_insert(self._c, audit_events, _fit(values, audit_events))

    def query(
        self,
        *,
        service: str | None = None,
        certificate: str | None = None,
        registration_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if service is not None:
            query = query.where(audit_events.c.service == service)
        if certificate is not None:
            query = query.where(func.lower(audit_events.c.certificate) == certificate.lower())
        if registration_id is not None:
            # By ix_audit_events_registration_key, newest first (0003).
            query = query.where(audit_events.c.registration_key == registration_id.lower())
        rows = list(self._c.execute(query).mappings())
        rows.reverse()
        return [_audit_event(row) for row in rows]

    def page(
        self, which: AuditFilter, *, before: AuditPosition | None, limit: int
    ) -> list[AuditEvent]:
        """Newest first by (at, id): with a service, ix_audit_events_service_at serves the order
        (SQLite's index ends in the rowid, which is ``id``); a registration id's events come by
        ix_audit_events_registration_key. ``before`` continues after the last event of the
        previous page, so a page never skips or repeats an event whatever is written meanwhile
        (no OFFSET)."""
        c = audit_events.c
        query = select(audit_events).order_by(c.at.desc(), c.id.desc()).limit(limit)
        for column, value in (
            (c.service, which.service),
            (c.action, which.action),
            (c.actor, which.actor),
            (c.outcome, which.outcome.value if which.outcome else None),
        ):
            if value is not None:
                query = query.where(column == value)
        if which.registration_id is not None:
            query = query.where(c.registration_key == which.registration_id.lower())
        if which.certificate is not None:
            query = query.where(func.lower(c.certificate) == which.certificate.lower())
        if which.since is not None:
            query = query.where(c.at >= which.since)
        if which.until is not None:
            query = query.where(c.at < which.until)
        if before is not None:
            query = query.where(or_(c.at < before.at, and_(c.at == before.at, c.id < before.id)))
        return [_audit_event(row) for row in self._c.execute(query).mappings()]

    def prune(self, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` events older than ``before``, oldest first (by
        ix_audit_events_at); how many were deleted."""
        oldest = (
            select(audit_events.c.id)
            .where(audit_events.c.at < before)
            .order_by(audit_events.c.at)
            .limit(limit)
        )
        result = self._c.execute(
            delete(audit_events).where(audit_events.c.id.in_(oldest.scalar_subquery()))
        )
        return int(result.rowcount)


class SqlSettingStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, key: str) -> str | None:
        value = self._c.execute(select(settings.c.value).where(settings.c.key == key)).scalar()
        return None if value is None else str(value)

    def put(self, key: str, value: str) -> None:
        """Insert or overwrite. Two instances may put the same new key at once (both start on
        an empty database): the insert runs in a savepoint, and the one that finds the key taken
        overwrites it instead of failing its unit of work."""
        if self._overwrite(key, value):
            return
        try:
            with self._c.begin_nested():
                self._c.execute(insert(settings).values(key=key, value=value))
        except IntegrityError:
            if not self._overwrite(key, value):
                raise

    def setdefault(self, key: str, value: str) -> str:
        """The key's value, or ``value`` inserted when it has none; of two instances inserting
        at once, the one that finds the key taken reads the other's."""
        current = self.get(key)
        if current is not None:
            return current
        try:
            with self._c.begin_nested():
                self._c.execute(insert(settings).values(key=key, value=value))
        except IntegrityError:
            taken = self.get(key)
            if taken is None:
                raise
            return taken
        return value

    def _overwrite(self, key: str, value: str) -> bool:
        updated = self._c.execute(update(settings).where(settings.c.key == key).values(value=value))
        return bool(updated.rowcount == 1)


class SqlUnitOfWork:
    """One connection; each transaction begins with its first statement (SQLAlchemy's autobegin),
    is committed explicitly and rolled back otherwise. Nothing begins after a commit until a
    statement needs it, so a committed unit holds no lock."""

    certificates: SqlCertificateStore
    services: SqlServiceStore
    audit: SqlAuditLog
    settings: SqlSettingStore
    enrollments: SqlEnrollmentStore
    registrations: SqlRegistrationStore
    operations: SqlOperationStore
    hubs: SqlHubStore
    users: SqlUserStore
    portal_sessions: SqlPortalSessionStore
    credential_policies: SqlCredentialPolicyStore
    issued: SqlIssuedCertificateStore

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only

    def __enter__(self) -> Self:
        try:
            self._connection = self._engine.connect().execution_options(
                **{READ_ONLY_OPTION: self._read_only}
            )
        except OperationalError as exc:
            raise StorageUnavailableError(f"the database cannot be opened: {exc.orig}") from exc
        self.certificates = SqlCertificateStore(self._connection)
        self.services = SqlServiceStore(self._connection)
        self.audit = SqlAuditLog(self._connection)
        self.settings = SqlSettingStore(self._connection)
        self.enrollments = SqlEnrollmentStore(self._connection)
        self.registrations = SqlRegistrationStore(self._connection)
        self.operations = SqlOperationStore(self._connection)
        self.hubs = SqlHubStore(self._connection)
        self.users = SqlUserStore(self._connection)
        self.portal_sessions = SqlPortalSessionStore(self._connection)
        self.credential_policies = SqlCredentialPolicyStore(self._connection)
        self.issued = SqlIssuedCertificateStore(self._connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._connection.in_transaction():
                self._connection.rollback()
        except DBAPIError as failed:
            # The database went away between the unit's last statement and its rollback: the
            # transaction is gone with the connection. An error the unit raised is reported
            # below; a rollback after a clean exit is the database being unavailable.
            if exc is None:
                raise StorageUnavailableError(
                    f"the database is unavailable: {failed.orig}"
                ) from failed
        finally:
            self._connection.close()
        if isinstance(exc, InterfaceError):  # the driver's connection was closed under it
            raise StorageUnavailableError(f"the database is unavailable: {exc.orig}") from exc
        if isinstance(exc, OperationalError):
            if is_lock_timeout(exc):
                raise _busy(exc) from exc
            if is_transaction_conflict(exc):
                raise _conflict(exc) from exc
            raise StorageUnavailableError(f"the database is unavailable: {exc.orig}") from exc

    def commit(self) -> None:
        try:
            self._connection.commit()
        except OperationalError as exc:
            if is_lock_timeout(exc):
                raise _busy(exc) from exc
            if is_transaction_conflict(exc):
                raise _conflict(exc) from exc
            raise StorageUnavailableError(f"the database refused the commit: {exc.orig}") from exc

    def rollback(self) -> None:
        self._connection.rollback()


def _busy(exc: OperationalError) -> StorageBusyError:
    return StorageBusyError(
        f"another writer held the database's lock for more than {LOCK_TIMEOUT_SECONDS:g} s; "
        f"nothing was written ({exc.orig})"
    )


def _conflict(exc: OperationalError) -> StorageConflictError:
    """The database rolled the unit back to resolve a conflict with another transaction; the use
    case may run again (service.retry)."""
    return StorageConflictError(
        f"the database rolled this write back for a concurrent one; nothing was written "
        f"({exc.orig})"
    )
