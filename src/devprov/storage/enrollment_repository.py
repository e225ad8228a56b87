"""The SQL enrollment store: individual enrollments and enrollment groups, and the index of the
certificates groups attest with.

An enrollment is one row of ``enrollments``: the columns queries filter and order by, and a JSON
``document`` with the rest of the value, written and read by the codec below so that a stored
enrollment loads back equal. The certificates of an X.509 group are also written, one per slot,
to ``enrollment_certificates`` (the SHA-256 of an inline signing certificate, or the name of the
registry certificate a caReference points at) so that a device's chain finds its group by index.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    union,
)
from sqlalchemy.exc import IntegrityError

from devprov.core.enrollment import (
    AllocationPolicyName,
    Attestation,
    AttestationType,
    CustomAllocation,
    EnrolledCertificate,
    Enrollment,
    EnrollmentKind,
    ProvisioningStatus,
    ReprovisionPolicy,
)
from devprov.core.error import AlreadyExistsError, EtagMismatchError, InternalError
from devprov.storage.statement import run_insert, run_update, starts_with
from devprov.storage.table import certificates, enrollment_certificates, enrollments

# --- the document codec ------------------------------------------------------------------------


def _certificate_json(certificate: EnrolledCertificate | None) -> str | None:
    return base64.b64encode(certificate.der).decode("ascii") if certificate else None


def _certificate_value(text: str | None) -> EnrolledCertificate | None:
    return EnrolledCertificate(base64.b64decode(text)) if text is not None else None


def json_default(value: object) -> Any:
    """``json.dumps`` hook: a free-form member may be any Mapping, not only a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    raise InternalError(f"a {type(value).__name__} cannot be stored as JSON")


def _document(enrollment: Enrollment) -> str:
    attestation = enrollment.attestation
    custom = enrollment.custom_allocation
    return json.dumps(
        {
            "attestation": {
                "primaryCertificate": _certificate_json(attestation.primary_certificate),
                "secondaryCertificate": _certificate_json(attestation.secondary_certificate),
                "caPrimary": attestation.ca_primary,
                "caSecondary": attestation.ca_secondary,
                "primaryKey": attestation.primary_key,
                "secondaryKey": attestation.secondary_key,
                "endorsementKey": attestation.endorsement_key,
                "storageRootKey": attestation.storage_root_key,
            },
            "deviceId": enrollment.device_id,
            "allocationPolicy": (
                enrollment.allocation_policy.value if enrollment.allocation_policy else None
            ),
            "iotHubs": list(enrollment.iot_hubs),
            "iotHubHostName": enrollment.iot_hub_host_name,
            "customAllocation": (
                {"webhookUrl": custom.webhook_url, "apiVersion": custom.api_version}
                if custom
                else None
            ),
            "reprovision": {
                "updateHubAssignment": enrollment.reprovision.update_hub_assignment,
                "migrateDeviceData": enrollment.reprovision.migrate_device_data,
            },
            "initialTwin": enrollment.initial_twin,
            "iotEdge": enrollment.iot_edge,
            "optionalDeviceInformation": enrollment.optional_device_information,
            "credentialPolicy": enrollment.credential_policy,
        },
        separators=(",", ":"),
        default=json_default,
    )


def _enrollment(row: RowMapping) -> Enrollment:
    doc: dict[str, Any] = json.loads(row["document"])
    attestation = doc["attestation"]
    custom = doc["customAllocation"]
    policy = doc["allocationPolicy"]
    return Enrollment(
        service=row["service"],
        kind=EnrollmentKind(row["kind"]),
        id=row["id"],
        attestation=Attestation(
            type=AttestationType(row["attestation_type"]),
            primary_certificate=_certificate_value(attestation["primaryCertificate"]),
            secondary_certificate=_certificate_value(attestation["secondaryCertificate"]),
            ca_primary=attestation["caPrimary"],
            ca_secondary=attestation["caSecondary"],
            primary_key=attestation["primaryKey"],
            secondary_key=attestation["secondaryKey"],
            endorsement_key=attestation["endorsementKey"],
            storage_root_key=attestation["storageRootKey"],
        ),
        provisioning_status=ProvisioningStatus(row["provisioning_status"]),
        device_id=doc["deviceId"],
        allocation_policy=AllocationPolicyName(policy) if policy else None,
        iot_hubs=tuple(doc["iotHubs"]),
        iot_hub_host_name=doc["iotHubHostName"],
        custom_allocation=(
            CustomAllocation(custom["webhookUrl"], custom["apiVersion"]) if custom else None
        ),
        reprovision=ReprovisionPolicy(
            update_hub_assignment=doc["reprovision"]["updateHubAssignment"],
            migrate_device_data=doc["reprovision"]["migrateDeviceData"],
        ),
        initial_twin=doc["initialTwin"],
        iot_edge=doc["iotEdge"],
        optional_device_information=doc["optionalDeviceInformation"],
        credential_policy=doc.get("credentialPolicy"),  # absent in rows written before 0007
        etag=row["etag"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _values(enrollment: Enrollment) -> dict[str, Any]:
    if enrollment.created_at is None or enrollment.updated_at is None:
        raise InternalError(
            f"enrollment '{enrollment.id}' has no created_at/updated_at; the use case sets them"
        )
    return {
        "service": enrollment.service,
        "kind": enrollment.kind.value,
        "id_key": enrollment.key,
        "id": enrollment.id,
        "attestation_type": enrollment.attestation.type.value,
        "provisioning_status": enrollment.provisioning_status.value,
        "etag": enrollment.etag,
        "created_at": enrollment.created_at,
        "updated_at": enrollment.updated_at,
        "document": _document(enrollment),
        "credential_policy_key": (
            enrollment.credential_policy.lower() if enrollment.credential_policy else None
        ),
    }


def _certificate_rows(enrollment: Enrollment) -> list[dict[str, Any]]:
    """The rows of ``enrollment_certificates`` for a group; none for an individual enrollment
    (those are found by registration id, not by certificate)."""
    if enrollment.kind is not EnrollmentKind.GROUP:
        return []
    attestation = enrollment.attestation
    slots = (
        ("primary", attestation.primary_certificate, attestation.ca_primary),
        ("secondary", attestation.secondary_certificate, attestation.ca_secondary),
    )
    return [
        {
            "service": enrollment.service,
            "group_key": enrollment.key,
            "slot": slot,
            "sha256": hashlib.sha256(inline.der).hexdigest().upper() if inline else None,
            "ca_name_key": reference.lower() if reference else None,
        }
        for slot, inline, reference in slots
        if inline or reference
    ]


def _label(kind: EnrollmentKind) -> str:
    return "enrollment" if kind is EnrollmentKind.INDIVIDUAL else "enrollment group"


# --- the store ---------------------------------------------------------------------------------


# Hot-path reads, built once with bound parameters (see storage.statement for why).
_ENROLLMENT = select(enrollments).where(
    enrollments.c.service == bindparam("service"),
    enrollments.c.kind == bindparam("kind"),
    enrollments.c.id_key == bindparam("id_key"),
)
_SYMMETRIC_KEY_GROUPS = (
    select(enrollments)
    .where(
        enrollments.c.service == bindparam("service"),
        enrollments.c.kind == EnrollmentKind.GROUP.value,
        enrollments.c.attestation_type == AttestationType.SYMMETRIC_KEY.value,
    )
    .order_by(enrollments.c.id_key)
)


def _groups_by_certificate() -> Select[Any]:
    """Groups naming one of the ``wanted`` SHA-256 thumbprints, inline or through caReferences."""
    ec = enrollment_certificates
    wanted: BindParameter[list[str]] = bindparam("wanted", expanding=True)
    inline = select(ec.c.sha256.label("sha256"), ec.c.group_key.label("group_key")).where(
        ec.c.service == bindparam("service"), ec.c.sha256.in_(wanted)
    )
    referenced = (
        select(certificates.c.sha256.label("sha256"), ec.c.group_key.label("group_key"))
        .select_from(ec)
        .join(
            certificates,
            and_(
                certificates.c.service == ec.c.service, certificates.c.name_key == ec.c.ca_name_key
            ),
        )
        .where(ec.c.service == bindparam("service"), certificates.c.sha256.in_(wanted))
    )
    matches = union(inline, referenced).subquery("matches")
    return (
        select(matches.c.sha256.label("matched_sha256"), enrollments)
        .select_from(matches)
        .join(
            enrollments,
            and_(
                enrollments.c.service == bindparam("service"),
                enrollments.c.kind == EnrollmentKind.GROUP.value,
                enrollments.c.id_key == matches.c.group_key,
            ),
        )
        .order_by(enrollments.c.id_key, matches.c.sha256)
    )


_GROUPS_BY_CERTIFICATE = _groups_by_certificate()


def _groups_naming(service: str, name: str, sha256_thumbprint: str) -> ColumnElement[bool]:
    """The condition on ``enrollments`` for groups naming one registry certificate: by its name
    in caReferences, or by its SHA-256 as an inline signing certificate (both indexed)."""
    ec = enrollment_certificates
    naming = (
        select(ec.c.group_key)
        .where(
            ec.c.service == service,
            or_(ec.c.ca_name_key == name.lower(), ec.c.sha256 == sha256_thumbprint.upper()),
        )
        .distinct()
    )
    return and_(
        enrollments.c.service == service,
        enrollments.c.kind == EnrollmentKind.GROUP.value,
        enrollments.c.id_key.in_(naming),
    )


class SqlEnrollmentStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, service: str, kind: EnrollmentKind, id: str) -> Enrollment | None:
        parameters = {"service": service, "kind": kind.value, "id_key": id.lower()}
        row = self._c.execute(_ENROLLMENT, parameters).mappings().first()
        return _enrollment(row) if row else None

    def add(self, enrollment: Enrollment) -> None:
        values = _values(enrollment)
        try:
            with self._c.begin_nested():
                run_insert(self._c, enrollments, values)
                self._write_certificates(enrollment)
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"{_label(enrollment.kind)} '{enrollment.id}' already exists in service "
                f"'{enrollment.service}' (ids compare ignoring case)"
            ) from exc

    def replace(self, enrollment: Enrollment, *, expected_etag: str) -> None:
        values = _values(enrollment)
        del values["created_at"]
        where = {
            "service": enrollment.service,
            "kind": enrollment.kind.value,
            "id_key": enrollment.key,
            "etag": expected_etag,
        }
        if run_update(self._c, enrollments, where, values) != 1:
            raise EtagMismatchError(
                f"Invalid ETag supplied: {_label(enrollment.kind)} '{enrollment.id}' changed "
                "meanwhile or no longer exists"
            )
        self._delete_certificates(enrollment.service, enrollment.kind, enrollment.key)
        self._write_certificates(enrollment)

    def remove(self, service: str, kind: EnrollmentKind, id: str, *, expected_etag: str) -> None:
        result = self._c.execute(
            delete(enrollments).where(
                enrollments.c.service == service,
                enrollments.c.kind == kind.value,
                enrollments.c.id_key == id.lower(),
                enrollments.c.etag == expected_etag,
            )
        )
        if result.rowcount != 1:
            raise EtagMismatchError(
                f"Invalid ETag supplied: {_label(kind)} '{id}' changed meanwhile or no longer "
                "exists"
            )
        self._delete_certificates(service, kind, id.lower())

    def count(
        self, service: str, kind: EnrollmentKind, attestation: AttestationType | None = None
    ) -> int:
        query = (
            select(func.count())
            .select_from(enrollments)
            .where(enrollments.c.service == service, enrollments.c.kind == kind.value)
        )
        if attestation is not None:
            query = query.where(enrollments.c.attestation_type == attestation.value)
        return int(self._c.execute(query).scalar_one())

    def page(
        self,
        service: str,
        kind: EnrollmentKind,
        *,
        after: str | None,
        limit: int,
        prefix: str | None = None,
    ) -> list[Enrollment]:
        """By the primary key's (service, kind, id_key) order, so a page reads ``limit`` rows."""
        query = (
            select(enrollments)
            .where(enrollments.c.service == service, enrollments.c.kind == kind.value)
            .order_by(enrollments.c.id_key)
            .limit(limit)
        )
        if after is not None:
            query = query.where(enrollments.c.id_key > after.lower())
        if prefix:
            query = query.where(starts_with(enrollments.c.id_key, prefix.lower()))
        return [_enrollment(row) for row in self._c.execute(query).mappings()]

    def groups_by_certificate(
        self, service: str, sha256_thumbprints: Collection[str]
    ) -> list[tuple[str, Enrollment]]:
        """The groups that name one of these certificates, with the thumbprint that matched:
        inline signing certificates by their own SHA-256, caReferences by the SHA-256 of the
        registry certificate of the same service they name. Ordered by group id, then thumbprint.
        """
        wanted = sorted({t.upper() for t in sha256_thumbprints})
        if not wanted:
            return []
        rows = self._c.execute(
            _GROUPS_BY_CERTIFICATE, {"service": service, "wanted": wanted}
        ).mappings()
        return [(row["matched_sha256"], _enrollment(row)) for row in rows]

    def symmetric_key_groups(self, service: str) -> list[Enrollment]:
        rows = self._c.execute(_SYMMETRIC_KEY_GROUPS, {"service": service}).mappings()
        return [_enrollment(row) for row in rows]

    def groups_naming_certificate(
        self, service: str, name: str, sha256_thumbprint: str, *, limit: int
    ) -> list[Enrollment]:
        query = (
            select(enrollments)
            .where(_groups_naming(service, name, sha256_thumbprint))
            .order_by(enrollments.c.id_key)
            .limit(limit)
        )
        return [_enrollment(row) for row in self._c.execute(query).mappings()]

    def count_groups_naming_certificate(
        self, service: str, name: str, sha256_thumbprint: str
    ) -> int:
        query = (
            select(func.count())
            .select_from(enrollments)
            .where(_groups_naming(service, name, sha256_thumbprint))
        )
        return int(self._c.execute(query).scalar_one())

    def _write_certificates(self, enrollment: Enrollment) -> None:
        rows = _certificate_rows(enrollment)
        if rows:
            self._c.execute(insert(enrollment_certificates), rows)

    def _delete_certificates(self, service: str, kind: EnrollmentKind, key: str) -> None:
        if kind is EnrollmentKind.GROUP:
            self._c.execute(
                delete(enrollment_certificates).where(
                    enrollment_certificates.c.service == service,
                    enrollment_certificates.c.group_key == key,
                )
            )
