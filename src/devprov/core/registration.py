"""Device registration states and the decision of what a registration does to them.

DPS keeps one registration state per device (docs/dps-wire.md#registration-states). A device
that registers again is re-evaluated: when the enrollment and the hub it would get are unchanged,
it keeps its assignment; otherwise the enrollment's reprovisionPolicy decides whether it moves and
which substatus DPS reports (docs/dps-wire.md#device-request-and-response-models).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from devprov.core.certificate import CertificateFacts
from devprov.core.enrollment import Enrollment, EnrollmentKind
from devprov.core.error import WebhookDestinationRefusedError, WebhookFailedError


class RegistrationStatus(enum.Enum):
    UNASSIGNED = "unassigned"
    ASSIGNING = "assigning"
    ASSIGNED = "assigned"
    FAILED = "failed"
    DISABLED = "disabled"


class Substatus(enum.Enum):
    INITIAL_ASSIGNMENT = "initialAssignment"
    DEVICE_DATA_MIGRATED = "deviceDataMigrated"
    DEVICE_DATA_RESET = "deviceDataReset"
    REPROVISIONED_TO_INITIAL_ASSIGNMENT = "reprovisionedToInitialAssignment"


class AttestationMethod(enum.Enum):
    X509 = "x509"
    SYMMETRIC_KEY = "symmetricKey"


@dataclass(frozen=True)
class CertificateSummary:
    """X509CertificateInfo as DPS returns it (docs/dps-wire.md#attestation-mechanisms)."""

    subject_name: str
    sha1_thumbprint: str
    sha256_thumbprint: str
    issuer_name: str
    not_before: datetime
    not_after: datetime
    serial_number: str
    version: int


def summarize_certificate(facts: CertificateFacts) -> CertificateSummary:
    return CertificateSummary(
        subject_name=facts.subject,
        sha1_thumbprint=facts.thumbprint,
        sha256_thumbprint=facts.sha256_thumbprint,
        issuer_name=facts.issuer,
        not_before=facts.not_before,
        not_after=facts.not_after,
        serial_number=facts.serial_number,
        version=facts.version,
    )


@dataclass(frozen=True)
class RegistrationState:
    service: str
    registration_id: str
    method: AttestationMethod
    enrollment_kind: EnrollmentKind
    enrollment_id: str
    status: RegistrationStatus
    created_at: datetime
    updated_at: datetime
    etag: str
    device_id: str | None = None
    assigned_hub: str | None = None
    initial_hub: str | None = None
    substatus: Substatus | None = None
    error_code: int | None = None
    error_message: str | None = None
    payload: Mapping[str, Any] | None = None
    certificate: CertificateSummary | None = None  # the device's leaf (X.509)
    signing_certificate: CertificateSummary | None = None  # the group's certificate (X.509)
    leaf_sha256: str | None = None  # to recognise the device on later polls

    @property
    def key(self) -> str:
        return self.registration_id.lower()


# What DPS tells a device whose custom allocation webhook failed: errorCode 400207,
# "Custom allocation failed" (docs/dps-wire.md#custom-allocation-failures). The precise reason,
# with the webhook's URL redacted, stays in the registration state, the audit trail and the log.
CUSTOM_ALLOCATION_FAILED = 400207
CUSTOM_ALLOCATION_FAILED_MESSAGE = "Custom allocation failed"
_WEBHOOK_FAILURES = frozenset({WebhookFailedError.number, WebhookDestinationRefusedError.number})

# A hub that could not be reached (503110) or refused the identity (503111), the numbers of
# service.hub_identity's errors: the device is told the number and that the hub failed; which
# hub, what was asked and what it answered is the operator's (docs/hubs.md#failures-and-retries).
HUB_FAILURES = frozenset({503110, 503111})
HUB_FAILED_MESSAGE = "The device could not be created in its IoT hub"

# An operational certificate that could not be issued: the credential policy's key file is
# missing (404620) or its CA cannot sign (500680), the numbers of storage.issuing_key's and
# service.device_issuance's errors. The device is told the number and that issuing failed; the
# key file's path and the CA's dates are the operator's
# (docs/operational-certificates.md#the-registration).
ISSUANCE_FAILURES = frozenset({404620, 500680})
ISSUANCE_FAILED_MESSAGE = "The operational certificate could not be issued"


def device_error(
    error_code: int | None, error_message: str | None
) -> tuple[int | None, str | None]:
    """The errorCode and errorMessage a device is shown for a failed registration: DPS's generic
    answer where the stored reason is the operator's (a webhook, a hub or the issuing of a
    certificate failed), else the stored ones."""
    if error_code in _WEBHOOK_FAILURES:
        return CUSTOM_ALLOCATION_FAILED, CUSTOM_ALLOCATION_FAILED_MESSAGE
    if error_code in HUB_FAILURES:
        return error_code, HUB_FAILED_MESSAGE
    if error_code in ISSUANCE_FAILURES:
        return error_code, ISSUANCE_FAILED_MESSAGE
    return error_code, error_message


# How long an operation may stay ``assigning``: a register stores it so while a background task
# of its server process calls the custom allocation webhook and the hub (service.device_pending),
# and that task writes the outcome well within this: the webhook's 10 s deadline
# (core.outbound.WEBHOOK_DEADLINE_SECONDS), a hub's 10 s timeout, and the storage waits of each
# step (5 s for a thread, 5 s for the lock). One older than this was left by a process that died
# or stopped before its task ended; a poll reads it ``failed`` (docs/dps-wire.md#one-round-trip).
ASSIGNING_LIMIT = timedelta(seconds=60)


def is_abandoned(status: str, created_at: datetime, *, now: datetime) -> bool:
    """Is an operation still ``assigning`` past :data:`ASSIGNING_LIMIT`, so that no process
    will decide it any more?"""
    return status == RegistrationStatus.ASSIGNING.value and now - created_at > ASSIGNING_LIMIT


def device_id_for(enrollment: Enrollment, registration_id: str) -> str:
    """Groups: the registration id (the CN for X.509). Individual: deviceId, else the id."""
    if enrollment.kind is EnrollmentKind.INDIVIDUAL and enrollment.device_id:
        return enrollment.device_id
    return registration_id


def decide_assignment(
    existing: RegistrationState | None,
    fresh: RegistrationState,
    enrollment: Enrollment,
    *,
    hub: str,
    now: datetime,
    etag: str,
) -> RegistrationState:
    """The state after a successful attestation and allocation.

    ``fresh`` carries the facts of this registration (method, enrollment, certificates, payload);
    ``existing`` the stored state, if any. Rules (DPS's reprovisioning docs, how-to-reprovision):
    - first assignment, or a device that was never assigned: ``initialAssignment``;
    - the same enrollment and the same hub: the current assignment is returned unchanged;
    - another hub and ``updateHubAssignment`` false: the device stays where it is;
    - another hub and ``updateHubAssignment`` true: it moves; the substatus is
      ``reprovisionedToInitialAssignment`` when it returns to its first hub, else
      ``deviceDataMigrated`` or ``deviceDataReset`` by ``migrateDeviceData``.
    """
    base = replace(
        fresh,
        status=RegistrationStatus.ASSIGNED,
        device_id=device_id_for(enrollment, fresh.registration_id),
        updated_at=now,
        etag=etag,
        error_code=None,
        error_message=None,
    )
    if existing is None or existing.assigned_hub is None:
        return replace(
            base,
            created_at=existing.created_at if existing else now,
            assigned_hub=hub,
            initial_hub=(existing.initial_hub if existing else None) or hub,
            substatus=Substatus.INITIAL_ASSIGNMENT,
        )
    if (
        existing.status is RegistrationStatus.ASSIGNED
        and existing.assigned_hub == hub
        and _same_facts(existing, fresh)
    ):
        return existing  # nothing changed: the current assignment, as stored
    kept = replace(
        base,
        created_at=existing.created_at,
        initial_hub=existing.initial_hub or existing.assigned_hub,
    )
    if existing.assigned_hub == hub:
        return replace(
            kept, assigned_hub=hub, substatus=existing.substatus or Substatus.INITIAL_ASSIGNMENT
        )
    if not enrollment.reprovision.update_hub_assignment:
        return replace(kept, assigned_hub=existing.assigned_hub, substatus=existing.substatus)
    if hub == kept.initial_hub:
        substatus = Substatus.REPROVISIONED_TO_INITIAL_ASSIGNMENT
    elif enrollment.reprovision.migrate_device_data:
        substatus = Substatus.DEVICE_DATA_MIGRATED
    else:
        substatus = Substatus.DEVICE_DATA_RESET
    return replace(kept, assigned_hub=hub, substatus=substatus)


def _same_facts(existing: RegistrationState, fresh: RegistrationState) -> bool:
    """The same enrollment, credentials and payload: a repeated registration changes nothing."""
    return (
        existing.enrollment_kind is fresh.enrollment_kind
        and existing.enrollment_id.lower() == fresh.enrollment_id.lower()
        and existing.method is fresh.method
        and existing.leaf_sha256 == fresh.leaf_sha256
        and existing.certificate == fresh.certificate
        and existing.signing_certificate == fresh.signing_certificate
        and existing.payload == fresh.payload
    )
