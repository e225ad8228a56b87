"""The SQL stores of device registration: registration states, the operations devices poll, and
the IoT hubs linked to a service, which registrations are assigned to.

A registration state is one row of ``registrations``; its free-form payload and certificate
summaries are JSON columns. Registration ids, and the enrollment ids states are paged by, compare
ignoring case through lower-case key columns.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import AlreadyExistsError, EtagMismatchError, InternalError, NotFoundError
from devprov.core.registration import (
    AttestationMethod,
    CertificateSummary,
    RegistrationState,
    RegistrationStatus,
    Substatus,
)
from devprov.service.hub_identity import HubKind
from devprov.service.model import HubRecord, Operation
from devprov.storage.enrollment_repository import json_default
from devprov.storage.statement import run_insert, run_update, starts_with
from devprov.storage.table import linked_hubs, operations, registrations

# --- registration states -----------------------------------------------------------------------


def _summary_json(summary: CertificateSummary | None) -> str | None:
    if summary is None:
        return None
    return json.dumps(
        {
            "subjectName": summary.subject_name,
            "sha1Thumbprint": summary.sha1_thumbprint,
            "sha256Thumbprint": summary.sha256_thumbprint,
            "issuerName": summary.issuer_name,
            "notBefore": summary.not_before.isoformat(),
            "notAfter": summary.not_after.isoformat(),
            "serialNumber": summary.serial_number,
            "version": summary.version,
        },
        separators=(",", ":"),
    )


def _summary(text: str | None) -> CertificateSummary | None:
    if text is None:
        return None
    doc = json.loads(text)
    return CertificateSummary(
        subject_name=doc["subjectName"],
        sha1_thumbprint=doc["sha1Thumbprint"],
        sha256_thumbprint=doc["sha256Thumbprint"],
        issuer_name=doc["issuerName"],
        not_before=datetime.fromisoformat(doc["notBefore"]),
        not_after=datetime.fromisoformat(doc["notAfter"]),
        serial_number=doc["serialNumber"],
        version=doc["version"],
    )


def _registration_values(state: RegistrationState) -> dict[str, Any]:
    return {
        "service": state.service,
        "registration_key": state.key,
        "registration_id": state.registration_id,
        "method": state.method.value,
        "enrollment_kind": state.enrollment_kind.value,
        "enrollment_id": state.enrollment_id,
        "enrollment_key": state.enrollment_id.lower(),
        "status": state.status.value,
        "substatus": state.substatus.value if state.substatus else None,
        "device_id": state.device_id,
        "assigned_hub": state.assigned_hub,
        "initial_hub": state.initial_hub,
        "error_code": state.error_code,
        "error_message": state.error_message,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "etag": state.etag,
        "payload": (
            None
            if state.payload is None
            else json.dumps(state.payload, separators=(",", ":"), default=json_default)
        ),
        "certificate": _summary_json(state.certificate),
        "signing_certificate": _summary_json(state.signing_certificate),
        "leaf_sha256": state.leaf_sha256,
    }


def _registration(row: RowMapping) -> RegistrationState:
    substatus = row["substatus"]
    payload = row["payload"]
    return RegistrationState(
        service=row["service"],
        registration_id=row["registration_id"],
        method=AttestationMethod(row["method"]),
        enrollment_kind=EnrollmentKind(row["enrollment_kind"]),
        enrollment_id=row["enrollment_id"],
        status=RegistrationStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        etag=row["etag"],
        device_id=row["device_id"],
        assigned_hub=row["assigned_hub"],
        initial_hub=row["initial_hub"],
        substatus=Substatus(substatus) if substatus else None,
        error_code=row["error_code"],
        error_message=row["error_message"],
        payload=None if payload is None else json.loads(payload),
        certificate=_summary(row["certificate"]),
        signing_certificate=_summary(row["signing_certificate"]),
        leaf_sha256=row["leaf_sha256"],
    )


# Hot-path reads, built once with bound parameters (see storage.statement for why).
_REGISTRATION = select(registrations).where(
    registrations.c.service == bindparam("service"),
    registrations.c.registration_key == bindparam("registration_key"),
)
_OPERATION = select(operations).where(
    operations.c.service == bindparam("service"), operations.c.id == bindparam("id")
)
_HUBS = (
    select(linked_hubs)
    .where(linked_hubs.c.service == bindparam("service"))
    .order_by(linked_hubs.c.host_name)
)


class SqlRegistrationStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, service: str, registration_id: str) -> RegistrationState | None:
        parameters = {"service": service, "registration_key": registration_id.lower()}
        row = self._c.execute(_REGISTRATION, parameters).mappings().first()
        return _registration(row) if row else None

    def add(self, state: RegistrationState) -> None:
        """A device's first state; a concurrent first registration of it fails the unit."""
        try:
            run_insert(self._c, registrations, _registration_values(state))
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"registration '{state.registration_id}' was created meanwhile; register again"
            ) from exc

    def put(self, state: RegistrationState, *, expected_etag: str | None) -> None:
        """Without an expected etag, insert or overwrite; with one, compare-and-swap."""
        values = _registration_values(state)
        if expected_etag is not None:
            if not self._overwrite(values, expected_etag=expected_etag):
                raise EtagMismatchError(
                    f"Invalid ETag supplied: registration '{state.registration_id}' changed "
                    "meanwhile or no longer exists"
                )
            return
        if self._overwrite(values, expected_etag=None):
            return
        try:
            with self._c.begin_nested():
                run_insert(self._c, registrations, values)
        except IntegrityError as exc:
            # Another writer inserted it since the update found nothing (PostgreSQL; SQLite
            # serialises writers with BEGIN IMMEDIATE): last writer wins, as without an etag.
            if not self._overwrite(values, expected_etag=None):
                raise InternalError(
                    f"registration '{state.registration_id}' of service '{state.service}' "
                    f"cannot be stored: {exc.orig}"
                ) from exc

    def _overwrite(self, values: dict[str, Any], *, expected_etag: str | None) -> bool:
        where = {"service": values["service"], "registration_key": values["registration_key"]}
        if expected_etag is not None:
            where["etag"] = expected_etag
        return run_update(self._c, registrations, where, values) == 1

    def remove(self, service: str, registration_id: str, *, expected_etag: str) -> None:
        result = self._c.execute(
            delete(registrations).where(
                registrations.c.service == service,
                registrations.c.registration_key == registration_id.lower(),
                registrations.c.etag == expected_etag,
            )
        )
        if result.rowcount != 1:
            raise EtagMismatchError(
                f"Invalid ETag supplied: registration '{registration_id}' changed meanwhile or "
                "no longer exists"
            )

    def page_for_group(
        self, service: str, group_id: str, *, after: str | None, limit: int
    ) -> list[RegistrationState]:
        query = (
            select(registrations)
            .where(
                registrations.c.service == service,
                registrations.c.enrollment_kind == EnrollmentKind.GROUP.value,
                registrations.c.enrollment_key == group_id.lower(),
            )
            .order_by(registrations.c.registration_key)
            .limit(limit)
        )
        if after is not None:
            query = query.where(registrations.c.registration_key > after.lower())
        return [_registration(row) for row in self._c.execute(query).mappings()]

    def page(
        self, service: str, *, after: str | None, limit: int, prefix: str | None = None
    ) -> list[RegistrationState]:
        """By the primary key's (service, registration_key) order: a page reads ``limit`` rows."""
        query = (
            select(registrations)
            .where(registrations.c.service == service)
            .order_by(registrations.c.registration_key)
            .limit(limit)
        )
        if after is not None:
            query = query.where(registrations.c.registration_key > after.lower())
        if prefix:
            query = query.where(starts_with(registrations.c.registration_key, prefix.lower()))
        return [_registration(row) for row in self._c.execute(query).mappings()]


# --- operations --------------------------------------------------------------------------------


class SqlOperationStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, operation: Operation) -> None:
        # No savepoint: ids carry 24 random bytes, and a collision fails the whole unit anyway.
        try:
            run_insert(
                self._c,
                operations,
                {
                    "id": operation.id,
                    "service": operation.service,
                    "registration_id": operation.registration_id,
                    "created_at": operation.created_at,
                    **_outcome_values(operation),
                },
            )
        except IntegrityError as exc:
            raise AlreadyExistsError(f"operation '{operation.id}' already exists") from exc

    def settle(self, operation: Operation) -> None:
        """Write the outcome of an operation stored ``assigning`` (service.device_pending): its
        status and what decided it; its id and creation time stay. Raises NotFoundError when no
        such operation is assigning (it was never stored, or is settled already)."""
        where = {"service": operation.service, "id": operation.id, "status": "assigning"}
        if run_update(self._c, operations, where, _outcome_values(operation)) != 1:
            raise NotFoundError(f"operation '{operation.id}' is not assigning")

    def get(self, service: str, operation_id: str) -> Operation | None:
        row = (
            self._c.execute(_OPERATION, {"service": service, "id": operation_id}).mappings().first()
        )
        if row is None:
            return None
        return Operation(
            id=row["id"],
            service=row["service"],
            registration_id=row["registration_id"],
            created_at=row["created_at"],
            status=row["status"],
            enrollment_kind=row["enrollment_kind"],
            enrollment_id=row["enrollment_id"],
            leaf_sha256=row["leaf_sha256"],
            error_code=row["error_code"],
            error_message=row["error_message"],
        )

    def prune(self, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` operations created before ``before``, oldest first (by
        ix_operations_created_at); how many were deleted. Retention keeps at least a day, so one
        still ``assigning`` that old was abandoned by a process that stopped (a poll reads it
        failed past core.registration.ASSIGNING_LIMIT, a minute) and goes too."""
        oldest = (
            select(operations.c.id)
            .where(operations.c.created_at < before)
            .order_by(operations.c.created_at)
            .limit(limit)
        )
        result = self._c.execute(
            delete(operations).where(operations.c.id.in_(oldest.scalar_subquery()))
        )
        return int(result.rowcount)


def _outcome_values(operation: Operation) -> dict[str, Any]:
    """An operation's columns that its outcome sets (all but its identity and creation time)."""
    return {
        "status": operation.status,
        "enrollment_kind": operation.enrollment_kind,
        "enrollment_id": operation.enrollment_id,
        "leaf_sha256": operation.leaf_sha256,
        "error_code": operation.error_code,
        "error_message": operation.error_message,
    }


# --- linked hubs -------------------------------------------------------------------------------


def _settings_json(hub: HubRecord) -> str | None:
    return json.dumps(dict(hub.settings), sort_keys=True) if hub.settings else None


def _settings(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    doc = json.loads(text)
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise InternalError("a linked hub's settings are not a JSON object of strings")
    return {str(k): v for k, v in doc.items()}


class SqlHubStore:
    """Host names are DNS names, so they are stored and matched lower-case."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def all(self, service: str) -> list[HubRecord]:
        rows = self._c.execute(_HUBS, {"service": service}).mappings()
        return [
            HubRecord(
                service=row["service"],
                host_name=row["host_name"],
                weight=row["weight"],
                apply_allocation_policy=bool(row["apply_allocation_policy"]),
                created_at=row["created_at"],
                kind=HubKind(row["kind"]),
                settings=_settings(row["settings"]),
            )
            for row in rows
        ]

    def add(self, hub: HubRecord) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(linked_hubs).values(
                        service=hub.service,
                        host_name=hub.host_name.lower(),
                        weight=hub.weight,
                        apply_allocation_policy=hub.apply_allocation_policy,
                        created_at=hub.created_at,
                        kind=hub.kind.value,
                        settings=_settings_json(hub),
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"IoT hub '{hub.host_name}' is already linked to service '{hub.service}'"
            ) from exc

    def replace(self, hub: HubRecord) -> None:
        """Weight, allocation flag, kind and settings; the link keeps its creation time."""
        result = self._c.execute(
            update(linked_hubs)
            .where(
                linked_hubs.c.service == hub.service,
                linked_hubs.c.host_name == hub.host_name.lower(),
            )
            .values(
                weight=hub.weight,
                apply_allocation_policy=hub.apply_allocation_policy,
                kind=hub.kind.value,
                settings=_settings_json(hub),
            )
        )
        if result.rowcount != 1:
            raise NotFoundError(
                f"IoT hub '{hub.host_name}' is not linked to service '{hub.service}'"
            )

    def remove(self, service: str, host_name: str) -> bool:
        result = self._c.execute(
            delete(linked_hubs).where(
                linked_hubs.c.service == service, linked_hubs.c.host_name == host_name.lower()
            )
        )
        return result.rowcount == 1
