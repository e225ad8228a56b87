"""Credential policies and issued operational certificates in SQL (tables of migration 0007)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from devprov.core.credential_policy import CaOrigin, CredentialPolicy, IssuedCertificate
from devprov.core.error import AlreadyExistsError, NotFoundError
from devprov.storage.table import credential_policies, enrollments, issued_certificates

_policies = credential_policies.c
_issued = issued_certificates.c


def _policy(row: RowMapping) -> CredentialPolicy:
    return CredentialPolicy(
        service=row["service"],
        name=row["name"],
        ca_chain_pem=row["ca_chain"],
        origin=CaOrigin(row["origin"]),
        validity_days=row["validity_days"],
        organization=row["organization"],
        organizational_unit=row["organizational_unit"],
        server_auth=bool(row["server_auth"]),
        crl_number=row["crl_number"],
        created_at=row["created_at"],
        etag=row["etag"],
    )


class SqlCredentialPolicyStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, service: str, name: str) -> CredentialPolicy | None:
        row = (
            self._c.execute(
                select(credential_policies).where(
                    _policies.service == service, _policies.name_key == name.lower()
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _policy(row)

    def all(self, service: str) -> list[CredentialPolicy]:
        rows = self._c.execute(
            select(credential_policies)
            .where(_policies.service == service)
            .order_by(_policies.name_key)
        ).mappings()
        return [_policy(row) for row in rows]

    def add(self, policy: CredentialPolicy) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(credential_policies).values(
                        service=policy.service,
                        name_key=policy.key,
                        name=policy.name,
                        origin=policy.origin.value,
                        ca_chain=policy.ca_chain_pem,
                        validity_days=policy.validity_days,
                        organization=policy.organization,
                        organizational_unit=policy.organizational_unit,
                        server_auth=policy.server_auth,
                        crl_number=policy.crl_number,
                        created_at=policy.created_at,
                        etag=policy.etag,
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"credential policy '{policy.name}' exists in service '{policy.service}' already"
            ) from exc

    def remove(self, service: str, name: str) -> bool:
        result = self._c.execute(
            credential_policies.delete().where(
                _policies.service == service, _policies.name_key == name.lower()
            )
        )
        return result.rowcount == 1

    def next_crl_number(self, service: str, name: str) -> int:
        where = and_(_policies.service == service, _policies.name_key == name.lower())
        result = self._c.execute(
            update(credential_policies).where(where).values(crl_number=_policies.crl_number + 1)
        )
        if result.rowcount != 1:
            raise NotFoundError(f"credential policy '{name}' not found in service '{service}'")
        return int(self._c.execute(select(_policies.crl_number).where(where)).scalar_one())

    def enrollments_naming(self, service: str, name: str) -> int:
        return int(
            self._c.execute(
                select(func.count()).where(
                    enrollments.c.service == service,
                    enrollments.c.credential_policy_key == name.lower(),
                )
            ).scalar_one()
        )


def _issued_row(row: RowMapping) -> IssuedCertificate:
    return IssuedCertificate(
        service=row["service"],
        serial=row["serial"],
        sha256=row["sha256"],
        registration_id=row["registration_id"],
        policy=row["policy"],
        not_before=row["not_before"],
        not_after=row["not_after"],
        issued_at=row["issued_at"],
        certificate_der=bytes(row["certificate"]),
        operation_id=row["operation_id"],
        superseded_at=row["superseded_at"],
        revoked_at=row["revoked_at"],
    )


class SqlIssuedCertificateStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def _one(self, *where: Any) -> IssuedCertificate | None:
        row = self._c.execute(select(issued_certificates).where(*where)).mappings().first()
        return None if row is None else _issued_row(row)

    def add(self, certificate: IssuedCertificate) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(issued_certificates).values(
                        service=certificate.service,
                        serial=certificate.serial.upper(),
                        sha256=certificate.sha256.lower(),
                        registration_id=certificate.registration_id,
                        registration_key=certificate.registration_id.lower(),
                        policy_key=certificate.policy.lower(),
                        policy=certificate.policy,
                        not_before=certificate.not_before,
                        not_after=certificate.not_after,
                        issued_at=certificate.issued_at,
                        certificate=certificate.certificate_der,
                        operation_id=certificate.operation_id,
                        superseded_at=certificate.superseded_at,
                        revoked_at=certificate.revoked_at,
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"a certificate with serial {certificate.serial} or the same thumbprint was "
                f"issued in service '{certificate.service}' already"
            ) from exc

    def get(self, service: str, serial: str) -> IssuedCertificate | None:
        return self._one(_issued.service == service, _issued.serial == serial.upper())

    def by_sha256(self, service: str, sha256: str) -> IssuedCertificate | None:
        return self._one(_issued.service == service, _issued.sha256 == sha256.lower())

    def for_operation(self, service: str, operation_id: str) -> IssuedCertificate | None:
        return self._one(_issued.service == service, _issued.operation_id == operation_id)

    def supersede(self, service: str, registration_id: str, *, at: datetime) -> int:
        result = self._c.execute(
            update(issued_certificates)
            .where(
                _issued.service == service,
                _issued.registration_key == registration_id.lower(),
                _issued.superseded_at.is_(None),
            )
            .values(superseded_at=at)
        )
        return int(result.rowcount)

    def revoke(self, service: str, serial: str, *, at: datetime) -> bool:
        result = self._c.execute(
            update(issued_certificates)
            .where(
                _issued.service == service,
                _issued.serial == serial.upper(),
                _issued.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    def revoked(self, service: str, policy: str) -> list[IssuedCertificate]:
        rows = self._c.execute(
            select(issued_certificates)
            .where(
                _issued.service == service,
                _issued.policy_key == policy.lower(),
                _issued.revoked_at.is_not(None),
            )
            .order_by(_issued.revoked_at, _issued.serial)
        ).mappings()
        return [_issued_row(row) for row in rows]

    def page(
        self,
        service: str,
        *,
        policy: str | None = None,
        registration_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[IssuedCertificate]:
        query = select(issued_certificates).where(_issued.service == service)
        if policy is not None:
            query = query.where(_issued.policy_key == policy.lower())
        if registration_id is not None:
            query = query.where(_issued.registration_key == registration_id.lower())
        if after is not None:
            last = self.get(service, after)
            if last is None:
                # A position that names no certificate has nothing after it; starting over
                # would send a client paging by it round for ever.
                return []
            query = query.where(
                or_(
                    _issued.issued_at > last.issued_at,
                    and_(_issued.issued_at == last.issued_at, _issued.serial > last.serial),
                )
            )
        rows = self._c.execute(
            query.order_by(_issued.issued_at, _issued.serial).limit(limit)
        ).mappings()
        return [_issued_row(row) for row in rows]
